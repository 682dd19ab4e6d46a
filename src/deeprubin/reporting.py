"""The report index: every figure and metric file of the pipeline, found from dvc.yaml/dvc.lock.

Nothing here lists figures by name. The stages and their outputs come from DVC's own
reading of ``dvc.yaml`` (interpolation resolved), the provenance from ``dvc.lock``, and
each figure's caption from its PNG metadata (written by :func:`deeprubin.core.io.save_figure`),
so a stage added to ``dvc.yaml`` shows up in the index without touching this module.

* **Figures**: PNG outputs of any stage (a ``.png`` out, or the PNGs inside a directory
  out). Each is copied with its PDF twin to ``reports/figures/<stage>/<path inside the
  out>``, the one place a paper takes its figures from.
* **Metrics**: outputs declared under a stage's ``metrics:``.
* **Tables**: other uncached outputs under ``reports/`` (reports, CSV tables).

Captions of metrics and tables come from the stage's ``meta: {captions: {<file name>:
<caption>}}`` in ``dvc.yaml``, else from the stage's ``desc``. The provenance columns
are short SHA-256 digests of the stage's dependency checksums and of its parameter
values as recorded in ``dvc.lock``: two rows with the same digests came from the same
data, code and parameters. dvc.lock is read, not declared as a dependency (DVC rewrites
it while it runs); the upstream stages are already locked when the index stage runs.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from .core import io

log = logging.getLogger(__name__)

FIGURE_SUFFIX, PDF_SUFFIX = ".png", ".pdf"
TABLE_SUFFIXES = (".json", ".csv", ".txt", ".md", ".tsv")
#: Stages whose outputs are the index itself (never indexed).
INDEX_STAGES = ("index",)


@dataclass
class Output:
    """One DVC output of one stage: repository-relative ``path``, what it is, and the stage."""

    stage: str
    path: str
    metric: bool
    cached: bool
    stage_desc: str = ""
    captions: dict = field(default_factory=dict)


@dataclass
class Entry:
    """One row of the index."""

    kind: str  # "figure", "metric" or "table"
    path: str  # repository-relative (a figure: its copy under the figures folder)
    stage: str
    caption: str
    source: str = ""  # a figure: where the stage wrote it
    pdf: str = ""


def pipeline_outputs(root: str | Path) -> tuple[list[Output], dict[str, list[str]]]:
    """Every output of every ``dvc.yaml`` stage, and every stage's dependency paths.

    Read through DVC (``dvc.repo.Repo``) so ``${...}`` interpolation and ``foreach``
    stages are resolved as ``dvc repro`` resolves them.
    """
    from dvc.repo import Repo

    root = Path(root).resolve()
    outputs, deps = [], {}
    with Repo(str(root)) as repo:
        for stage in repo.index.stages:
            name = getattr(stage, "name", None) or str(stage.addressing)
            meta = stage.meta if isinstance(stage.meta, dict) else {}
            captions = {str(k): str(v) for k, v in (meta.get("captions") or {}).items()}
            deps[name] = [os.path.relpath(d.fs_path, root) for d in stage.deps]
            for out in stage.outs:
                outputs.append(Output(stage=name, path=os.path.relpath(out.fs_path, root), metric=bool(out.metric),
                                      cached=bool(out.use_cache), stage_desc=str(stage.desc or ""),
                                      captions=captions))
    return outputs, deps


def lock_digests(lock_path: str | Path) -> dict[str, dict[str, str]]:
    """Per stage in ``dvc.lock``: 12-hex SHA-256 digests of its dependency checksums and its params."""
    lock_path = Path(lock_path)
    if not lock_path.exists():
        return {}
    stages = (yaml.safe_load(lock_path.read_text()) or {}).get("stages", {})
    out = {}
    for name, entry in stages.items():
        deps = sorted((d["path"], d.get("md5") or d.get("hash") or d.get("etag") or "") for d in entry.get("deps", []))
        params = entry.get("params", {})
        out[name] = {key: hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:12]
                     for key, value in (("deps", deps), ("params", params))}
    return out


def _figures_of(output: Output, root: Path) -> list[tuple[Path, str]]:
    """(absolute PNG path, path inside the output) of the PNG figures an output holds."""
    path = root / output.path
    if path.is_dir():
        return [(p, str(p.relative_to(path))) for p in sorted(path.rglob(f"*{FIGURE_SUFFIX}"))]
    if path.suffix == FIGURE_SUFFIX and path.exists():
        return [(path, path.name)]
    return []


def _replace_dir(tmp: Path, dest: Path) -> None:
    if dest.exists():
        shutil.rmtree(dest)
    os.replace(tmp, dest)


def collect_figures(outputs: list[Output], root: str | Path, figures_dir: str | Path) -> list[Entry]:
    """Copy every figure (PNG and its PDF) to ``figures_dir/<stage>/...``; one :class:`Entry` each.

    The folder is rebuilt from scratch in a temporary sibling and renamed into place,
    so it never holds a figure from a stage that no longer makes it. Two figures
    landing on the same name is an error naming both sources.
    """
    root, figures_dir = Path(root).resolve(), Path(figures_dir)
    dest = figures_dir if figures_dir.is_absolute() else root / figures_dir
    tmp = dest.with_name(f".{dest.name}.tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    entries, seen = [], {}
    try:
        for output in outputs:
            if output.stage in INDEX_STAGES:
                continue
            for png, inner in _figures_of(output, root):
                target = tmp / output.stage / inner
                if target in seen:
                    raise ValueError(f"figures {seen[target]} and {png} would both be copied to "
                                     f"{dest / output.stage / inner}; rename one")
                seen[target] = png
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(png, target)
                pdf = png.with_suffix(PDF_SUFFIX)
                final = dest / output.stage / inner
                if pdf.exists():
                    shutil.copyfile(pdf, target.with_suffix(PDF_SUFFIX))
                else:
                    log.warning("index: %s has no PDF twin (save it with deeprubin.core.io.save_figure)", png)
                entries.append(Entry(
                    kind="figure", path=os.path.relpath(final, root), stage=output.stage,
                    caption=io.read_figure_caption(png), source=os.path.relpath(png, root),
                    pdf=os.path.relpath(final.with_suffix(PDF_SUFFIX), root) if pdf.exists() else ""))
        _replace_dir(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return entries


def metric_entries(outputs: list[Output]) -> list[Entry]:
    """Metrics (``metrics:`` outputs) and uncached report tables under ``reports/``."""
    entries = []
    for o in outputs:
        if o.stage in INDEX_STAGES:
            continue
        is_table = (not o.cached and Path(o.path).suffix in TABLE_SUFFIXES
                    and Path(o.path).parts[:1] == ("reports",))
        if o.metric or is_table:
            caption = o.captions.get(Path(o.path).name) or o.stage_desc
            entries.append(Entry(kind="metric" if o.metric else "table", path=o.path, stage=o.stage, caption=caption))
    return entries


def uncovered_outputs(outputs: list[Output], index_deps: list[str]) -> list[str]:
    """Indexed outputs (figures, metrics, tables) outside every dependency of the index stage.

    The index reruns only when a dependency changes; an output outside them would go
    stale in the index, so the stage warns and a test fails on the project's dvc.yaml.
    """
    def covered(path: str) -> bool:
        return any(path == d or path.startswith(d.rstrip("/") + "/") for d in index_deps)

    indexed = [o for o in outputs if o.stage not in INDEX_STAGES
               and (o.metric or o.path.endswith(FIGURE_SUFFIX) or Path(o.path).parts[:1] == ("reports",))]
    return sorted(o.path for o in indexed if not covered(o.path))


def _cell(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|") or "—"


def render_index(figures: list[Entry], metrics: list[Entry], digests: dict[str, dict[str, str]],
                 index_path: str) -> str:
    """The Markdown of ``reports/index.md`` (links relative to the index file)."""
    base = Path(index_path).parent

    def link(path: str, label: str) -> str:
        return f"[{label}]({os.path.relpath(path, base)})"

    def provenance(stage: str) -> str:
        d = digests.get(stage)
        return f"`{d['deps']}` | `{d['params']}`" if d else "not in dvc.lock | —"

    lines = ["# Report index", "",
             "Written by the `index` stage of `dvc repro` from `dvc.yaml` and `dvc.lock`; do not edit by hand.",
             "Every figure is in `reports/figures/<stage>/` as PNG and PDF. *deps* and *params* are short "
             "SHA-256 digests of the making stage's dependency checksums and parameter values in `dvc.lock`.", "",
             f"## Figures ({len(figures)})", "",
             "| figure | caption | stage | deps | params |", "|---|---|---|---|---|"]
    for e in sorted(figures, key=lambda e: (e.stage, e.path)):
        name = link(e.path, Path(e.path).stem) + (f" ({link(e.pdf, 'PDF')})" if e.pdf else " (no PDF)")
        lines.append(f"| {name} | {_cell(e.caption)} | `{e.stage}` | {provenance(e.stage)} |")
    lines += ["", f"## Metrics and tables ({len(metrics)})", "",
              "| file | kind | caption | stage | deps | params |", "|---|---|---|---|---|---|"]
    for e in sorted(metrics, key=lambda e: (e.stage, e.kind, e.path)):
        lines.append(f"| {link(e.path, e.path)} | {e.kind} | {_cell(e.caption)} | `{e.stage}` | {provenance(e.stage)} |")
    return "\n".join(lines) + "\n"


def write_report_index(root: str | Path, figures_dir: str | Path, index_path: str | Path,
                       index_stage: str = "index") -> dict:
    """Collect the figures, write the index; returns counts and the uncovered outputs."""
    root = Path(root).resolve()
    outputs, deps = pipeline_outputs(root)
    figures = collect_figures(outputs, root, figures_dir)
    metrics = metric_entries(outputs)
    uncovered = uncovered_outputs(outputs, deps.get(index_stage, []))
    for path in uncovered:
        log.warning("index: %s is not under any dependency of the '%s' stage; add it to its deps in dvc.yaml "
                    "or the index will not be refreshed when it changes", path, index_stage)
    index_path = Path(index_path)
    rel_index = os.path.relpath(index_path if index_path.is_absolute() else root / index_path, root)
    text = render_index(figures, metrics, lock_digests(root / "dvc.lock"), rel_index)
    io.write_text(text, root / rel_index)
    return {"n_figures": len(figures), "n_metrics": len(metrics), "uncovered": uncovered,
            "no_caption": [e.source for e in figures if not e.caption]}
