"""Data sources that produce the two canonical tables (see :mod:`deeprubin.core.schema`), and their registry."""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:
    import pandas as pd
    from omegaconf import DictConfig

Loader = Callable[["DictConfig"], tuple["pd.DataFrame", "pd.DataFrame"]]

#: Source name (``source.name``) -> "module:function" of a loader taking the whole
#: config and returning (lightcurves, objects) in the canonical schema. Imported
#: lazily so that, e.g., the simulator does not pay for importing lightkurve.
SOURCES: dict[str, str | Loader] = {
    "simulate": "deeprubin.sources.simulate:load_simulated",
    "alerce": "deeprubin.sources.alerce:load_alerce",
    "lightkurve": "deeprubin.sources.lightkurve_source:load_lightkurve",
    "files": "deeprubin.sources.files:load_files",
}


def resolve_loader(name: str) -> Loader:
    """The loader registered for source ``name`` (a callable or a "module:function" path)."""
    entry = SOURCES[name]
    if callable(entry):
        return entry
    module, _, function = entry.partition(":")
    return getattr(importlib.import_module(module), function)
