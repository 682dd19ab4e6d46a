"""Composing ``conf/`` exactly as DVC does, and checking config values.

DVC's Hydra integration (``.dvc/config``: ``[hydra] enabled = true``) composes
``conf/config.yaml`` with the ``-S`` overrides, resolves interpolations and writes
the result to ``params.yaml``; stages then read ``params.yaml``. :func:`compose_params`
repeats that composition so tests and ``make params`` produce the identical file.
"""
from __future__ import annotations

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


#: Config nodes whose string values are output paths of the pipeline.
PATH_NODES = ("paths", "transits.paths")
#: The key that lets a run write its outputs outside the repository (the seeds runner does).
OUTSIDE_KEY = "outputs_outside_repo"


def check_output_paths(cfg: DictConfig | dict, root: str | Path | None = None) -> dict[str, Path]:
    """Resolve every ``paths.*`` (and ``transits.paths.*``); each must lie inside the repository.

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
    for node_key in PATH_NODES:
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
