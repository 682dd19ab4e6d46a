"""The stellar task's examples per split: the preprocessed spectra with their stars' truths."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from ...core import io

#: The physical parameters the models predict, in the order of the networks' regression heads,
#: and the truth column of each.
TARGETS = ("teff", "logg", "feh")


def truth_columns(targets: Sequence[str] = TARGETS) -> list[str]:
    return [f"truth_{name}" for name in targets]


def read_split_tables(paths, splits: Sequence[str]) -> tuple[np.ndarray, dict[str, pd.DataFrame]]:
    """``(x, parts)``: the inputs of ``paths.processed/spectra.npz`` and, per split of the
    manifest, the objects' rows (``row`` = position in ``x``). :class:`ValueError` names the file
    when the inputs, objects and manifest disagree or a required split is empty."""
    processed, raw = Path(paths.processed), Path(paths.raw)
    inputs = io.read_npz(processed / "spectra.npz")
    x, ids = inputs["x"], inputs["object_id"].astype(str)
    objects = io.read_parquet(raw / "objects.parquet")
    if len(objects) != len(x) or not np.array_equal(objects["object_id"].astype(str).to_numpy(), ids):
        raise ValueError(f"{processed}/spectra.npz: its object_id column is not that of {raw}/objects.parquet; "
                         "rerun preprocess@stellar")
    manifest = io.read_parquet(Path(paths.splits) / "manifest.parquet")
    split_of = dict(zip(manifest["object_id"].astype(str), manifest["split"]))
    table = objects.assign(row=np.arange(len(objects)), split=objects["object_id"].astype(str).map(split_of))
    if table["split"].isna().any():
        first = table.loc[table["split"].isna(), "object_id"].iloc[0]
        raise ValueError(f"{paths.splits}/manifest.parquet: spectrum {first!r} is not in the manifest; "
                         "rerun split@stellar")
    parts = {name: part.reset_index(drop=True) for name, part in table.groupby("split", sort=True)}
    for name in splits:
        if name not in parts:
            raise ValueError(f"{paths.splits}/manifest.parquet: no spectra in the '{name}' split")
    return x, parts


def class_index(labels: pd.Series, classes: Sequence[str], where: str) -> np.ndarray:
    """Integer classes; :class:`ValueError` names a label outside ``task.classes``."""
    lookup = {c: i for i, c in enumerate(classes)}
    unknown = sorted(set(labels.astype(str)) - set(lookup))
    if unknown:
        raise ValueError(f"{where}: label(s) {unknown} are not in task.classes {list(classes)}")
    return labels.astype(str).map(lookup).to_numpy(np.int64)
