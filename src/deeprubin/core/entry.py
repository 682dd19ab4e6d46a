"""The Hydra wrapper shared by every stage entry point."""
from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any, Callable

import hydra
from omegaconf import DictConfig

from . import numerics
from .config import CONF_DIR, check_output_paths, check_seeds
from .config_schema import check_schema


def _conf_dir() -> str:
    """``conf/`` of the working directory when there is one (DVC runs stages from the
    repository root, also in the temporary copies of queued experiments), else the
    one beside the installed package."""
    local = Path.cwd() / "conf"
    return str(local if (local / "config.yaml").exists() else CONF_DIR)


def hydra_entry(run_stage: Callable[[DictConfig], Any],
                objective: Callable[[Any], float] | None = None) -> Callable[[], None]:
    """Turn ``run_stage(cfg)`` into a Hydra application rooted at ``conf/config.yaml``.

    The Hydra job is named after the stage (``run_train`` -> ``train``) so that logs
    and multirun folders say which stage wrote them. ``objective`` maps the stage's
    result to the float a Hydra sweeper (e.g. Optuna) optimises.
    """
    stage = run_stage.__name__.removeprefix("run_")

    @hydra.main(version_base="1.3", config_path=_conf_dir(), config_name="config")
    def _hydra_main(cfg: DictConfig) -> Any:
        logging.getLogger("deeprubin").setLevel(logging.INFO)
        # Threads fixed; one warning line if the libraries did not take the pinning.
        logging.getLogger("deeprubin.numerics").info("numerics: %s", numerics.check().summary())
        check_seeds(cfg)
        check_schema(cfg)  # unknown or mistyped keys fail here, naming the key, before any work
        check_output_paths(cfg)  # every output inside the repository (or outputs_outside_repo=true)
        result = run_stage(cfg)
        return objective(result) if objective is not None else None

    def main() -> None:
        if not any(arg.startswith("hydra.job.name=") for arg in sys.argv[1:]):
            sys.argv.append(f"hydra.job.name={stage}")
        _hydra_main()

    main.__doc__ = run_stage.__doc__
    return main
