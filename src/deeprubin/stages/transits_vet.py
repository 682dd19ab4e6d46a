"""transits_vet: train the candidate vetter, score every candidate, compare at star level.

Reads ``transits_search``'s candidates and inputs, trains the vetting CNN on the training
stars' candidates (early stopping on the validation stars'; an MLflow run in the task's
experiment) and writes ``models/transits/vetter/`` (``model.ckpt``, ``config.yaml``,
``history.csv``). The segment CNN of ``train@transits`` scores the same validation and test
light curves, so ``reports/transits/vetting/`` compares, per star and with bootstrap
intervals, the search + vetting, the search alone and the segment CNN
(:mod:`deeprubin.tasks.transits.vet_metrics`): ``metrics.json``, ``comparison.csv``,
``star_scores.csv``, ``candidate_scores.csv``, ``injection_recovery.csv`` (recall per method by
the planet's SNR, period and depth) and ``figures/`` (``vetting_roc.png``, ``injection_recovery.png``).
"""
from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd
from omegaconf import DictConfig

from ..core import io
from ..core.checkpoint import load_checkpoint, write_model_outputs
from ..core.config import to_dict
from ..core.entry import hydra_entry
from ..core.models import model_class, resolve_model_config
from ..core.tracking import flatten, log_params, provenance_tags, training_run
from ..core.training import SplitArrays
from ..tasks.transits.aggregate import star_scores
from ..tasks.transits.fit import fit_vetter, read_split_segments
from ..tasks.transits.module import predict_scores
from ..tasks.transits.plots import VET_COLORS, plot_injection_recovery, plot_vetting
from ..tasks.transits.vet_metrics import METHODS, comparison_table, injection_recovery, star_table, vetting_metrics
from ..tasks.transits.vetting import DIAGNOSTICS

log = logging.getLogger(__name__)


def _segment_scores(tc) -> pd.Series:
    """The segment CNN's light-curve score (``evaluate.aggregate``) of every val/test light curve."""
    model, _ = load_checkpoint(Path(tc.paths.models) / "model.ckpt")
    x, parts = read_split_segments(tc.paths, ("val", "test"))
    scored = []
    for name in ("val", "test"):
        part = parts[name]
        scored.append(star_scores(part.assign(score=predict_scores(model, x[part["row"].to_numpy()])),
                                  str(tc.evaluate.aggregate.method), int(tc.evaluate.aggregate.k)))
    return pd.concat(scored).set_index("object_id")["star_score"]


def run_transits_vet(cfg: DictConfig) -> dict:
    tc = cfg
    seed = int(cfg.seed)
    cands = Path(tc.paths.candidates)
    table = io.read_parquet(cands / "candidates.parquet")
    x = io.read_npz(cands / "candidate_inputs.npz")["x"]
    if len(x) != len(table):
        raise ValueError(f"{cands}: candidates.parquet has {len(table)} rows but candidate_inputs.npz "
                         f"{len(x)}; rerun transits_search")
    x = x[:, None, :]
    parts = {s: (table["split"] == s).to_numpy() for s in ("train", "val")}
    train, val = (SplitArrays(table.loc[m, "object_id"].to_numpy(), x[m], table.loc[m, "label"].to_numpy("int64"))
                  for m in (parts["train"], parts["val"]))
    model_cfg = resolve_model_config(tc.vet.model, n_global=int(tc.vet.n_global), n_local=int(tc.vet.n_local),
                                     n_diagnostics=len(DIAGNOSTICS))
    built = model_class(model_cfg)
    data_hash = io.file_sha256(cands / "candidate_inputs.npz")
    out = io.check_writable(Path(tc.paths.models) / "vetter", "models folder")
    with training_run(cfg.mlflow.tracking_uri, str(tc.mlflow.experiment), run_name=f"{built.__name__}-seed{seed}",
                      tags=provenance_tags(built, data_hash, "transits_vet", task="transits")) as (client, run_id, logger):
        log_params(client, run_id, {**flatten("vet", to_dict(tc.vet)), "seed": seed, "data.n_train": len(train.y),
                                    "data.n_train_planet": int(train.y.sum()), "data.n_val": len(val.y)})
        views = (int(tc.vet.n_global), int(tc.vet.n_local)) if bool(tc.vet.trainer.flip_views) else None
        result = fit_vetter(tc.vet.trainer, model_cfg, train, val, seed, logger=logger, view_sizes=views)
        table["score"] = predict_scores(result.model, x)
        objects = io.read_parquet(Path(tc.paths.raw) / "objects.parquet").set_index("object_id")
        ephemerides = io.read_parquet(Path(tc.paths.raw) / "ephemerides.parquet")
        stars = star_table(table, objects, ephemerides, _segment_scores(tc))
        ev = tc.evaluate
        metrics = vetting_metrics(stars, float(ev.target_fpr), float(ev.snr_threshold),
                                  int(tc.vet.n_bootstrap), seed)
        val_auc = {m: e["val_roc_auc"] for m, e in metrics["methods"].items() if m in ("vet", "segment")}
        metrics["selected_by_validation"] = max(val_auc, key=lambda m: (val_auc[m] or 0.0, m == "vet"))
        metrics["vetter"] = {"epochs_run": result.epochs_run, "best_" + str(tc.vet.trainer.monitor): result.best_score,
                             "n_train_candidates": int(len(train.y)), "n_train_planet": int(train.y.sum())}
        write_model_outputs(out, result.model, history=result.history, model_config=model_cfg, classes=["planet"],
                            bands=["global_view", "local_view", "diagnostics"], n_inputs=1,
                            config={"seed": seed, "model": model_cfg, "trainer": to_dict(tc.vet.trainer)},
                            metadata=metrics["vetter"])
        client.log_metric(run_id, "test_star_roc_auc", metrics["methods"]["vet"]["roc_auc"] or float("nan"))
    rep = Path(tc.paths.reports) / "vetting"
    io.write_json(metrics, rep / "metrics.json")
    io.write_text(comparison_table(metrics).to_csv(index=False, float_format="%.4f"), rep / "comparison.csv")
    io.write_text(stars.to_csv(index=False, float_format="%.6g"), rep / "star_scores.csv")
    io.write_text(table[table["split"].isin(["val", "test"])].drop(columns=["star_label"])
                  .to_csv(index=False, float_format="%.6g"), rep / "candidate_scores.csv")
    io.save_figure(plot_vetting(stars[stars["split"] == "test"], metrics, list(ev.snr_bins)), rep / "figures" / "vetting_roc.png",
                   caption="Simulated test stars: ROC of the search + CNN vetting, the search alone and the "
                           "segment CNN, and recall against planet SNR at the 1% false-positive threshold")
    recovery = injection_recovery(stars[stars["split"] == "test"], metrics, list(ev.snr_bins), int(ev.n_bins_period),
                                  int(ev.n_bins_depth))
    io.write_text(recovery.to_csv(index=False, float_format="%.6g"), rep / "injection_recovery.csv")
    shown = [m for m in ("vet", "bls_sde", "segment") if m in metrics["methods"]]
    curves = {METHODS[m]: {var: t for var, t in recovery[recovery["method"] == m].groupby("variable", sort=False)}
              for m in shown}
    io.save_figure(plot_injection_recovery(curves, float(ev.snr_threshold), float(ev.target_fpr),
                                           snr_label="Total SNR of the simulated planet",
                                           ylabel="Recall (test stars with a planet)",
                                           colors=[VET_COLORS[m] for m in shown]),
                   rep / "figures" / "injection_recovery.png",
                   caption="Injection-recovery on simulated test stars: recall of the search + CNN vetting, the "
                           "search alone and the segment CNN at their 1% validation false-positive thresholds, "
                           "against the planet's total SNR (7.1 marked), period and depth")
    v = metrics["methods"]["vet"]
    log.info("transits_vet: star ROC-AUC %.3f (search alone %.3f), recall(SNR>=%.1f) %s at FPR %s; selected %s",
             v["roc_auc"], metrics["methods"]["bls_sde"]["roc_auc"], float(ev.snr_threshold),
             v["recall_snr_ge_threshold"], v["false_positive_rate"], metrics["selected_by_validation"])
    return metrics


main = hydra_entry(run_transits_vet, task="transits")

if __name__ == "__main__":
    main()
