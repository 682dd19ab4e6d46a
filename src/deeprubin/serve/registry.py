"""Promotion of registry versions by alias, and their list.

::

    python -m deeprubin.serve.registry promote --task transients --version 3            # -> champion, if not worse
    python -m deeprubin.serve.registry promote --task transients --version 4 --alias challenger
    python -m deeprubin.serve.registry promote --task transients --version 3 --calibration none
    python -m deeprubin.serve.registry status --task transients
    python -m deeprubin.serve.registry status --task transients serve.registry.tracking_uri=sqlite:///other.db

``promote`` scores the version on the task's fixed evaluation set and refuses (exit 1, naming both versions
and their scores) a candidate for ``champion`` that scores below the current champion plus
``serve.registry.min_improvement``; the rules are :mod:`deeprubin.serve.promotion`'s. A server in registry
mode (``serve.models.<task>.source: registry``) picks the new champion up within ``serve.registry.poll_s``.
Trailing ``key=value`` arguments override the config (``conf/`` of the working directory if it has one).
"""
from deeprubin.core import numerics

numerics.pin()  # before numpy and torch load: the predict path's numbers, as in the server

import argparse  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

from mlflow.exceptions import MlflowException  # noqa: E402

from deeprubin.core.calibration import CalibrationMismatchError, resolve_calibration  # noqa: E402
from deeprubin.core.checkpoint import CheckpointError  # noqa: E402
from deeprubin.core.config import CONF_DIR, ConfigError, compose_params  # noqa: E402
from deeprubin.serve.promotion import (PromotionError, Request, evaluation_files, fingerprint, promote,  # noqa: E402
                                       status_rows)
from deeprubin.serve.settings import SERVED_TASKS, ServeSettings, settings_from  # noqa: E402
from deeprubin.serve.versions import ALIASES, CHAMPION, RegistryError, registry_client  # noqa: E402

#: Errors reported as one line and exit status 1 (each names the file, key or version).
ERRORS = (ConfigError, RegistryError, PromotionError, CheckpointError, CalibrationMismatchError, FileNotFoundError,
          MlflowException, ValueError)


def compose(overrides: list[str]) -> ServeSettings:
    """``serve.*`` of the composed config (``conf/`` of the working directory when it has one)."""
    local = Path.cwd() / "conf"
    return settings_from(compose_params(overrides, local if (local / "config.yaml").exists() else CONF_DIR))


def task_settings(settings: ServeSettings, task: str):
    """``(serve.models.<task>, serve.registry.evaluation.<task>)``, each required."""
    if task not in settings.models:
        raise ConfigError(f"config key 'serve.models.{task}' is missing")
    if task not in settings.registry.evaluation:
        raise ConfigError(f"config key 'serve.registry.evaluation.{task}' is missing (the task's evaluation set)")
    return settings.models[task], settings.registry.evaluation[task]


def run_promote(args: argparse.Namespace) -> int:
    settings = compose(args.overrides)
    source, evaluation = task_settings(settings, args.task)
    numerics.apply_threads()
    req = Request(task=args.task, name=str(source.registered_model), version=str(args.version), alias=args.alias,
                  metric=settings.registry.metric, min_improvement=settings.registry.min_improvement,
                  evaluation=evaluation, calibration=args.calibration,
                  default=resolve_calibration(source.calibration, source.checkpoint))
    outcome = promote(registry_client(settings.registry.tracking_uri), req)
    print(outcome.message, file=sys.stdout if outcome.accepted else sys.stderr)
    return 0 if outcome.accepted else 1


def run_status(args: argparse.Namespace) -> int:
    settings = compose(args.overrides)
    source, evaluation = task_settings(settings, args.task)
    try:
        current = fingerprint(evaluation.split, evaluation_files(args.task, evaluation))
    except ConfigError as err:
        current = None
        print(f"note: {err}; scores cannot be matched to the evaluation set", file=sys.stderr)
    rows = status_rows(registry_client(settings.registry.tracking_uri), str(source.registered_model),
                       settings.registry.metric, current)
    columns = ["version", "aliases", "created", "run_id", settings.registry.metric, "evaluation_set", "calibration"]
    print("\t".join(columns))
    for row in rows:
        print("\t".join(str(row[c]) for c in columns))
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m deeprubin.serve.registry", description=__doc__.splitlines()[0])
    commands = p.add_subparsers(dest="command", required=True)
    promote_cmd = commands.add_parser("promote", help="set an alias on a version (champion: only if not worse)")
    status_cmd = commands.add_parser("status", help="the versions, their aliases and recorded scores")
    for cmd in (promote_cmd, status_cmd):
        cmd.add_argument("--task", required=True, choices=SERVED_TASKS)
        cmd.add_argument("overrides", nargs="*", help="config overrides, key=value")
    promote_cmd.add_argument("--version", required=True, type=int, help="the registry version")
    promote_cmd.add_argument("--alias", default=CHAMPION, choices=ALIASES)
    promote_cmd.add_argument("--calibration", default=None,
                             help="the version's calibrator when it has none yet: a calibration.json fitted for its "
                                  "checkpoint, or 'none' (default: serve.models.<task>'s file when it fits)")
    return p


def main(argv: list[str] | None = None) -> int:
    """The ``promote`` / ``status`` command; exit status 1 with the reason on a refusal or an error."""
    args = parser().parse_args(argv)
    try:
        return run_promote(args) if args.command == "promote" else run_status(args)
    except ERRORS as err:
        print(f"error: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
