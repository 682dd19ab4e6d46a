"""The Hydra wrapper shared by every stage entry point."""
from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any, Callable

import hydra
from omegaconf import DictConfig

from . import numerics
from .config import CONF_DIR, ConfigError, check_output_paths, check_seeds, task_overrides, task_view
from .config_schema import check_schema


def _conf_dir() -> str:
    """``conf/`` of the working directory when there is one (DVC runs stages from the
    repository root, also in the temporary copies of queued experiments), else the
    one beside the installed package."""
    local = Path.cwd() / "conf"
    return str(local if (local / "config.yaml").exists() else CONF_DIR)


def _default_task() -> str | None:
    """``task_name`` of ``conf/config.yaml``: the task a generic stage runs when not told."""
    from omegaconf import OmegaConf

    root = Path(_conf_dir()) / "config.yaml"
    return OmegaConf.load(root).get("task_name") if root.exists() else None


def stage_config(cfg: DictConfig, task: str | None = None, generic: bool = False) -> DictConfig:
    """What a stage reads: the task view of ``task`` (a task's own stage), of ``cfg.task_name``
    (a generic stage, which serves every task) or, with neither, the whole config (the stages
    that read all tasks: index, results)."""
    if generic:
        task = cfg.get("task_name")
        if not task:
            raise ConfigError("config key 'task_name' is missing: a generic stage serves every task, "
                              "name one (task_name=<task>; dvc.yaml's foreach does)")
    return task_view(cfg, str(task)) if task else cfg


def hydra_entry(run_stage: Callable[[DictConfig], Any],
                objective: Callable[[Any], float] | None = None, *,
                task: str | None = None, generic: bool = False) -> Callable[[], None]:
    """Turn ``run_stage(cfg)`` into a Hydra application rooted at ``conf/config.yaml``.

    The Hydra job is named after the stage (``run_train`` -> ``train``) so that logs
    and multirun folders say which stage wrote them. ``objective`` maps the stage's
    result to the float a Hydra sweeper (e.g. Optuna) optimises. ``task`` names the task
    whose view (:func:`deeprubin.core.config.task_view`) the stage reads; ``generic=True``
    takes it from ``task_name`` (see :func:`stage_config`).
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
        result = run_stage(stage_config(cfg, task, generic))
        return objective(result) if objective is not None else None

    def main() -> None:
        args = [a for a in sys.argv[1:] if "=" in a and not a.startswith("-")]
        named = task or (next((a.split("=", 1)[1] for a in args if a.startswith("task_name=")), None)
                         or _default_task() if generic else None)
        if named:  # a task's short keys: `trainer.max_epochs=5` means tasks.<task>.trainer.max_epochs=5
            full = dict(zip(args, task_overrides(named, args, _conf_dir())))
            sys.argv[1:] = [full.get(a, a) for a in sys.argv[1:]]
        if not any(arg.startswith("hydra.job.name=") for arg in sys.argv[1:]):
            sys.argv.append(f"hydra.job.name={stage}")
        _hydra_main()

    main.__doc__ = run_stage.__doc__
    return main
