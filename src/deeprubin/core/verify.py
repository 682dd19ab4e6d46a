"""``make verify``: rebuild the committed pipeline in a fresh clone and compare every output hash.

This is the command a reader of the paper runs. It clones a revision (HEAD by default)
into a temporary folder, runs the whole ``dvc repro`` there with this environment's
packages (the clone's own ``src/`` first on ``PYTHONPATH``) and compares the hash of every
output in the ``dvc.lock`` it wrote with the committed ``dvc.lock``. Exit status 0 when
every output is byte-identical; 1 with one line per differing or missing output otherwise,
and, when the math libraries did not take the numerics pinning
(:mod:`deeprubin.core.numerics`), that as the likely cause.

Usage::

    python -m deeprubin.core.verify [--rev HEAD] [--workdir DIR] [--keep] [--stage NAME ...]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

REPO_ROOT = Path(__file__).resolve().parents[3]


@dataclass(frozen=True)
class Difference:
    """One output of one stage whose hash is not the committed one."""

    stage: str
    path: str
    committed: str | None
    rebuilt: str | None

    def __str__(self) -> str:
        return f"{self.stage}: {self.path}: committed {self.committed or 'absent'}, rebuilt {self.rebuilt or 'absent'}"


def output_hashes(lock: dict) -> dict[tuple[str, str], str]:
    """``{(stage, output path): md5}`` of every output in a parsed ``dvc.lock`` (schema 2.0)."""
    if not isinstance(lock, dict) or not isinstance(lock.get("stages"), dict):
        raise ValueError("dvc.lock: no 'stages' mapping (not a DVC 3 lock file)")
    hashes = {}
    for stage, entry in lock["stages"].items():
        for out in (entry or {}).get("outs", []) or []:
            hashes[(stage, str(out["path"]))] = str(out.get("md5"))
    return hashes


def compare_locks(committed: dict, rebuilt: dict) -> list[Difference]:
    """Every output whose hash differs between two parsed lock files (or exists in one only)."""
    a, b = output_hashes(committed), output_hashes(rebuilt)
    keys = sorted(set(a) | set(b))
    return [Difference(stage, path, a.get((stage, path)), b.get((stage, path)))
            for stage, path in keys if a.get((stage, path)) != b.get((stage, path))]


def _run(cmd: list[str], cwd: Path, env: dict | None = None, capture: bool = False) -> subprocess.CompletedProcess:
    print("+", " ".join(cmd), flush=True)
    return subprocess.run(cmd, cwd=cwd, env=env, check=False, text=True,
                          stdout=subprocess.PIPE if capture else None, stderr=subprocess.STDOUT if capture else None)


def clone(repo: Path, rev: str, dest: Path) -> None:
    """``git clone`` ``repo`` into ``dest`` at ``rev``; the real-data folder beside it is linked."""
    for cmd, cwd in ((["git", "clone", "--quiet", "--no-hardlinks", str(repo), str(dest)], dest.parent),
                     (["git", "checkout", "--quiet", rev], dest)):
        if _run(cmd, cwd).returncode != 0:
            raise RuntimeError(f"verify: '{' '.join(cmd)}' failed")
    shared = (repo / ".." / "shared").resolve()
    link = dest.parent / "shared"
    if shared.is_dir() and not link.exists():
        link.symlink_to(shared)  # ../shared/data/real, as the committed run saw it


def clone_env(dest: Path) -> dict:
    """This environment with the clone's ``src/`` first and this interpreter's ``bin/`` on PATH."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(dest / "src"), *filter(None, [env.get("PYTHONPATH")])])
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    return env


def numerics_status(dest: Path, env: dict) -> dict:
    """What the clone's stage processes get: :func:`deeprubin.core.numerics.check`, as a dict."""
    code = ("import json, deeprubin.stages; from deeprubin.core import numerics; "
            "print(json.dumps(numerics.check().as_dict()))")
    done = _run([sys.executable, "-c", code], dest, env, capture=True)
    try:
        return json.loads(done.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return {"ok": False, "problems": [f"could not read the numerics status: {done.stdout.strip()[-300:]}"]}


def verify(repo: Path, rev: str, workdir: Path, stages: list[str] | None = None) -> tuple[list[Difference], dict]:
    """Clone, ``dvc repro`` and compare; returns the differences and the numerics status."""
    dest = workdir / "repo"
    clone(repo, rev, dest)
    committed = yaml.safe_load((dest / "dvc.lock").read_text())
    env = clone_env(dest)
    status = numerics_status(dest, env)
    started = time.monotonic()
    repro = _run(["dvc", "repro", *(stages or [])], dest, env)
    print(f"verify: dvc repro finished in {time.monotonic() - started:.0f} s (exit {repro.returncode})", flush=True)
    if repro.returncode != 0:
        raise RuntimeError(f"verify: dvc repro failed in {dest} (exit {repro.returncode})")
    rebuilt = yaml.safe_load((dest / "dvc.lock").read_text())
    # Stages not run (with --stage) keep their committed entries, so they compare equal.
    return compare_locks(committed, rebuilt), status


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repo", type=Path, default=REPO_ROOT, help="repository to clone (default: this one)")
    parser.add_argument("--rev", default="HEAD", help="revision to verify (default: HEAD)")
    parser.add_argument("--workdir", type=Path, default=None, help="where to clone (default: a temporary folder)")
    parser.add_argument("--keep", action="store_true", help="keep the clone afterwards")
    parser.add_argument("--stage", action="append", default=None,
                        help="reproduce only this stage and its upstream (repeatable; default: everything)")
    args = parser.parse_args(argv)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="deeprubin-verify-"))
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        differences, status = verify(args.repo.resolve(), args.rev, workdir, args.stage)
    except RuntimeError as exc:
        print(exc, file=sys.stderr)
        return 2
    finally:
        if not args.keep and args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    if not differences:
        print(f"verify: every output of dvc.lock at {args.rev} rebuilt byte-identical")
        return 0
    print(f"verify: {len(differences)} output(s) differ from the committed dvc.lock at {args.rev}:")
    for d in differences:
        print(f"  {d}")
    if not status.get("ok", False):
        print("verify: likely cause: the numerics were not pinned: " + "; ".join(status.get("problems", [])))
    return 1


if __name__ == "__main__":
    sys.exit(main())
