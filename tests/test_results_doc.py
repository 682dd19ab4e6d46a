"""docs/results.md is generated from the reports (issue 18, point 5)."""
from __future__ import annotations

from deeprubin.core import io
from deeprubin.results_doc import GENERATED, render_results

CONFIG = {
    "seed": 42, "seeds_file": "reports/benchmarks/seeds.json",
    "seed_labels": {"transients": {"deep_macro_f1": "deep macro-F1", "real_sky_fraction": "real sky"}},
    "sections": [{"title": "Transients, this run", "rows": [
        {"label": "deep macro-F1", "file": "m.json", "key": "macro_f1", "interval": "ci.macro_f1"},
        {"label": "absent", "file": "none.json", "key": "x"}]}],
}
SEEDS = {"seeds": [1, 2], "data_seed": 42, "command": "python benchmarks/seeds.py", "code_hash": "abc",
         "transients": {"deep_macro_f1": {"mean": 0.6512, "std": 0.0191}, "real_sky_fraction": {"mean": 0.8, "std": None}},
         "data_seeds": {"seeds": [42, 7], "training_seed": 1,
                        "transients": {"deep_macro_f1": {"mean": 0.636, "std": 0.037}}}}


def test_numbers_come_from_the_reports():
    text = render_results(CONFIG, {"m.json": {"macro_f1": 0.6775, "ci": {"macro_f1": {"low": 0.62, "high": 0.73}}}},
                          SEEDS)
    assert text.startswith(GENERATED)
    assert "| transients | deep macro-F1 | 0.651 +- 0.019 | 0.636 +- 0.037 |" in text
    assert "| transients | real sky | 0.800 | n/a |" in text
    assert "| deep macro-F1 | 0.677 | [0.620, 0.730] | `m.json`: `macro_f1` |" in text
    assert "| absent | n/a | - | `none.json`: `x` |" in text


def test_without_seeds_file_says_how_to_make_it():
    assert "`reports/benchmarks/seeds.json` is absent: run `make seeds`." in render_results(CONFIG, {}, None)


def test_paper_profile_section_quotes_its_run_with_the_test_interval():
    paper = {"seeds": [42], "data_seed": 42, "command": "python -m benchmarks.seeds --base experiment=paper",
             "base": ["experiment=paper"], "code_hash": "def", "seconds": 3000.0, "machine": {"cpu_count": 2},
             "transients": {"deep_macro_f1": {"per_seed": [0.88], "mean": 0.88, "std": None},
                            "deep_macro_f1_ci95_low": {"mean": 0.86}, "deep_macro_f1_ci95_high": {"mean": 0.90}}}
    config = {**CONFIG, "paper_file": "reports/benchmarks/paper.json"}
    text = render_results(config, {}, SEEDS, paper)
    assert "## The paper profile" in text and "wall time 50 min on 2 CPU(s)" in text
    assert "| transients | deep macro-F1 | 0.880 | [0.860, 0.900] |" in text
    assert "| transients | real sky | n/a | - |" in text
    assert "`reports/benchmarks/paper.json` is absent: run `make paper`." in render_results(config, {}, SEEDS, None)
    assert "paper profile" not in render_results(CONFIG, {}, SEEDS, paper)   # not configured: no section
    per_task = render_results(config, {}, SEEDS, {**paper, "seconds_per_task": {"transients": 3000.0,
                                                                                "transits": 1500.0}})
    assert "wall time transients 50 min, transits 25 min on 2 CPU(s)" in per_task


def test_stage_writes_the_page(tmp_path, monkeypatch):
    from conftest import compose_under

    from deeprubin.stages.results import run_results

    monkeypatch.chdir(tmp_path)
    cfg = compose_under(tmp_path, [])
    io.write_json({"macro_f1": 0.5, "accuracy": 0.6, "n_test": 10}, f"{cfg.paths.reports}/metrics.json")
    cfg.results.output = str(tmp_path / "docs/results.md")
    summary = run_results(cfg)
    text = (tmp_path / "docs/results.md").read_text()
    assert "| deep model (fusion) test macro-F1 | 0.500 |" in text
    assert f"{cfg.paths.reports}/baseline/metrics.json" in summary["missing"]


def test_every_mean_std_in_the_readme_is_in_the_generated_results():
    """The README quotes seed means only as docs/results.md (generated from seeds.json) has them."""
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    quoted = re.findall(r"-?\d\.\d{3} \+- \d\.\d{3}", (root / "README.md").read_text())
    results = (root / "docs" / "results.md").read_text()
    assert quoted, "the README quotes no headline mean +- std"
    assert [q for q in quoted if q not in results] == []


def test_an_interval_may_be_a_low_high_pair():
    config = {**CONFIG, "sections": [{"title": "Transits", "rows": [
        {"label": "vetting ROC-AUC", "file": "v.json", "key": "methods.vet.roc_auc",
         "interval": "methods.vet.roc_auc_ci95"}]}]}
    text = render_results(config, {"v.json": {"methods": {"vet": {"roc_auc": 0.9, "roc_auc_ci95": [0.85, 0.95]}}}},
                          SEEDS)
    assert "| vetting ROC-AUC | 0.900 | [0.850, 0.950] | `v.json`: `methods.vet.roc_auc` |" in text
