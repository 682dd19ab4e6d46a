"""Code dependencies of DVC stages, derived from imports rather than remembered.

``dvc repro`` reruns a stage when one of its ``deps`` changes, so a stage must depend on
every ``deeprubin`` file its command imports, or an edit leaves stale outputs that DVC
calls up to date. :func:`closure` computes a module's import closure statically (``ast``:
module-level and function-level imports, relative ones resolved, the ``__init__`` of every
parent package, and string constants naming a module, as registries for ``importlib`` do), and ``python -m deeprubin.core.deps`` (``make deps``) rewrites the
``src/`` entries of every stage's ``deps`` in ``dvc.yaml`` to it, leaving data deps,
comments and layout alone. ``--check`` exits 1 listing what a stage misses
(``tests/test_dvc_deps.py`` runs the same check).

A generic stage (``foreach: ${tasks}``, ``${key}`` in its command) runs, for each task, its
own module and, when that module calls :func:`deeprubin.tasks.load_task`, the task's module of
that step (``deeprubin.tasks.<task>.steps.<step>``, the step named like the stage module): its
deps are the union over the tasks of params.yaml (one list serves every task), and the check
runs once per task.
"""
from __future__ import annotations

import argparse
import ast
import re
import sys
from pathlib import Path

PACKAGE = "deeprubin"
REPO = Path(__file__).resolve().parents[3]
#: A dotted path into the package in a string constant, e.g. a registry's "pkg.module:function".
DOTTED = re.compile(rf"^{PACKAGE}(\.\w+)+(:\w+)?$")


def module_file(name: str, src: Path) -> Path | None:
    """``deeprubin.a.b`` -> its ``.py`` file (module or package ``__init__``); None if not in ``src``."""
    if name != PACKAGE and not name.startswith(PACKAGE + "."):
        return None
    base = src.joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def module_name(path: Path, src: Path) -> str:
    parts = list(path.relative_to(src).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path, src: Path) -> set[str]:
    """Every ``deeprubin`` module ``path`` imports, anywhere in the file (``from pkg import sub`` included)."""
    own = module_name(path, src)
    package = own if path.name == "__init__.py" else own.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.add(target)
            found.update(f"{target}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and DOTTED.match(node.value):
            # a string registry entry ("deeprubin.sources.files:load_files", a model class path):
            # the module that importlib will load, found by dropping trailing names
            parts = node.value.split(":")[0].split(".")
            while parts and module_file(".".join(parts), src) is None:
                parts.pop()
            if len(parts) > 1:
                found.add(".".join(parts))
    return {name for name in found if module_file(name, src) is not None}


def closure(module: str, src: Path = REPO / "src") -> set[Path]:
    """Files of ``module`` and of everything it imports, transitively, with their parent packages."""
    todo, seen = [module], set()
    while todo:
        parts = todo.pop().split(".")
        for i in range(1, len(parts) + 1):  # importing a.b.c runs a/__init__ and a/b/__init__
            path = module_file(".".join(parts[:i]), src)
            if path is not None and path not in seen:
                seen.add(path)
                todo.extend(imports_of(path, src))
    return seen


#: The module of a task's step that a generic stage runs (:meth:`deeprubin.tasks.Task.step`).
TASK_STEP = PACKAGE + ".tasks.{task}.steps.{step}"
KEY = "${key}"


def loads_task_steps(module: str, src: Path) -> bool:
    """Whether ``module`` imports :func:`deeprubin.tasks.load_task` (and so runs a task's steps)."""
    path = module_file(module, src)
    return path is not None and any(
        isinstance(node, ast.ImportFrom) and any(alias.name == "load_task" for alias in node.names)
        for node in ast.walk(ast.parse(path.read_text(), str(path))))


def task_list(repo: Path) -> list[str]:
    """The tasks of ``params.yaml`` (what ``foreach: ${tasks}`` runs over)."""
    import yaml

    params = repo / "params.yaml"
    return [str(k) for k in ((yaml.safe_load(params.read_text()) or {}).get("tasks") or {})] if params.exists() else []


def stage_closures(module: str, cmd: str, repo: Path) -> dict[str | None, set[Path]]:
    """``{task: files}`` a stage's command imports: one entry per task for a generic stage
    (``${key}`` in its command), else ``{None: closure}``."""
    src = repo / "src"
    files = closure(module, src)
    if KEY not in str(cmd):
        return {None: files}
    step = module.rsplit(".", 1)[-1] if loads_task_steps(module, src) else None
    return {task: files | (closure(TASK_STEP.format(task=task, step=step), src) if step else set())
            for task in task_list(repo)}


def stage_module(cmd: str) -> str | None:
    match = re.search(r"python -m ([\w.]+)", str(cmd))
    return match.group(1) if match else None


def dep_name(dep) -> str:
    return dep if isinstance(dep, str) else next(iter(dep))


def uncovered(files: set[Path], deps: list[str], repo: Path) -> list[str]:
    """``files`` that no ``src/`` entry of ``deps`` covers (a folder covers its files)."""
    covered = [repo / d for d in deps if d.startswith("src/")]
    return sorted(str(f.relative_to(repo)) for f in files if not any(f == c or c in f.parents for c in covered))


def missing(module: str, deps: list[str], repo: Path = REPO, cmd: str = "") -> list[str]:
    """Files of ``module``'s closure that ``deps`` misses; for a generic stage (``${key}`` in
    ``cmd``), for each task with ``${key}`` read as that task (``"<file> (task <name>)"``)."""
    problems: list[str] = []
    for task, files in stage_closures(module, cmd, repo).items():
        named = [d.replace(KEY, task) for d in deps] if task else deps
        problems += [f"{f} (task {task})" if task else f for f in uncovered(files, named, repo)]
    return problems


def code_deps(module: str, repo: Path = REPO, cmd: str = "") -> list[str]:
    """The ``src/`` deps of a stage running ``module``: its closure (for a generic stage the union
    over the tasks), a whole folder where all of it is used."""
    files = set().union(*stage_closures(module, cmd, repo).values())
    out: list[str] = []
    folders = sorted({f.parent for f in files}, key=lambda p: (len(p.parts), str(p)))
    whole: list[Path] = []
    for folder in folders:
        if any(w in folder.parents for w in whole):
            continue
        inside = {p for p in folder.rglob("*.py")}
        if folder.name != PACKAGE and len(inside) > 1 and inside <= files:
            whole.append(folder)
    for folder in whole:
        out.append(str(folder.relative_to(repo)))
    for f in sorted(files):
        if not any(w in f.parents for w in whole):
            out.append(str(f.relative_to(repo)))
    return sorted(out)


def load(path: Path):
    from ruamel.yaml import YAML

    yaml = YAML()
    yaml.preserve_quotes = True
    yaml.indent(mapping=2, sequence=4, offset=2)
    yaml.width = 100
    return yaml, yaml.load(path.read_text())


def stage_bodies(spec) -> list[tuple[str, dict]]:
    """``(name, body)`` of every stage: a plain stage, or the ``do`` body of a ``foreach``/``matrix``
    stage (one body shared by each task it runs for, so one set of code deps)."""
    return [(name, stage["do"] if "do" in stage else stage) for name, stage in spec["stages"].items()]


def check(dvc_yaml: Path = REPO / "dvc.yaml") -> dict[str, list[str]]:
    """``{stage: files its deps miss}`` for every stage whose command is ``python -m deeprubin...``."""
    _, spec = load(dvc_yaml)
    problems = {}
    for name, stage in stage_bodies(spec):
        module = stage_module(stage.get("cmd", ""))
        if module and module.startswith(PACKAGE):
            miss = missing(module, [dep_name(d) for d in stage.get("deps", [])], dvc_yaml.parent, stage["cmd"])
            if miss:
                problems[name] = miss
    return problems


def write(dvc_yaml: Path = REPO / "dvc.yaml") -> list[str]:
    """Rewrite every stage's ``src/`` deps to :func:`code_deps` (other deps kept, in order, after them)."""
    yaml, spec = load(dvc_yaml)
    changed = []
    for name, stage in stage_bodies(spec):
        module = stage_module(stage.get("cmd", ""))
        if not (module and module.startswith(PACKAGE)):
            continue
        deps = stage.get("deps", [])
        others = [d for d in deps if not dep_name(d).startswith("src/")]
        wanted = code_deps(module, dvc_yaml.parent, stage["cmd"])
        if [dep_name(d) for d in deps] != wanted + [dep_name(d) for d in others]:
            changed.append(name)
            deps.clear()
            deps.extend(wanted + others)
    if changed:
        import io as _io

        from . import io

        buffer = _io.StringIO()
        yaml.dump(spec, buffer)
        io.write_text(buffer.getvalue(), dvc_yaml)
    return changed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="only report missing deps (exit 1 if any)")
    parser.add_argument("--dvc-yaml", type=Path, default=REPO / "dvc.yaml")
    args = parser.parse_args(argv)
    if args.check:
        problems = check(args.dvc_yaml)
        for stage, files in problems.items():
            print(f"{args.dvc_yaml}: stage '{stage}' imports files missing from its deps: {files}")
        return 1 if problems else 0
    changed = write(args.dvc_yaml)
    print(f"{args.dvc_yaml}: code deps rewritten for {len(changed)} stage(s): {changed}" if changed
          else f"{args.dvc_yaml}: code deps up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
