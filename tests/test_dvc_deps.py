"""Every DVC stage depends on every ``deeprubin`` file its command imports (issue 18, point 4).

A file ``dvc.yaml`` misses can change without ``dvc repro`` rerunning the stage, leaving
stale reports that DVC calls up to date. ``deeprubin.core.deps`` computes each stage
module's import closure; ``make deps`` writes it into ``dvc.yaml``.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from deeprubin.core import deps

ROOT = Path(__file__).resolve().parents[1]
STAGES = [(name, deps.stage_module(stage.get("cmd", "")), [deps.dep_name(d) for d in stage.get("deps", [])])
          for name, stage in yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"].items()
          if str(deps.stage_module(stage.get("cmd", ""))).startswith("deeprubin")]


@pytest.mark.parametrize("stage,module,stage_deps", STAGES, ids=[s[0] for s in STAGES])
def test_stage_depends_on_its_import_closure(stage, module, stage_deps):
    missing = deps.missing(module, stage_deps, ROOT)
    assert not missing, (f"dvc.yaml stage '{stage}' ({module}) imports files missing from its deps: {missing}; "
                         "run `make deps`")


def test_closure_follows_relative_function_level_and_package_imports():
    src = ROOT / "src"
    names = {str(f.relative_to(src)) for f in deps.closure("deeprubin.tasks.transients.steps.train", src)}
    assert {"deeprubin/tasks/__init__.py", "deeprubin/core/checkpoint.py",
            "deeprubin/core/models/__init__.py", "deeprubin/core/models/tcn.py"} <= names
    # the check can fail: a step that lists only its own module misses the rest
    assert "src/deeprubin/core/checkpoint.py" in deps.missing(
        "deeprubin.tasks.transients.steps.train", ["src/deeprubin/tasks/transients/steps/train.py"], ROOT)


def test_generic_stage_closure_includes_every_task_step():
    """A generic stage (``${key}`` in its cmd) loads ``tasks/<task>/steps/<stage>.py`` by name, which
    no import statement shows: its deps are checked per task, and a missing step file is named
    with its task."""
    cmd = "python -m deeprubin.stages.train task_name=${key}"
    closures = deps.stage_closures("deeprubin.stages.train", cmd, ROOT)
    assert set(closures) == set(deps.task_list(ROOT))
    src = ROOT / "src"
    for task, files in closures.items():
        assert src / f"deeprubin/tasks/{task}/steps/train.py" in files
    gaps = deps.missing("deeprubin.stages.train", ["src/deeprubin/stages", "src/deeprubin/core"], ROOT, cmd)
    assert "src/deeprubin/tasks/transits/steps/train.py (task transits)" in gaps


def test_make_deps_rewrites_a_stale_dvc_yaml_and_keeps_data_deps(tmp_path):
    repo = tmp_path / "repo"
    shutil.copytree(ROOT / "src", repo / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    (repo / "dvc.yaml").write_text("# a comment that stays\nstages:\n  train:\n    cmd: python -m deeprubin.stages.train\n"
                                   "    deps:\n      - src/deeprubin/stages/train.py\n      - data/x.npz\n")
    assert deps.check(repo / "dvc.yaml")
    assert deps.write(repo / "dvc.yaml") == ["train"]
    assert deps.check(repo / "dvc.yaml") == {}
    text = (repo / "dvc.yaml").read_text()
    assert text.startswith("# a comment that stays") and "data/x.npz" in text
    assert deps.write(repo / "dvc.yaml") == []  # idempotent


def test_no_library_module_imports_a_stage():
    """Stages are entry points around library functions; the library never reaches back into them.
    A package's ``__main__.py`` (``python -m deeprubin.stream``) is an entry point too."""
    src = ROOT / "src"
    stage_dirs = [src / "deeprubin" / "stages"]
    offenders = {}
    for path in sorted((src / "deeprubin").rglob("*.py")):
        if any(d == path.parent or d in path.parents for d in stage_dirs) or path.parent.name == "core" \
                or path.name == "__main__.py":
            continue  # core/verify and core/deps run stages as programs; they do not import them
        name = deps.module_name(path, src)
        reached = [str(f.relative_to(src)) for f in deps.closure(name, src)
                   if any(d == f.parent or d in f.parents for d in stage_dirs)]
        if reached:
            offenders[str(path.relative_to(src))] = sorted(reached)
    assert offenders == {}


def test_core_and_sources_import_no_task():
    """core/ and sources/ serve every task: none of their modules reaches into a task package."""
    src = ROOT / "src"
    tasks = src / "deeprubin" / "tasks"
    offenders = {}
    for pkg in ("core", "sources"):
        for path in sorted((src / "deeprubin" / pkg).rglob("*.py")):
            reached = [str(f.relative_to(src)) for f in deps.closure(deps.module_name(path, src), src)
                       if tasks in f.parents]
            if reached:
                offenders[str(path.relative_to(src))] = sorted(reached)
    assert offenders == {}
