"""What every benchmark records with its result: the command, the machine, the code it ran."""
from __future__ import annotations

import hashlib
import os
import platform
import shlex
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
RESULTS = REPO_ROOT / "reports" / "benchmarks"


def machine() -> dict:
    """CPU model and count, platform, Python, torch and its native CPU capability, numpy."""
    import numpy as np
    import torch

    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu_model": model, "cpu_count": os.cpu_count(), "platform": platform.platform(),
            "python": platform.python_version(), "torch": torch.__version__,
            "cpu_capability": torch.backends.cpu.get_cpu_capability(), "numpy": np.__version__}


def git_code_hash() -> str:
    """``git rev-parse HEAD`` of this checkout, with ``-dirty`` when ``src/`` or ``conf/`` are modified."""
    sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain", "src", "conf"], cwd=REPO_ROOT, capture_output=True,
                           text=True).stdout.strip()
    return (sha or "unknown") + ("-dirty" if dirty else "")


def tree_hash(*roots: Path) -> str:
    """sha256 over the relative paths and bytes of every ``.py`` and ``.yaml`` file under ``roots``.

    Unlike :func:`git_code_hash` it sees uncommitted edits, so it fingerprints resumable runs.
    """
    digest = hashlib.sha256()
    for root in roots:
        for path in sorted(p for p in root.rglob("*") if p.suffix in (".py", ".yaml") and p.is_file()):
            digest.update(str(path.relative_to(root.parent)).encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


def command(module: str, argv: list[str] | None) -> str:
    """The command line that reproduces a run: ``python -m benchmarks.<module> <args>``."""
    args = sys.argv[1:] if argv is None else argv
    return " ".join(["python", "-m", f"benchmarks.{module}", *(shlex.quote(a) for a in args)])


def provenance(module: str, argv: list[str] | None) -> dict:
    """``command``, ``machine`` and ``code_hash`` for a result."""
    return {"command": command(module, argv), "machine": machine(), "code_hash": git_code_hash()}
