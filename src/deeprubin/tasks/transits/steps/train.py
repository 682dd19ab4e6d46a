"""The transits task's ``train`` step (see :mod:`deeprubin.tasks.transits.steps`)."""
from __future__ import annotations

import logging
from pathlib import Path

from omegaconf import DictConfig

from ....core import io
from ....core.checkpoint import write_model_outputs
from ....core.config import to_dict
from ....core.models import model_class, model_name, resolve_model_config
from ....core.tracking import flatten, hydra_sweep, log_params, provenance_tags, set_tags, training_run
from ..fit import arrays, fit_segment_classifier, read_split_segments
from ..metrics import detection_summary
from ..module import predict_scores
from ..sampling import sample_training_segments

log = logging.getLogger(__name__)


def train(cfg: DictConfig) -> dict:
    """Sample training segments, train, write ``model.ckpt``, ``config.yaml``, ``history.csv``.

    Validation uses every validation segment (no sampling), so the validation metrics
    measure the operating condition of evaluation.
    """
    tc = cfg
    processed = Path(tc.paths.processed)
    x, parts = read_split_segments(tc.paths, ("train", "val"))
    seed = int(cfg.seed)
    chosen = parts["train"].iloc[sample_training_segments(parts["train"], tc.trainer.sampling, seed)]
    train, val = arrays(x, chosen), arrays(x, parts["val"])
    data_hash = io.file_sha256(processed / "segments.npz")

    sweep_id, sweep_dir, job_dir = hydra_sweep()
    out = io.check_writable(job_dir / "model" if job_dir is not None else Path(tc.paths.models), "models folder")
    model_config = resolve_model_config(tc.model)
    built = model_class(model_config)  # the allow-list, checked before any work; its name is the logged one
    with training_run(cfg.mlflow.tracking_uri, str(tc.mlflow.experiment), run_name=f"{built.__name__}-seed{seed}",
                      tags=provenance_tags(built, data_hash, "train", task="transits"), sweep_id=sweep_id,
                      sweep_dir=sweep_dir) as run:  # FINISHED only after the outputs below are written
        return _train_and_write(tc, run, train, val, seed, model_config, out, data_hash)


def _train_and_write(tc, run, train, val, seed, model_config, out, data_hash) -> dict:
    client, run_id, logger = run
    resolved = to_dict(tc)
    params = flatten("", {k: resolved[k] for k in ("trainer", "preprocess", "source")})
    params.update(flatten("model", model_config))
    params.update({"seed": seed, "data.n_train": len(train.y), "data.n_train_positive": int(train.y.sum()),
                   "data.n_val": len(val.y), "data.n_val_positive": int(val.y.sum())})
    log_params(client, run_id, params)
    result = fit_segment_classifier(tc.trainer, model_config, train, val, seed, logger=logger,
                                    preprocess_cfg=tc.preprocess)
    val_scores = predict_scores(result.model, val.x)
    val_summary = detection_summary(val.y, val_scores, threshold=0.5)
    for key in ("roc_auc", "pr_auc"):
        client.log_metric(run_id, f"val_final_{key}", val_summary[key])
    summary = {"data_sha256": data_hash, "n_train": int(len(train.y)), "n_train_positive": int(train.y.sum()),
               "n_val": int(len(val.y)), "best_monitor": result.best_score, "monitor": str(tc.trainer.monitor),
               "epochs_run": result.epochs_run, "val_roc_auc": val_summary["roc_auc"],
               "val_pr_auc": val_summary["pr_auc"]}
    write_model_outputs(out, result.model, history=result.history,
                        model_config=model_config, classes=["transit"], bands=list(tc.preprocess.channels),
                        n_inputs=int(train.x.shape[1]), config=resolved, metadata=summary)
    client.log_artifact(run_id, str(out / "config.yaml"))
    client.log_artifact(run_id, str(out / "history.csv"))
    set_tags(client, run_id, {"val_roc_auc": f"{val_summary['roc_auc']:.4f}", "model": model_name(result.model)})
    log.info("train transits: %d training segments (%d positive); val ROC-AUC %.3f PR-AUC %.3f after %d epochs "
             "(MLflow run %s)", len(train.y), int(train.y.sum()), val_summary["roc_auc"], val_summary["pr_auc"],
             result.epochs_run, run_id)
    return summary
