"""Sweep summary: ``reports/sweeps/<name>/summary.csv``, a model comparison and figures.

Usage::

    .venv/bin/python -m deeprubin.sweeps.summary --sweep-id models_seeds       # from MLflow
    .venv/bin/python -m deeprubin.sweeps.summary --from dvc --name dvc_grid    # from dvc exp show
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from ..core import io
from ..core.config import compose_task
from ..core.plot_style import figure_style, new_figure
from .collect import runs_from_dvc, runs_from_mlflow, varying_params

MODEL_PARAM = "param.model.name"


def _label(metric: str) -> str:
    """``val_macro_f1`` -> ``Validation macro-F1`` (axis labels)."""
    split, _, name = metric.partition("_")
    return f"{ {'val': 'Validation', 'test': 'Test'}.get(split, split)} {name.replace('macro_f1', 'macro-F1')}"


def model_comparison(runs: pd.DataFrame, metrics: list[str]) -> pd.DataFrame:
    """Mean, std and count over seeds of each metric, per setting of the swept params.

    The setting is every swept param but the seed (e.g. the model, or
    ``trainer.noise_resampling``); with nothing else swept, the model name.
    """
    finished = runs[runs["status"] == "FINISHED"]
    keys = [p for p in varying_params(runs) if p != "param.seed"] or [MODEL_PARAM]
    table = finished.groupby(keys)[metrics].agg(["mean", "std", "count"])
    table.columns = [f"{m}_{stat}" for m, stat in table.columns]
    table = table.reset_index()
    if keys == [MODEL_PARAM]:
        names = table[MODEL_PARAM].astype(str)
    else:
        names = table[keys].astype(str).apply(
            lambda row: ", ".join(f"{k.removeprefix('param.')}={v}" for k, v in row.items()), axis=1)
    table.insert(0, "model", names)
    return table.drop(columns=keys)


def plot_metric_vs_param(runs: pd.DataFrame, param: str, metric: str):
    """Metric of every finished run against one swept parameter (log x for wide numeric ranges)."""
    with figure_style():
        fig = new_figure((6, 4))
        ax = fig.add_subplot()
        finished = runs[runs["status"] == "FINISHED"]
        values = pd.to_numeric(finished[param], errors="coerce")
        if values.notna().all():
            ax.scatter(values, finished[metric], s=36, label="finished run")
            if values.min() > 0 and values.max() / values.min() > 20:
                ax.set_xscale("log")
        else:
            cats = sorted(finished[param].astype(str).unique())
            x = finished[param].astype(str).map({c: i for i, c in enumerate(cats)})
            ax.scatter(x + np.random.default_rng(0).uniform(-0.1, 0.1, len(x)), finished[metric], s=36,
                       label="finished run")
            ax.set_xticks(range(len(cats)), cats)
        ax.set_xlabel(param.removeprefix("param."))
        ax.set_ylabel(_label(metric))
        ax.set_title(f"{_label(metric)} vs {param.removeprefix('param.')}")
        ax.legend()
    return fig


def plot_model_comparison(table: pd.DataFrame, metric: str, baseline: float | None):
    """Bars: mean +/- std over seeds per model; a dashed line for the feature baseline."""
    with figure_style():
        fig = new_figure((6, 4))
        ax = fig.add_subplot()
        x = np.arange(len(table))
        ax.bar(x, table[f"{metric}_mean"], yerr=table[f"{metric}_std"].fillna(0), capsize=4,
               label="mean ± std over seeds")
        if baseline is not None:
            ax.axhline(baseline, ls="--", color="k", label="features + balanced RF")
        ax.set_xticks(x, table["model"])
        ax.set_xlabel("Model")
        ax.set_ylabel(_label(metric))
        ax.set_ylim(0, 1)
        ax.legend(loc="lower right")
    return fig


def summarise(runs: pd.DataFrame, out_dir: Path, baseline_metrics: dict | None = None) -> pd.DataFrame:
    """Write summary.csv, model_comparison.csv and figures to ``out_dir``; return the comparison."""
    io.write_text(runs.to_csv(index=False), out_dir / "summary.csv")
    metrics = [m for m in ("val_macro_f1", "test_macro_f1", "val_accuracy", "test_accuracy")
               if m in runs and runs[m].notna().any()]
    table = model_comparison(runs, metrics)
    if baseline_metrics is not None:
        table = pd.concat([table, pd.DataFrame([{"model": "features+BRF (baseline)",
                                                 "test_macro_f1_mean": baseline_metrics["macro_f1"],
                                                 "test_accuracy_mean": baseline_metrics["accuracy"]}])],
                          ignore_index=True)
    io.write_text(table.to_csv(index=False, float_format="%.4f"), out_dir / "model_comparison.csv")
    selection = metrics[0]
    for param in varying_params(runs):
        io.save_figure(plot_metric_vs_param(runs, param, selection),
                       out_dir / f"{selection}_vs_{param.removeprefix('param.')}.png")
    deep = table[~table["model"].astype(str).str.contains("baseline")]
    for metric in metrics[:2]:
        io.save_figure(plot_model_comparison(deep, metric, baseline_metrics.get("macro_f1")
                                             if baseline_metrics and metric == "test_macro_f1" else None),
                       out_dir / f"model_comparison_{metric}.png")
    return table


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--from", dest="source", choices=("mlflow", "dvc"), default="mlflow")
    parser.add_argument("--sweep-id", help="MLflow tag sweep_id (a Hydra multirun's folder name)")
    parser.add_argument("--name", help="report folder name (default: the sweep id, or 'dvc')")
    args = parser.parse_args(argv)
    cfg = compose_task("transients")
    if args.source == "mlflow":
        if not args.sweep_id:
            parser.error("--sweep-id is required with --from mlflow")
        runs = runs_from_mlflow(cfg.mlflow.tracking_uri, cfg.mlflow.experiment, args.sweep_id)
    else:
        runs = runs_from_dvc(f"{cfg.paths.reports}/metrics.json")
    name = args.name or args.sweep_id or "dvc"
    baseline_path = Path(cfg.paths.baseline) / "metrics.json"
    baseline = io.read_json(baseline_path) if baseline_path.exists() else None
    table = summarise(runs, Path("reports/sweeps") / name, baseline)
    print(table.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    print(f"-> reports/sweeps/{name}/")


if __name__ == "__main__":
    main()
