"""transits_bls: Box Least Squares baseline on the validation and test light curves."""
from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd
from omegaconf import DictConfig

from ..core import io
from ..core.config import require
from ..core.entry import hydra_entry
from ..tasks.transits.bls import bls_search

log = logging.getLogger(__name__)


def run_transits_bls(cfg: DictConfig) -> dict:
    """Write ``reports/transits/bls/bls_scores.csv``: one BLS search per val/test light curve.

    Columns: object_id, target_id, mission, split, label (1 = planet), sde, period,
    t0, duration, depth, power_max.
    """
    tc = cfg
    bls_cfg = tc.evaluate.bls
    require(bls_cfg, "n_periods", at_least=10)
    require(bls_cfg, "min_period_days", positive=True)
    require(bls_cfg, "max_period_fraction", positive=True)
    require(bls_cfg, "objective", choices=("snr", "likelihood"))
    flat = io.read_parquet(Path(tc.paths.processed) / "flat.parquet")
    objects = io.read_parquet(Path(tc.paths.raw) / "objects.parquet").set_index("object_id")
    manifest = io.read_parquet(Path(tc.paths.splits) / "manifest.parquet")
    wanted = set(manifest.loc[manifest["split"].isin(["val", "test"]), "object_id"])
    split_of = dict(zip(manifest["object_id"], manifest["split"]))
    rows = []
    for object_id, lc in flat.groupby("object_id", sort=True):
        if object_id not in wanted:
            continue
        result = bls_search(lc["time"].to_numpy(), lc["flux"].to_numpy(), bls_cfg)
        obj = objects.loc[object_id]
        rows.append({"object_id": object_id, "target_id": obj["target_id"], "mission": obj["mission"],
                     "split": split_of[object_id], "label": int(obj["label"] == "planet"), **result})
    table = pd.DataFrame(rows)
    out = Path(tc.paths.baseline)
    io.write_text(table.to_csv(index=False, float_format="%.6g"), out / "bls_scores.csv")
    log.info("transits_bls: searched %d light curves", len(table))
    return {"n_searched": len(table)}


main = hydra_entry(run_transits_bls, task="transits")

if __name__ == "__main__":
    main()
