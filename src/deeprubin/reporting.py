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
<caption>}}`` in ``dvc.yaml``, else from the stage's ``desc``. The provenance column is
the MD5 of the file itself (its first 12 hex digits), the checksum DVC records for it in
``dvc.lock`` (or in its folder's ``.dir`` listing): the lock of the same commit names the
code, data and parameters that made it. Only the files are read, which are the index
stage's dependencies, so the index is rebuilt exactly when one of them changes. (It once
recorded digests of the making stages' lock entries, which DVC does not see as dependencies
of the index: a stage rerun with identical outputs left them stale.)
"""
from __future__ import annotations

import hashlib
import logging
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

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


def file_md5(path: str | Path) -> str:
    """The first 12 hex digits of a file's MD5 (DVC's checksum of a file output), ``absent`` if none."""
    path = Path(path)
    if not path.is_file():
        return "absent"
    digest = hashlib.md5()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:12]


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


def render_index(figures: list[Entry], metrics: list[Entry], root: str | Path, index_path: str) -> str:
    """The Markdown of ``reports/index.md`` (links relative to the index file); ``root`` is the
    repository, where the files' checksums are read."""
    base = Path(index_path).parent
    root = Path(root)

    def link(path: str, label: str) -> str:
        return f"[{label}]({os.path.relpath(path, base)})"

    lines = ["# Report index", "",
             "Written by the `index` stage of `dvc repro` from `dvc.yaml`; do not edit by hand.",
             "Every figure is in `reports/figures/<stage>/` as PNG and PDF. *md5* is the first 12 hex digits of "
             "the file's MD5, the checksum `dvc.lock` records for it: the lock of the same commit names the code, "
             "data and parameters that made it.", "",
             f"## Figures ({len(figures)})", "",
             "| figure | caption | stage | md5 |", "|---|---|---|---|"]
    for e in sorted(figures, key=lambda e: (e.stage, e.path)):
        name = link(e.path, Path(e.path).stem) + (f" ({link(e.pdf, 'PDF')})" if e.pdf else " (no PDF)")
        lines.append(f"| {name} | {_cell(e.caption)} | `{e.stage}` | `{file_md5(root / e.source)}` |")
    lines += ["", f"## Metrics and tables ({len(metrics)})", "",
              "| file | kind | caption | stage | md5 |", "|---|---|---|---|---|"]
    for e in sorted(metrics, key=lambda e: (e.stage, e.kind, e.path)):
        lines.append(f"| {link(e.path, e.path)} | {e.kind} | {_cell(e.caption)} | `{e.stage}` | "
                     f"`{file_md5(root / e.path)}` |")
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
    text = render_index(figures, metrics, root, rel_index)
    io.write_text(text, root / rel_index)
    return {"n_figures": len(figures), "n_metrics": len(metrics), "uncovered": uncovered,
            "no_caption": [e.source for e in figures if not e.caption]}
