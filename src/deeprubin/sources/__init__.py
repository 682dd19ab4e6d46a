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

#: The registry as shipped: the loader paths a ``_target_`` may name even after ``SOURCES[name]``
#: was replaced by a callable (tests do).
_REGISTERED = dict(SOURCES)


def resolve_loader(source: "str | DictConfig | dict") -> Loader:
    """The loader of a source: its config node's ``_target_`` (``deeprubin.sources.files.load_files``),
    or the loader registered under a name (a ``str``, or a node without ``_target_``).

    ``SOURCES`` is the allow-list: a ``_target_`` that is not one of its loaders is refused
    (a config names code to run; only the registered loaders may be), naming the key, and so is
    a ``name`` registered for another loader than the ``_target_``.
    """
    from ..core.config import ConfigError

    if isinstance(source, str):
        entry = SOURCES[source]
    elif source.get("_target_") is not None:
        target = str(source["_target_"])
        allowed = {e.replace(":", "."): name for registry in (_REGISTERED, SOURCES)
                   for name, e in registry.items() if isinstance(e, str)}
        if target not in allowed:
            raise ConfigError(f"config key 'source._target_' = {target!r} is not a registered source loader; "
                              f"allowed: {sorted(allowed)} (deeprubin.sources.SOURCES)")
        name = source.get("name")
        if name is not None and name != allowed[target]:
            raise ConfigError(f"config keys 'source.name' = {name!r} and 'source._target_' = {target!r} disagree "
                              f"(that loader is registered as {allowed[target]!r}); set both, or "
                              "source._target_=null to pick the loader by name")
        entry = SOURCES[allowed[target]]  # the registered entry (a test or plugin may have replaced it)
    else:
        name = source.get("name")
        if name not in SOURCES:
            raise ConfigError(f"config key 'source.name' must be one of {sorted(SOURCES)}, got {name!r}")
        entry = SOURCES[name]
    if callable(entry):
        return entry
    module, _, function = entry.partition(":")
    return getattr(importlib.import_module(module), function)
