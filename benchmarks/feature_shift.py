"""Feature shift between the simulated training set and a real sample (a diagnostic, not a speed benchmark).

For one class (SN Ia by default), the light-curve features of the simulated objects of the
pipeline's data (``data/raw/transients``, extracted here with the config's feature options) are
compared with those of a real sample read through a shipped source config (``files_bts_snia``
by default): per feature, the Kolmogorov-Smirnov statistic, the medians and the missing fractions.
``--photometry all detections`` compares the two feature options side by side; features of real
alert photometry that sit outside the simulated range are what a classifier cannot recognise
(``docs/decisions/features-detections-only.md``).

Needs ``dvc repro`` (its ingest output) and the real-data folder; writes
``reports/benchmarks/feature_shift.json`` (``--out``)::

    python -m benchmarks.feature_shift --photometry all detections
"""
from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import ks_2samp

from deeprubin.core import io
from deeprubin.core.config import compose_task
from deeprubin.tasks.transients.evaluation.inference import load_for_prediction
from deeprubin.tasks.transients.evaluation.real_sky import missing_inputs
from deeprubin.tasks.transients.features.extract import PHOTOMETRY, extract_features
from deeprubin.tasks.transients.preprocess.inputs import feature_config

from .common import RESULTS, command, machine

#: Fewest finite values on each side for a KS statistic.
MIN_VALUES = 5


def shift_table(sim: pd.DataFrame, real: pd.DataFrame) -> pd.DataFrame:
    """Per feature column (those of both tables but ``object_id``): KS statistic, medians, NaN
    fractions; sorted by KS, largest first (NaN KS, too few values, last)."""
    rows = []
    for column in [c for c in sim.columns if c != "object_id" and c in real.columns]:
        s = sim[column].astype(float).replace([np.inf, -np.inf], np.nan)
        r = real[column].astype(float).replace([np.inf, -np.inf], np.nan)
        enough = s.notna().sum() >= MIN_VALUES and r.notna().sum() >= MIN_VALUES
        rows.append({"feature": column, "ks": float(ks_2samp(s.dropna(), r.dropna()).statistic) if enough else np.nan,
                     "sim_median": float(s.median()), "real_median": float(r.median()),
                     "sim_missing": float(s.isna().mean()), "real_missing": float(r.isna().mean())})
    return pd.DataFrame(rows).sort_values("ks", ascending=False, na_position="last", kind="mergesort")


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", default="files_bts_snia", help="the real sample's conf/source config")
    parser.add_argument("--label", default="SNIa", help="the class compared (real label = simulated label)")
    parser.add_argument("--photometry", nargs="+", choices=list(PHOTOMETRY), default=list(PHOTOMETRY))
    parser.add_argument("--top", type=int, default=15, help="features listed per option, largest shift first")
    parser.add_argument("--out", type=Path, default=RESULTS / "feature_shift.json")
    args = parser.parse_args(argv)
    cfg = compose_task("transients")
    bands = [str(b) for b in cfg.task.band_wavelengths]
    source = compose_task("transients", [f"source={args.source}"]).source
    reason = missing_inputs(args.source, source)
    if reason is not None:
        raise SystemExit(f"feature_shift: the real sample is not available: {reason}")
    raw = Path(cfg.paths.raw)
    lightcurves, objects = io.read_parquet(raw / "lightcurves.parquet"), io.read_parquet(raw / "objects.parquet")
    ids = set(objects.loc[objects["label"].astype(str) == args.label, "object_id"].astype(str))
    if not ids:
        raise SystemExit(f"feature_shift: {raw / 'objects.parquet'} has no object of label {args.label!r}")
    sim_lc = lightcurves[lightcurves["object_id"].astype(str).isin(ids)]
    real = load_for_prediction(cfg, source, bands, label_classes=[args.label])
    real_lc = real.lightcurves[real.lightcurves["object_id"].isin(
        real.objects.loc[real.objects["label"].astype(str) == args.label, "object_id"])]
    started = time.perf_counter()
    out = {"source": args.source, "label": args.label, "n_sim": len(ids), "n_real": int(real_lc["object_id"].nunique()),
           "sim_data": str(raw), "options": {}}
    for photometry in args.photometry:
        options = dataclasses.replace(feature_config(cfg), photometry=photometry)
        table = shift_table(extract_features(sim_lc, bands, options), extract_features(real_lc, bands, options))
        out["options"][photometry] = {
            "median_ks": float(table["ks"].median()),
            "n_features_ks_above_0.5": int((table["ks"] > 0.5).sum()),
            "top": table.head(args.top).round(4).replace({np.nan: None}).to_dict(orient="records")}
        print(f"photometry={photometry}: median KS {table['ks'].median():.3f}; largest:")
        print(table.head(args.top).round(3).to_string(index=False))
    out.update(seconds=round(time.perf_counter() - started, 1), command=command("feature_shift", argv),
               machine=machine())
    io.write_json(out, args.out)
    print(f"wrote {args.out}")
    return out


if __name__ == "__main__":
    main()
