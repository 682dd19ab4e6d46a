"""make verify: the lock-file comparison (the clone + dvc repro run is the command itself)."""
from __future__ import annotations

import subprocess
import sys

import pytest
import yaml

from conftest import REPO_ROOT
from deeprubin.core import verify


def lock(**outs) -> dict:
    stages = {}
    for key, md5 in outs.items():
        stage, _, name = key.partition("__")
        stages.setdefault(stage, {"cmd": "x", "outs": []})["outs"].append({"path": name, "md5": md5})
    return {"schema": "2.0", "stages": stages}


def test_identical_locks_have_no_difference():
    a = lock(ingest__raw="1", train__model="2")
    assert verify.compare_locks(a, a) == []


def test_every_differing_or_missing_output_is_listed():
    committed = lock(ingest__raw="1", train__model="2", evaluate__metrics="3")
    rebuilt = lock(ingest__raw="1", train__model="9", extra__new="4")
    diffs = verify.compare_locks(committed, rebuilt)
    assert [(d.stage, d.path) for d in diffs] == [("evaluate", "metrics"), ("extra", "new"), ("train", "model")]
    text = [str(d) for d in diffs]
    assert "train: model: committed 2, rebuilt 9" in text
    assert "evaluate: metrics: committed 3, rebuilt absent" in text


def test_committed_lock_lists_every_dvc_yaml_stage():
    committed = yaml.safe_load((REPO_ROOT / "dvc.lock").read_text())
    stages = yaml.safe_load((REPO_ROOT / "dvc.yaml").read_text())["stages"]
    tasks = yaml.safe_load((REPO_ROOT / "params.yaml").read_text())["tasks"]
    expected = {f"{name}@{task}" for name, stage in stages.items() if "foreach" in stage for task in tasks}
    expected |= {name for name, stage in stages.items() if "foreach" not in stage}
    assert set(verify.output_hashes(committed)) and {s for s, _ in verify.output_hashes(committed)} == expected


def test_not_a_lock_file_is_named():
    with pytest.raises(ValueError, match="dvc.lock: no 'stages' mapping"):
        verify.output_hashes({"schema": "2.0"})


def test_unknown_revision_fails_with_the_git_command(tmp_path):
    done = subprocess.run([sys.executable, "-m", "deeprubin.core.verify", "--rev", "no-such-revision",
                           "--workdir", str(tmp_path / "w")], capture_output=True, text=True, cwd=REPO_ROOT)
    assert done.returncode == 2
    assert "git checkout --quiet no-such-revision' failed" in done.stderr
