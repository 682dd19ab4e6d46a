"""Predict entry point: a task's trained checkpoint applied to any source, written as one table.

::

    python -m deeprubin.stages.predict checkpoint=models/transients/model.ckpt \
        source=files_bts_snia predict.output=predictions/bts_snia.csv
    python -m deeprubin.stages.predict task_name=transits tasks/transits/source=lightkurve \
        'source.targets=[HAT-P-7]' predict.output=predictions/hat-p-7.csv

Generic: ``task_name`` (default: the config's, transients) picks the task, whose ``predict`` step
(:func:`deeprubin.tasks.load_task`) reads the task's ``source``, applies ``predict.checkpoint``
(``checkpoint=X`` is shorthand) with its calibration, and writes ``predict.output`` (.csv or
.parquet; checked here, before any work). Not a DVC stage: ``real_sky`` and ``transits_real`` are
its pipeline uses.
"""
from __future__ import annotations

import sys
from pathlib import Path

from omegaconf import DictConfig

from ..core import io
from ..core.config import ConfigError
from ..core.entry import hydra_entry
from ..tasks import load_task


def check_output(cfg: DictConfig) -> Path:
    """``predict.output``: given, a table suffix, in a writable folder; :class:`ConfigError` names the key."""
    output = (cfg.get("predict") or {}).get("output")
    if not output:
        raise ConfigError("config key 'predict.output' is missing: give the file to write, e.g. "
                          "predict.output=predictions/my_source.csv")
    if Path(str(output)).suffix not in io.TABLE_SUFFIXES:
        raise ConfigError(f"config key 'predict.output' must end in one of {list(io.TABLE_SUFFIXES)}, got {output!r}")
    io.check_writable(Path(str(output)).resolve().parent, "predict.output folder")
    return Path(str(output))


def run_predict(cfg: DictConfig) -> dict:
    """Check ``predict.output``, run the task's predict step; returns its summary."""
    check_output(cfg)
    return load_task(cfg.task_name).step("predict")(cfg)


_main = hydra_entry(run_predict, generic=True)


def main() -> None:
    """Hydra entry; ``checkpoint=X`` on the command line means ``predict.checkpoint=X``
    (``tasks.<task>.predict.checkpoint``, as every short key of the task)."""
    sys.argv[1:] = [f"predict.{a}" if a.startswith("checkpoint=") else a for a in sys.argv[1:]]
    _main()


if __name__ == "__main__":
    main()
