"""benchmarks/real_sky_seeds.py: variant parsing, stage sharing, resuming, paired summaries, failures.

The stages themselves are replaced by a fake that writes the two report files, so these
tests take seconds; the script's real run is in its docstring (and the README).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import real_sky_seeds as rss  # noqa: E402


def test_parse_variant_reads_name_and_overrides():
    assert rss.parse_variant("tol3=preprocess.tol=1e-3") == ("tol3", ["preprocess.tol=1e-3"])
    assert rss.parse_variant("gru=model=gru,trainer.max_epochs=20") == ("gru", ["model=gru", "trainer.max_epochs=20"])


@pytest.mark.parametrize("text, message", [
    ("tol3", "expected NAME=override"),
    ("tol3=", "expected NAME=override"),
    ("=preprocess.tol=1e-3", "expected NAME=override"),
    ("default=preprocess.tol=1e-3", "'default' is the config as is"),
    ("bad=preprocess.tol", "lack '='"),
])
def test_parse_variant_rejects_malformed_text(text, message):
    with pytest.raises(argparse.ArgumentTypeError, match=message):
        rss.parse_variant(text)


def test_main_rejects_a_repeated_variant_name(capsys):
    with pytest.raises(SystemExit):
        rss.main(["--variant", "a=preprocess.tol=1e-3", "--variant", "a=preprocess.tol=1e-2"])
    assert "variant name 'a' given twice" in capsys.readouterr().err


def test_only_variants_of_source_task_split_or_seed_get_their_own_ingest_and_split():
    assert rss.shares_seed_stages(["preprocess.tol=1e-3", "augment=none", "model=gru"])
    for override in ("source.n_objects=10", "seed=3", "task=transients", "split.test_fraction=0.3",
                     "+source.extra=1", "source/population=default"):
        assert not rss.shares_seed_stages([override]), override


def fake_stages(calls: list):
    """A run_stage that records (run dir, stage) and writes report files whose figures
    depend on the run's seed and ``preprocess.tol``."""
    def run_stage(stage: str, config_dir: Path, log: Path) -> float:
        calls.append((config_dir.name, config_dir.parent.name, stage))
        cfg = OmegaConf.load(config_dir / "params.yaml")
        reports = Path(cfg.paths.reports)
        reports.mkdir(parents=True, exist_ok=True)
        bump = 0.1 if cfg.preprocess.tol > 1e-4 else 0.0
        if stage == "evaluate":
            (reports / "metrics.json").write_text(json.dumps({"accuracy": 0.6 + bump, "macro_f1": 0.5}))
        if stage == "real_sky":
            fraction = 0.8 + cfg.seed / 100 - bump
            (reports / "real_sky.json").write_text(json.dumps(
                {"target": {"fraction": fraction, "skipped": False},
                 "datasets": {"alerce_30sne": {"accuracy": 0.7}}}))
        return 0.0
    return run_stage


def test_scan_shares_seed_stages_pairs_variants_and_resumes(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(rss, "run_stage", fake_stages(calls))
    variants = {"default": [], "tol3": ["preprocess.tol=1e-3"], "few": ["source.n_objects=50"]}
    result = rss.scan([1, 6], variants, tmp_path, progress=lambda line: None)

    for seed in ("1", "6"):
        stages = {name: [s for run, sd, s in calls if sd == seed and run == name] for name in variants}
        assert stages["default"] == list(rss.STAGES)
        assert stages["tol3"] == [s for s in rss.STAGES if s not in rss.SEED_ONLY_STAGES]  # shared
        assert stages["few"] == list(rss.STAGES)  # another simulation: its own ingest and split
    # The shared outputs are under the seed's directory, not the variant's.
    params = OmegaConf.load(tmp_path / "1" / "tol3" / "params.yaml")
    assert Path(params.paths.raw) == tmp_path / "1" / "shared" / "data/raw/transients"
    assert Path(params.paths.models) == tmp_path / "1" / "tol3" / "models/transients"
    assert Path(OmegaConf.load(tmp_path / "1" / "few" / "params.yaml").paths.raw).is_relative_to(tmp_path / "1" / "few")

    assert result["runs"]["default"]["6"]["bts_snia_fraction"] == pytest.approx(0.86)
    default = result["summary"]["default"]
    assert default["bts_snia_fraction"]["mean"] == pytest.approx(0.835)
    assert default["bts_snia_fraction"]["min"] == pytest.approx(0.81)
    assert default["bts_snia_seeds_passing"] == 1  # 0.86 >= 0.85, 0.81 not
    tol3 = result["summary"]["tol3"]
    assert tol3["difference_from_default"]["bts_snia_fraction"] == pytest.approx([-0.1, -0.1])
    assert tol3["difference_from_default"]["test_accuracy"] == pytest.approx([0.1, 0.1])
    assert tol3["bts_snia_seeds_passing"] == 0
    assert "difference_from_default" not in default

    calls.clear()
    again = rss.scan([1, 6], variants, tmp_path, progress=lambda line: None)
    assert calls == []  # every run finished from the same code and overrides: nothing runs again
    assert again["runs"] == result["runs"]
    rss.scan([1], {"default": []}, tmp_path, rerun=True, progress=lambda line: None)
    assert [s for _, _, s in calls] == list(rss.STAGES)


def test_scan_reruns_a_run_made_from_other_code_or_left_half_way(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(rss, "run_stage", fake_stages(calls))
    rss.scan([3], {"default": []}, tmp_path, progress=lambda line: None)
    calls.clear()
    monkeypatch.setattr(rss, "tree_hash", lambda *roots: "src and conf after an edit")
    rss.scan([3], {"default": []}, tmp_path, progress=lambda line: None)
    assert [s for _, _, s in calls] == list(rss.STAGES)

    def fail_in_train(stage, config_dir, log):
        if stage == "train":
            raise rss.StageFailed("stage train failed")
        return fake_stages(calls)(stage, config_dir, log)

    monkeypatch.setattr(rss, "run_stage", fail_in_train)
    monkeypatch.setattr(rss, "tree_hash", lambda *roots: "another edit")
    with pytest.raises(rss.StageFailed):
        rss.scan([3], {"default": []}, tmp_path, progress=lambda line: None)
    assert not (tmp_path / "3" / "default" / "fingerprint.txt").exists()  # the old reports stay, unstamped
    calls.clear()
    monkeypatch.setattr(rss, "run_stage", fake_stages(calls))
    rss.scan([3], {"default": []}, tmp_path, progress=lambda line: None)
    assert [s for _, _, s in calls] == list(rss.STAGES)


def test_tree_hash_changes_with_a_file(tmp_path):
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "a.py").write_text("x = 1\n")
    (tmp_path / "pkg" / "notes.txt").write_text("ignored")
    before = rss.tree_hash(tmp_path / "pkg")
    (tmp_path / "pkg" / "notes.txt").write_text("still ignored")
    assert rss.tree_hash(tmp_path / "pkg") == before
    (tmp_path / "pkg" / "a.py").write_text("x = 2\n")
    assert rss.tree_hash(tmp_path / "pkg") != before


def test_collect_gives_null_for_a_skipped_real_sky_check(tmp_path):
    (tmp_path / "metrics.json").write_text(json.dumps({"accuracy": 0.5, "macro_f1": 0.4}))
    (tmp_path / "real_sky.json").write_text(json.dumps({"skipped": True, "target": {"skipped": True}}))
    assert rss.collect(tmp_path) == {"bts_snia_fraction": None, "alerce_accuracy": None,
                                     "test_accuracy": 0.5, "test_macro_f1": 0.4}
    assert rss.summarise([None, None]) == {"n": 0, "mean": None, "std": None, "min": None, "max": None}


def test_a_failing_stage_is_named_with_its_config_and_log(tmp_path):
    (tmp_path / "params.yaml").write_text("seed: 1\n")  # no paths: the ingest stage fails at once
    log = tmp_path / "stages.log"
    with pytest.raises(rss.StageFailed, match=r"stage ingest failed \(exit \d+\) with .*params.yaml; log .*stages.log"):
        rss.run_stage("ingest", tmp_path, log)
    assert log.read_text()  # the stage's own error is kept in the log
