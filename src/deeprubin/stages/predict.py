"""Predict entry point: a trained checkpoint applied to any source, one row per object.

::

    python -m deeprubin.stages.predict checkpoint=models/transients/model.ckpt \
        source=files_bts_snia predict.output=predictions/bts_snia.csv

Composes ``conf/`` like every stage (any ``source=`` group choice and ``source.*`` override
works); ``checkpoint=X`` is shorthand for ``predict.checkpoint=X``. Preprocessing follows the
checkpoint's saved config, not the current one (:mod:`deeprubin.tasks.transients.evaluation.inference`).
Not a DVC stage: the ``real_sky`` stage is its pipeline use.
"""
from __future__ import annotations

import logging
import sys
from pathlib import Path

import pandas as pd
from omegaconf import DictConfig

from ..core import io
from ..core.config import ConfigError, require
from ..core.entry import hydra_entry
from ..tasks.transients.evaluation.inference import predict_source_detailed

log = logging.getLogger(__name__)

#: Output formats, by file suffix.
OUTPUT_SUFFIXES = (".csv", ".parquet")


def write_predictions(table, path: str | Path) -> Path:
    """Write the prediction table atomically as CSV or parquet (by suffix)."""
    path = Path(path)
    if path.suffix == ".parquet":
        return io.write_parquet(table, path)
    return io.write_text(table.to_csv(index=False, float_format="%.6f"), path)


def run_predict(cfg: DictConfig) -> dict:
    """Classify every object of ``cfg.source`` with ``cfg.predict.checkpoint``; write ``predict.output``.

    Returns a summary: number of objects, predicted class counts, output path.
    """
    checkpoint = Path(str(require(cfg, "predict.checkpoint")))
    output = cfg.predict.get("output")
    if not output:
        raise ConfigError("config key 'predict.output' is missing: give the file to write, e.g. "
                          "predict.output=predictions/my_source.csv")
    if Path(str(output)).suffix not in OUTPUT_SUFFIXES:
        raise ConfigError(f"config key 'predict.output' must end in one of {list(OUTPUT_SUFFIXES)}, got {output!r}")
    io.check_writable(Path(str(output)).resolve().parent, "predict.output folder")  # before any GP work
    result = predict_source_detailed(checkpoint, cfg.source, label_classes=list(cfg.predict.get("label_classes") or []),
                                     progress=bool(cfg.predict.get("progress_bar", False)),
                                     calibration=cfg.predict.get("calibration"), quality=cfg.get("quality"))
    # objects not classified (data quality) are listed with no prediction, after the classified ones
    table = pd.concat([result.predictions, result.unusable], ignore_index=True)
    table["calibration"] = result.calibration  # which calibrator, on every row
    path = write_predictions(table, str(output))
    counts = result.predictions["predicted"].value_counts().reindex(result.classes, fill_value=0)
    summary = {"n_objects": int(len(result.predictions)), "predicted": {c: int(n) for c, n in counts.items()},
               "output": str(path), "validation": result.validation, "calibration": result.calibration,
               "n_unusable": int(len(result.unusable))}
    log.info("predict: %d objects -> %s; predicted %s; calibration %s", summary["n_objects"], path,
             summary["predicted"], result.calibration)
    return summary


_main = hydra_entry(run_predict, task="transients")


def main() -> None:
    """Hydra entry; ``checkpoint=X`` on the command line means ``predict.checkpoint=X``
    (``tasks.transients.predict.checkpoint``, as every short key of the task)."""
    sys.argv[1:] = [f"predict.{a}" if a.startswith("checkpoint=") else a for a in sys.argv[1:]]
    _main()


if __name__ == "__main__":
    main()
