"""benchmarks/seeds.py: paths moved under the workdir, sharing, resuming, summaries, failures.

The stages are replaced by a fake that writes the report files, so these tests take seconds;
the real run is `make seeds` (its figures: reports/benchmarks/seeds.json).
"""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from conftest import REPO_ROOT

_spec = importlib.util.spec_from_file_location("seeds_benchmark", REPO_ROOT / "benchmarks" / "seeds.py")
seeds = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(seeds)


def test_stage_modules():
    assert seeds.module_of("train") == "deeprubin.stages.train"
    assert seeds.module_of("transits_search") == "deeprubin.stages.transits_search"
    assert seeds.module_of("split@transits") == "deeprubin.stages.split"
    assert seeds.stage_args("split@transits") == ["task_name=transits"] and seeds.stage_args("train") == []


def test_every_path_goes_under_the_workdir(tmp_path):
    overrides = seeds.run_overrides([], 7, 42, tmp_path / "shared", tmp_path / "run")
    assert "seed=7" in overrides and "data_seed=42" in overrides
    paths = [o for o in overrides if o.startswith(("paths.", "tasks.transients.paths.", "tasks.transits.paths."))]
    assert paths and all(str(tmp_path) in o for o in paths)
    assert any(o.startswith("tasks.transients.paths.raw=") and str(tmp_path / "shared") in o for o in paths)
    assert any(o.startswith("tasks.transits.paths.models=") and str(tmp_path / "run") in o for o in paths)


def test_summary_is_mean_and_sample_std():
    s = seeds.summarise([0.5, 0.7, None])
    assert s["per_seed"] == [0.5, 0.7, None]
    assert s["mean"] == pytest.approx(0.6)
    assert s["std"] == pytest.approx(0.1414213562)
    assert seeds.summarise([None]) == {"per_seed": [None], "mean": None, "std": None}


def fake_stage(calls):
    """A run_stage that records (stage, params file) and writes the report files the headlines read."""
    import yaml

    def run(stage, config_dir, log):
        cfg = yaml.safe_load((Path(config_dir) / "params.yaml").read_text())
        calls.append((stage, cfg["seed"], cfg["data_seed"]))
        seed = cfg["seed"]
        if stage == "evaluate@transients":
            reports = Path(cfg["tasks"]["transients"]["paths"]["reports"])
            (reports / "baseline").mkdir(parents=True, exist_ok=True)
            (reports / "metrics.json").write_text(json.dumps({"macro_f1": 0.6 + seed / 100}))
            (reports / "baseline/metrics.json").write_text(json.dumps({"macro_f1": 0.8}))
            (reports / "real_sky.json").write_text(json.dumps({"target": {"fraction": 0.85}}))
        if stage == "evaluate@transits":
            metrics = Path(cfg["tasks"]["transits"]["paths"]["metrics"])
            metrics.parent.mkdir(parents=True, exist_ok=True)
            metrics.write_text(json.dumps(
                {"star": {"roc_auc": 0.9}, "segment": {"recall_snr_ge_threshold": 0.1},
                 "bls": {"recall_snr_ge_threshold": 0.5}}))
        if stage == "transits_vet":
            reports = Path(cfg["tasks"]["transits"]["paths"]["reports"]) / "vetting"
            reports.mkdir(parents=True, exist_ok=True)
            (reports / "metrics.json").write_text(json.dumps(
                {"methods": {"vet": {"roc_auc": 0.95 + seed / 1000, "recall_snr_ge_threshold": 0.8,
                                     "recall_snr_ge_threshold_ci95": [0.7, 0.9]},
                             "bls_sde": {"recall_snr_ge_threshold": 0.3}}}))
        return 0.0
    return run


def test_runs_share_the_data_stages_resume_and_summarise(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(seeds, "run_stage", fake_stage(calls))
    out = tmp_path / "seeds.json"
    result = seeds.main(["--seeds", "1", "2", "--data-seeds", "5", "--workdir", str(tmp_path / "w"),
                         "--out", str(out), "--base", "experiment=tiny"])
    ingests = [c for c in calls if c[0] == "ingest@transients"]
    assert ingests == [("ingest@transients", 1, 42), ("ingest@transients", 1, 5)]  # once per data seed
    assert [c[1:] for c in calls if c[0] == "train@transients"] == [(1, 42), (2, 42), (1, 5)]
    assert [c[1:] for c in calls if c[0] == "train@transits"] == [(1, 42), (2, 42), (1, 5)]
    written = json.loads(out.read_text())
    assert written["seeds"] == [1, 2] and written["data_seed"] == 42
    f1 = written["transients"]["deep_macro_f1"]
    assert f1["per_seed"] == pytest.approx([0.61, 0.62]) and f1["mean"] == pytest.approx(0.615)
    assert written["transients"]["deep_minus_baseline_macro_f1"]["per_seed"] == pytest.approx([-0.19, -0.18])
    assert written["transits"]["star_roc_auc"]["mean"] == pytest.approx(0.9)
    assert written["data_seeds"]["seeds"] == [42, 5]
    assert written["command"].startswith("python -m benchmarks.seeds --seeds 1 2")
    assert len(written["code_hash"]) == 64
    assert result == written
    calls.clear()
    again = seeds.main(["--seeds", "1", "2", "--data-seeds", "5", "--workdir", str(tmp_path / "w"), "--out", str(out),
                        "--base", "experiment=tiny"])
    assert calls == []  # every run finished with the same code and overrides: nothing reruns
    assert again["seconds_per_task"] == written["seconds_per_task"]   # up to date: the recorded times stay
    assert set(written["seconds_per_task"]) == {"transients", "transits", "stellar"}


def test_a_failing_stage_names_itself_and_its_log(tmp_path, monkeypatch):
    monkeypatch.setattr(seeds, "HYDRA_ARGS", ("no_such_key=1",))
    config_dir = tmp_path / "run"
    config_dir.mkdir()
    (config_dir / "params.yaml").write_text("seed: 1\n")
    with pytest.raises(seeds.StageFailed, match=r"stage split failed .*params.yaml; log .*stages.log"):
        seeds.run_stage("split", config_dir, config_dir / "stages.log")


def test_repeated_seed_is_refused(capsys):
    with pytest.raises(SystemExit):
        seeds.main(["--seeds", "1", "1"])
    assert "repeats a seed" in capsys.readouterr().err


def test_tasks_option_runs_only_those_tasks(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(seeds, "run_stage", fake_stage(calls))
    out = tmp_path / "seeds.json"
    written = seeds.main(["--seeds", "1", "--data-seeds", "--tasks", "transients", "--workdir", str(tmp_path / "w"),
                          "--out", str(out), "--base", "experiment=tiny"])
    assert calls and all(c[0] != "train@transits" and not c[0].endswith("@transits") for c in calls)
    assert "transits" not in written and written["transients"]["deep_macro_f1"]["per_seed"] == pytest.approx([0.61])
    assert written["models"] == {"transients": "fusion"}
    assert written["transients"]["deep_val_macro_f1"]["per_seed"] == [None]   # the fake run wrote no validation scores


def test_a_tasks_run_carries_the_other_tasks_over_with_their_origin(tmp_path, monkeypatch):
    from deeprubin.results_doc import seeds_section

    monkeypatch.setattr(seeds, "run_stage", fake_stage([]))
    out = tmp_path / "seeds.json"
    args = ["--seeds", "1", "--data-seeds", "--workdir", str(tmp_path / "w"), "--out", str(out),
            "--base", "experiment=tiny"]
    first = seeds.main(args)
    second = seeds.main([*args, "--tasks", "transients", "--rerun"])
    assert second["transits"] == first["transits"]
    origin = second["carried_over"]["transits"]
    assert origin["code_hash"] == first["code_hash"] and origin["command"] == first["command"]
    assert "carried_over" not in first   # nothing to carry on a first run
    third = seeds.main([*args, "--tasks", "transients", "--rerun"])
    assert third["carried_over"]["transits"] == origin   # the first origin, not the intermediate run
    assert set(third["seconds_per_task"]) == {"transients", "transits", "stellar"}   # carried tasks keep their time
    assert third["seconds_per_task"]["transits"] == first["seconds_per_task"]["transits"]
    assert third["transits"]["vet_star_roc_auc"]["mean"] == pytest.approx(0.951)
    assert third["transits"]["search_recall_snr_ge_7p1_at_1pct_fpr"]["mean"] == pytest.approx(0.3)
    assert third["transits"]["vet_recall_snr_ge_7p1_at_1pct_fpr_ci95_high"]["mean"] == pytest.approx(0.9)
    assert third["transits"]["vet_star_roc_auc_snr_ge_7p1_ci95_low"]["mean"] is None   # absent: null
    text = "\n".join(seeds_section(third, "seeds.json", {"transits": {"star_roc_auc": "AUC"}}))
    assert "The transits rows are carried over from an earlier run" in text and "| transits | AUC | 0.900 |" in text
