"""Helpers for the notebooks: find the project and its DVC outputs (no analysis here)."""
from __future__ import annotations

from pathlib import Path

from omegaconf import OmegaConf


def project_root(start: str | Path | None = None) -> Path:
    """The nearest folder at or above ``start`` (default: cwd) holding ``dvc.yaml`` and ``params.yaml``."""
    here = Path(start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "dvc.yaml").exists() and (folder / "params.yaml").exists():
            return folder
    raise FileNotFoundError(f"no dvc.yaml + params.yaml at or above {here}; run the notebook inside the project")


def project_paths(start: str | Path | None = None, task: str = "transients") -> dict[str, Path]:
    """``params.yaml``'s shared ``paths:`` and ``tasks.<task>.paths:`` as absolute paths (what
    ``dvc repro`` wrote)."""
    root = project_root(start)
    params = OmegaConf.load(root / "params.yaml")
    if task not in (params.get("tasks") or {}):
        raise KeyError(f"{root / 'params.yaml'}: no task '{task}' under tasks; known: {list(params.get('tasks') or {})}")
    paths = {**OmegaConf.to_container(params.paths, resolve=True),
             **OmegaConf.to_container(params.tasks[task].paths, resolve=True)}
    return {"root": root, **{k: root / str(v) for k, v in paths.items()}}
