"""Composing ``conf/`` exactly as DVC does, and checking config values.

DVC's Hydra integration (``.dvc/config``: ``[hydra] enabled = true``) composes
``conf/config.yaml`` with the ``-S`` overrides, resolves interpolations and writes
the result to ``params.yaml``; stages then read ``params.yaml``. :func:`compose_params`
repeats that composition so tests and ``make params`` produce the identical file.
"""
from __future__ import annotations

import functools
import re
from pathlib import Path
from typing import Any, Iterable, Sequence

from omegaconf import DictConfig, OmegaConf

from .io import write_text

#: Repository root (the package is installed editable from ``src/``).
REPO_ROOT = Path(__file__).resolve().parents[3]
CONF_DIR = REPO_ROOT / "conf"


class ConfigError(ValueError):
    """A configuration value that cannot work; the message names the key."""


def compose_params(overrides: Sequence[str] = (), conf_dir: str | Path = CONF_DIR,
                   config_name: str = "config") -> DictConfig:
    """Compose and resolve the Hydra config as ``dvc exp run`` would.

    Parameters
    ----------
    overrides : sequence of str
        Hydra override strings, e.g. ``["model=gru", "trainer.max_epochs=5"]``.
    conf_dir : path
        The config tree (``conf/`` of the repository by default).
    """
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(str(Path(conf_dir).resolve()), version_base=None):
        cfg = compose(config_name=config_name, overrides=list(overrides))
    OmegaConf.resolve(cfg)
    return cfg


def write_params(path: str | Path, overrides: Sequence[str] = (), conf_dir: str | Path = CONF_DIR) -> Path:
    """Compose ``conf/`` and write it to ``path`` (atomically) in DVC's YAML layout."""
    cfg = compose_params(overrides, conf_dir)
    return write_text(OmegaConf.to_yaml(cfg), path)


def task_names(cfg: DictConfig | dict) -> list[str]:
    """The tasks of a composed config (the keys of ``tasks``), in config order."""
    node = cfg.get("tasks") if isinstance(cfg, (DictConfig, dict)) else None
    return [str(name) for name in (node or {})]


def task_view(cfg: DictConfig, task: str) -> DictConfig:
    """One task's config: ``tasks.<task>`` merged over the shared keys, plus ``task_name``.

    Every stage of a task reads this view, so its code names ``cfg.paths.raw`` or
    ``cfg.model`` whichever task it serves; the shared keys (``seed``, ``data_seed``,
    ``mlflow.tracking_uri``, ``paths.figures``...) are visible, a task's own key of the
    same name wins. Raises :class:`ConfigError` naming the task when it is not in ``tasks``.
    """
    names = task_names(cfg)
    if task not in names:
        raise ConfigError(f"config key 'task_name' = {task!r} is not a task of this config; known: {names}")
    shared = {key: value for key, value in OmegaConf.to_container(cfg, resolve=True).items() if key != "tasks"}
    view = OmegaConf.merge(shared, OmegaConf.to_container(cfg.tasks[task], resolve=True))
    view.task_name = task
    return view


@functools.lru_cache(maxsize=8)
def _layout(task: str, conf_dir: str) -> tuple[frozenset, frozenset]:
    """(the task's top-level node names, the dotted leaf keys of the shared config)."""
    cfg = OmegaConf.to_container(compose_params([], conf_dir), resolve=False)
    if task not in (cfg.get("tasks") or {}):
        raise ConfigError(f"config key 'task_name' = {task!r} is not a task of {conf_dir}; "
                          f"known: {list(cfg.get('tasks') or {})}")
    shared: set[str] = set()

    def leaves(node: Any, prefix: str) -> None:
        if isinstance(node, dict) and node:
            for key, value in node.items():
                leaves(value, f"{prefix}.{key}" if prefix else str(key))
        else:
            shared.add(prefix)
    leaves({k: v for k, v in cfg.items() if k != "tasks"}, "")
    return frozenset(cfg["tasks"][task]), frozenset(shared)


def task_overrides(task: str, overrides: Sequence[str], conf_dir: str | Path = CONF_DIR) -> list[str]:
    """Hydra overrides with a task's short keys made full: ``source.n_objects=12`` ->
    ``tasks.<task>.source.n_objects=12`` when ``source`` is a node of the task and the key is not
    a shared one (``paths.figures``, ``mlflow.tracking_uri``). Group choices (``model=gru``), shared
    keys (``seed=1``), ``tasks.*`` and ``hydra.*`` pass unchanged."""
    nodes, shared = _layout(task, str(Path(conf_dir).resolve()))
    out = []
    for override in overrides:
        sign = re.match(r"^(\+\+|\+|~)?", override).group(0)
        key = override[len(sign):].split("=", 1)[0]
        if "." in key and key.split(".")[0] in nodes and key not in shared:
            override = f"{sign}tasks.{task}.{override[len(sign):]}"
        out.append(override)
    return out


def compose_task(task: str, overrides: Sequence[str] = (), conf_dir: str | Path = CONF_DIR) -> DictConfig:
    """:func:`compose_params` (short keys made full, :func:`task_overrides`) then
    :func:`task_view`: the config one stage of ``task`` reads."""
    return task_view(compose_params(task_overrides(task, overrides, conf_dir), conf_dir), task)


def require(cfg: DictConfig | dict, key: str, *, positive: bool = False, at_least: float | None = None,
            choices: Iterable[Any] | None = None) -> Any:
    """Fetch ``cfg[key]`` (dotted) and check it, raising :class:`ConfigError` naming the key."""
    value = OmegaConf.select(cfg, key) if isinstance(cfg, DictConfig) else _select(cfg, key)
    if value is None:
        raise ConfigError(f"config key '{key}' is missing")
    if (positive or at_least is not None) and (isinstance(value, bool) or not isinstance(value, (int, float))):
        raise ConfigError(f"config key '{key}' must be a number, got {value!r}")
    if positive and not value > 0:
        raise ConfigError(f"config key '{key}' must be > 0, got {value!r}")
    if at_least is not None and not value >= at_least:
        raise ConfigError(f"config key '{key}' must be >= {at_least}, got {value!r}")
    if choices is not None and value not in list(choices):
        raise ConfigError(f"config key '{key}' must be one of {list(choices)}, got {value!r}")
    return value


def check_seeds(cfg: DictConfig | dict) -> None:
    """``seed`` and ``data_seed`` (when present) are integers >= 0; :class:`ConfigError` names the key."""
    for key in ("seed", "data_seed"):
        value = OmegaConf.select(cfg, key) if isinstance(cfg, DictConfig) else _select(cfg, key)
        if value is None and key == "data_seed":
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ConfigError(f"config key '{key}' must be an integer >= 0, got {value!r}")


def path_nodes(cfg: DictConfig | dict) -> list[str]:
    """Config nodes whose string values are output paths: ``paths`` and every ``tasks.<name>.paths``."""
    return ["paths"] + [f"tasks.{name}.paths" for name in task_names(cfg)]

#: The key that lets a run write its outputs outside the repository (the seeds runner does).
OUTSIDE_KEY = "outputs_outside_repo"


def check_output_paths(cfg: DictConfig | dict, root: str | Path | None = None) -> dict[str, Path]:
    """Resolve every ``paths.*`` (and ``tasks.<name>.paths.*``); each must lie inside the repository.

    ``root`` is the repository (default: the working directory, where DVC runs every stage).
    Outside a DVC project (no ``dvc.yaml`` in ``root``) and with ``outputs_outside_repo: true``
    nothing is refused. Returns ``{dotted key: resolved path}``.

    Raises
    ------
    ConfigError
        Naming the key and the resolved path of the first output outside ``root``, before any work.
    """
    root = Path(root or Path.cwd()).resolve()
    resolved: dict[str, Path] = {}
    for node_key in path_nodes(cfg):
        node = OmegaConf.select(cfg, node_key) if isinstance(cfg, DictConfig) else _select(cfg, node_key)
        for key, value in (node or {}).items():
            if isinstance(value, str) and value:
                path = Path(value)
                resolved[f"{node_key}.{key}"] = (path if path.is_absolute() else root / path).resolve()
    outside_ok = (OmegaConf.select(cfg, OUTSIDE_KEY) if isinstance(cfg, DictConfig) else _select(cfg, OUTSIDE_KEY))
    if outside_ok or not (root / "dvc.yaml").exists():
        return resolved
    for key, path in resolved.items():
        if not path.is_relative_to(root):
            raise ConfigError(f"config key '{key}' = {path} is outside the repository {root}: the pipeline "
                              f"writes its outputs inside it (set {OUTSIDE_KEY}=true to allow it); "
                              "nothing was computed")
    return resolved


def _select(cfg: dict, key: str) -> Any:
    node: Any = cfg
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def to_dict(cfg: DictConfig | dict) -> dict:
    """Plain-dict copy of a config node (for logging and checkpoint metadata)."""
    if isinstance(cfg, DictConfig):
        return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]
    return dict(cfg)
