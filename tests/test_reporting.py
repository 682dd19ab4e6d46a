"""The report index: discovery from dvc.yaml, figure collection, provenance by each file's own checksum."""
from __future__ import annotations

import hashlib
from pathlib import Path

import yaml
from conftest import REPO_ROOT, run_in

from deeprubin.core import io
from deeprubin.core.plot_style import figure_style, new_figure
from deeprubin.reporting import file_md5, pipeline_outputs, uncovered_outputs, write_report_index


def test_index_stage_depends_on_every_indexed_output():
    """A stage whose figures/metrics lie outside the index stage's deps would go stale in the index."""
    outputs, deps = pipeline_outputs(REPO_ROOT)
    assert "index" in deps, "dvc.yaml has no 'index' stage"
    assert uncovered_outputs(outputs, deps["index"]) == []
    stages = {o.stage for o in outputs}
    assert {"calibrate@transients", "calibrate@transits", "evaluate@transients", "evaluate@transits", "uncertainty", "early", "eda",
            "baseline"} <= stages


def _figure(path: Path, caption: str | None) -> None:
    with figure_style():
        fig = new_figure((3, 2))
        fig.add_subplot().plot([0, 1], [0, 1])
    io.save_figure(fig, path, caption=caption)


def test_index_lists_figures_metrics_captions_and_provenance(tmp_path):
    """A two-stage DVC repo: a directory of figures, a single-file figure and a metric."""
    (tmp_path / "dvc.yaml").write_text(yaml.safe_dump({"stages": {
        "make": {"cmd": "true", "desc": "Makes things", "deps": ["in.txt"], "params": ["x"],
                 "outs": ["reports/t/figures", "reports/t/one.png"],
                 "metrics": [{"reports/t/metrics.json": {"cache": False}}],
                 "meta": {"captions": {"metrics.json": "The scores"}}},
        "index": {"cmd": "true", "deps": ["reports/t"], "outs": ["reports/figures", {"reports/index.md": {"cache": False}}]},
    }}))
    (tmp_path / "params.yaml").write_text("x: 1\n")
    (tmp_path / "in.txt").write_text("data\n")
    run_in(["git", "init", "-q"], tmp_path)
    run_in(["dvc", "init", "-q"], tmp_path)
    _figure(tmp_path / "reports/t/figures/sub/a.png", "Caption of a.")
    _figure(tmp_path / "reports/t/one.png", "Caption of one.")
    io.write_json({"accuracy": 1.0}, tmp_path / "reports/t/metrics.json")
    (tmp_path / "dvc.lock").write_text(yaml.safe_dump({"schema": "2.0", "stages": {"make": {
        "cmd": "true", "deps": [{"path": "in.txt", "md5": "abc", "size": 5}], "params": {"params.yaml": {"x": 1}},
        "outs": []}}}))

    summary = write_report_index(tmp_path, "reports/figures", "reports/index.md")
    assert summary["n_figures"] == 2 and summary["n_metrics"] == 1 and summary["uncovered"] == []
    for rel in ("make/sub/a.png", "make/sub/a.pdf", "make/one.png", "make/one.pdf"):
        assert (tmp_path / "reports/figures" / rel).stat().st_size > 1000, rel
    text = (tmp_path / "reports/index.md").read_text()
    md5 = hashlib.md5((tmp_path / "reports/t/figures/sub/a.png").read_bytes()).hexdigest()[:12]
    assert f"[a](figures/make/sub/a.png) ([PDF](figures/make/sub/a.pdf)) | Caption of a. | `make` | `{md5}` |" in text
    assert "Caption of one." in text
    assert "[reports/t/metrics.json](t/metrics.json) | metric | The scores | `make`" in text

    # A figure removed from its stage disappears from the collection on the next run.
    (tmp_path / "reports/t/one.png").unlink()
    write_report_index(tmp_path, "reports/figures", "reports/index.md")
    assert not (tmp_path / "reports/figures/make/one.png").exists()


def test_provenance_is_the_files_own_checksum_not_the_lock(tmp_path):
    """The md5 column changes with the file and only with it: a stage rerun that changes its
    lock entry (code, params) but not its outputs leaves the index as it is, as DVC does."""
    (tmp_path / "dvc.yaml").write_text(yaml.safe_dump({"stages": {
        "s": {"cmd": "true", "metrics": [{"reports/m.json": {"cache": False}}]},
        "index": {"cmd": "true", "deps": ["reports/m.json"], "outs": [{"reports/index.md": {"cache": False}}]},
    }}))
    run_in(["git", "init", "-q"], tmp_path)
    run_in(["dvc", "init", "-q"], tmp_path)
    io.write_json({"f1": 0.5}, tmp_path / "reports/m.json")
    (tmp_path / "dvc.lock").write_text(yaml.safe_dump({"schema": "2.0", "stages": {"s": {"cmd": "a"}}}))
    write_report_index(tmp_path, "reports/figures", "reports/index.md")
    first = (tmp_path / "reports/index.md").read_text()
    assert f"`{file_md5(tmp_path / 'reports/m.json')}` |" in first
    (tmp_path / "dvc.lock").write_text(yaml.safe_dump({"schema": "2.0", "stages": {"s": {"cmd": "b"}}}))
    write_report_index(tmp_path, "reports/figures", "reports/index.md")
    assert (tmp_path / "reports/index.md").read_text() == first
    io.write_json({"f1": 0.6}, tmp_path / "reports/m.json")
    write_report_index(tmp_path, "reports/figures", "reports/index.md")
    assert (tmp_path / "reports/index.md").read_text() != first
    assert file_md5(tmp_path / "missing.json") == "absent"


def test_every_png_output_declares_its_pdf_twin():
    """io.save_figure writes <stem>.pdf beside every PNG: a stage listing a single PNG as an
    output must list the PDF too, or DVC leaves the PDF untracked (and git picks it up)."""
    stages = yaml.safe_load((REPO_ROOT / "dvc.yaml").read_text())["stages"]
    missing = []
    for name, stage in stages.items():
        outs = [next(iter(o)) if isinstance(o, dict) else o for o in stage.get("outs", [])]
        missing += [f"{name}: {o}" for o in outs if str(o).endswith(".png") and str(o)[:-4] + ".pdf" not in outs]
    assert missing == []
