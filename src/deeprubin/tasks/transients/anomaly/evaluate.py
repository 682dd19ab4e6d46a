"""The anomaly stage's work: fit the scorers, validate them on held-out classes, rank candidates.

1. The classifier's inputs of every split (the pipeline's GP grid and features), their
   calibrated probabilities and representations (recorded in the same forward pass).
2. :class:`.scorers.AnomalyModel` fitted on the training split; its percentiles from the
   validation split; saved to ``paths.anomaly_model`` for the stream classifier.
3. The novel classes (``anomaly.novel``) simulated in two surveys of their own (the task's source
   settings; seeds ``data_seed + validation_seed_offset`` and ``data_seed + seed_offset``), run
   through the predict path of the checkpoint.
4. ``anomaly.score: auto`` picks the score with the highest worst-class AUROC on the validation
   pair (known validation objects, first novel survey); every scorer is then reported on the
   test pair (known test objects, second novel survey): AUROC per novel class, precision of the
   top ``top_fraction``. The real light curves of ``anomaly.real`` are scored too.
5. ``candidates.csv``: the ``n_candidates`` highest ``anomaly.score`` among test, novel and
   real objects, with the classifier's verdict and why they stand out.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
from omegaconf import DictConfig, OmegaConf

from ....core import io
from ....core.calibration import apply_calibration, load_calibrator
from ....core.config import ConfigError
from ..evaluation.inputs import load_model_inputs
from ..evaluation.predict import predict_logits, representation, representation_array
from .scorers import SCORERS, AnomalyModel, novelty_metrics

log = logging.getLogger(__name__)

NOVEL_PREFIX = "novel-"


def _check(cfg: DictConfig) -> DictConfig:
    a = cfg.anomaly
    known = set(map(str, cfg.task.classes))
    clash = [c for c in a.novel.classes if c in known]
    if clash:
        raise ConfigError(f"config key 'anomaly.novel.classes': {clash} are classes the model is trained on "
                          f"(task.classes); the anomaly layer is validated on classes it never saw")
    from ....sources.simulate import CLASS_MODELS

    unknown = [c for c in a.novel.classes if c not in CLASS_MODELS]
    if unknown or not a.novel.classes:
        raise ConfigError(f"config key 'anomaly.novel.classes' must name simulator classes, got {list(a.novel.classes)}"
                          f" (unknown: {unknown}; known: {sorted(CLASS_MODELS)})")
    if a.score not in (*SCORERS, "combined", "auto"):
        raise ConfigError(f"config key 'anomaly.score' must be one of {[*SCORERS, 'combined', 'auto']}, "
                          f"got {a.score!r}")
    if int(a.novel.seed_offset) == int(a.novel.validation_seed_offset):
        raise ConfigError("config keys 'anomaly.novel.seed_offset' and 'validation_seed_offset' must differ: the "
                          "score is chosen on one novel sample and reported on the other")
    if not 0 < float(a.top_fraction) < 1:
        raise ConfigError(f"config key 'anomaly.top_fraction' must be in (0, 1), got {a.top_fraction!r}")
    return a


def simulate_novel(cfg: DictConfig, offset: int | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The novel classes' light curves and objects (ids prefixed ``novel-``), seed ``data_seed + offset``
    (default ``anomaly.novel.seed_offset``)."""
    from ....sources.simulate import simulate_survey

    a = cfg.anomaly
    node = OmegaConf.to_container(cfg.source, resolve=True)
    if node.get("name") != "simulate":
        raise ConfigError(f"anomaly: the novel classes come from the simulator; source.name is {node.get('name')!r}")
    node.update(n_objects=int(a.novel.n_objects), class_fractions=None)
    node.setdefault("population", {})["spectroscopic_fraction"] = 0.0
    offset = int(a.novel.seed_offset if offset is None else offset)
    lc, objects = simulate_survey(node, seed=int(cfg.data_seed) + offset,
                                  classes=list(a.novel.classes), bands=list(cfg.task.band_wavelengths))
    lc = lc.assign(object_id=NOVEL_PREFIX + lc["object_id"].astype(str))
    objects = objects.assign(object_id=NOVEL_PREFIX + objects["object_id"].astype(str))
    return lc, objects


def _why(row: pd.Series, classes: list[str]) -> str:
    parts = []
    if row["iforest_pct"] >= 0.95:
        parts.append(f"features unlike the training objects (isolation forest, {100 * row['iforest_pct']:.1f}th pct)")
    if row["knn_pct"] >= 0.95:
        parts.append(f"far from every known class in the classifier's representation ({100 * row['knn_pct']:.1f}th pct)")
    if row["msp_pct"] >= 0.95:
        parts.append(f"classifier unsure (max probability {1 - row['msp']:.2f})")
    return "; ".join(parts) or "moderately unusual on every scorer"


def run_anomaly(cfg: DictConfig, predictor_factory=None) -> dict:
    """The stage (see the module docstring); returns the metrics written to ``metrics.json``."""
    from ..evaluation.inference import Predictor

    a = _check(cfg)
    inputs = load_model_inputs(cfg)
    classes = inputs.classes
    calibration = Path(cfg.paths.models) / "calibration.json"
    calibrator = load_calibrator(calibration, classes=classes, checkpoint=inputs.checkpoint)
    features = io.read_parquet(Path(cfg.paths.processed) / "features.parquet")
    features = features.set_index(features["object_id"].astype(str)).drop(columns="object_id")

    def split(name):
        s = inputs.split(name)
        ids = np.asarray(s.object_ids).astype(str)
        with representation(inputs.model) as captured:   # one forward pass: logits and representation
            logits = predict_logits(inputs.model, s.x)
        p = apply_calibration(logits, calibrator, kind="logits")
        return ids, features.reindex(ids), representation_array(captured), p, np.asarray(classes)[s.y]

    train, val, test = (split(n) for n in ("train", "val", "test"))
    sc = a.scorers
    model = AnomalyModel.fit(train[1], train[2], val_features=val[1], val_emb=val[2], val_probabilities=val[3],
                             combine=list(sc.combine), k=int(sc.k), n_estimators=int(sc.n_estimators),
                             seed=int(cfg.seed))

    predictor = (predictor_factory or Predictor)(inputs.checkpoint, calibration=calibration)
    scorers = [*SCORERS, "combined"]
    # validation pair: choose the score
    lc_val, obj_val = simulate_novel(cfg, int(a.novel.validation_seed_offset))
    known_val = model.score(val[1], val[2], val[3]).assign(label=val[4])
    novel_val = _score_source(predictor, model, lc_val, obj_val)
    novel_val["label"] = novel_val["object_id"].map(dict(zip(obj_val["object_id"], obj_val["label"].astype(str))))
    pair = pd.concat([known_val.reset_index(drop=True), novel_val], ignore_index=True)
    on_val = novelty_metrics(pair, np.r_[np.zeros(len(known_val), bool), np.ones(len(novel_val), bool)],
                             pair["label"].to_numpy(dtype=str), scorers, float(a.top_fraction))
    score = max(scorers, key=lambda s_: on_val[s_]["auroc_min"]) if a.score == "auto" else str(a.score)
    # test pair: report
    lc_novel, obj_novel = simulate_novel(cfg)
    novel = _score_source(predictor, model, lc_novel, obj_novel)
    label_of = dict(zip(obj_novel["object_id"].astype(str), obj_novel["label"].astype(str)))
    known = model.score(test[1], test[2], test[3])
    known = known.assign(object_id=test[0], sample="test", label=test[4], predicted=np.asarray(classes)[test[3].argmax(1)],
                         max_probability=test[3].max(1))
    novel = novel.assign(sample="novel", label=novel["object_id"].map(label_of))
    scored = pd.concat([known.reset_index(drop=True), novel], ignore_index=True)
    is_novel = (scored["sample"] == "novel").to_numpy()
    metrics = novelty_metrics(scored, is_novel, scored["label"].to_numpy(dtype=str), scorers, float(a.top_fraction))

    real, real_summary = _score_real(cfg, predictor, model, list(a.real or []), score)
    everything = pd.concat([scored, real], ignore_index=True) if len(real) else scored
    ranked = everything.sort_values(score, ascending=False, kind="mergesort").reset_index(drop=True)
    candidates = ranked.head(int(a.n_candidates)).copy()
    candidates.insert(0, "rank", np.arange(1, len(candidates) + 1))
    candidates["score"] = candidates[score]
    candidates["why"] = [_why(r, classes) for _, r in candidates.iterrows()]
    out = Path(cfg.paths.anomaly)
    cols = ["rank", "object_id", "sample", "label", "score", "predicted", "max_probability", "why",
            *SCORERS, *(f"{s}_pct" for s in SCORERS), "combined"]
    io.write_table(candidates[cols], out / "candidates.csv")
    io.write_table(everything[["object_id", "sample", "label", "predicted", "max_probability", *SCORERS,
                               "combined"]], out / "scores.csv")

    from ..plots.anomaly import plot_candidate_curves, plot_novelty_roc

    sources = {"test": io.read_parquet(Path(cfg.paths.raw) / "lightcurves.parquet"), "novel": lc_novel,
               **real_summary.pop("_lightcurves", {})}
    io.save_figure(plot_novelty_roc(scored, is_novel, scorers), out / "figures" / "novelty_roc.png",
                   caption="ROC curves of each anomaly score: each held-out class (never in training) against "
                           "the known classes' test objects.")
    top = candidates.head(int(a.n_figures))
    io.save_figure(plot_candidate_curves(top, sources), out / "figures" / "top_candidates.png",
                   caption=f"Light curves of the {len(top)} highest-ranked anomaly candidates ({score} score).")
    model.save(cfg.paths.anomaly_model, score=score)
    report = {"score": score, "score_config": str(a.score), "combine": list(sc.combine),
              "validation_auroc_min": {s_: on_val[s_]["auroc_min"] for s_ in scorers}, "auroc": metrics[score]["auroc"],
              "auroc_min": metrics[score]["auroc_min"], "top_fraction": float(a.top_fraction),
              "top_precision": metrics[score]["top_precision"], "scorers": metrics,
              "n_known_test": int((~is_novel).sum()),
              "n_novel": {c: int((scored["label"][is_novel] == c).sum()) for c in a.novel.classes},
              "novel_seed": int(cfg.data_seed) + int(a.novel.seed_offset),
              "novel_validation_seed": int(cfg.data_seed) + int(a.novel.validation_seed_offset), "real": real_summary}
    io.write_json(report, out / "metrics.json")
    log.info("anomaly: %s AUROC per held-out class %s; top %.0f%% precision %.3f",
             score, {k: round(v, 3) for k, v in report["auroc"].items()}, 100 * float(a.top_fraction),
             report["top_precision"])
    return report


def _score_source(predictor, model: AnomalyModel, lightcurves: pd.DataFrame,
                  objects: pd.DataFrame | None = None) -> pd.DataFrame:
    """Anomaly scores (and the classifier's verdict) of every object of ``lightcurves`` (``objects``:
    their table, for the redshifts of absolute-magnitude features)."""
    out = predictor.outputs(lightcurves, representation=True, features=True, objects=objects)
    ids = out.grid.object_ids.astype(str)
    feats = out.features.set_index(out.features["object_id"].astype(str)).drop(columns="object_id").reindex(ids)
    scores = model.score(feats, out.representation, out.probabilities)
    classes = np.asarray(predictor.classes)
    return scores.reset_index(drop=True).assign(object_id=ids, predicted=classes[out.probabilities.argmax(1)],
                                                max_probability=out.probabilities.max(1))


def _score_real(cfg: DictConfig, predictor, model, names: list[str],
                score: str) -> tuple[pd.DataFrame, dict]:
    from ..evaluation.inference import load_for_prediction
    from ..evaluation.real_sky import dataset_source, missing_inputs

    datasets = cfg.real_sky.datasets
    frames, summary, curves = [], {}, {}
    for name in names:
        if name not in datasets:
            raise ConfigError(f"config key 'anomaly.real': {name!r} is not one of real_sky.datasets {sorted(datasets)}")
        source, _ = dataset_source(name, datasets[name])
        reason = missing_inputs(name, source)
        if reason is not None:
            summary[name] = {"skipped": True, "reason": reason}
            continue
        loaded = load_for_prediction(predictor.train_cfg, source, predictor.bands, label_classes=["SLSN"])
        scores = _score_source(predictor, model, loaded.lightcurves, loaded.objects)
        labels = dict(zip(loaded.objects["object_id"].astype(str), loaded.objects["label"].astype(str)))
        frames.append(scores.assign(sample=f"real:{name}", label=scores["object_id"].map(labels)))
        curves[f"real:{name}"] = loaded.lightcurves
        summary[name] = {"skipped": False, "n_objects": int(len(scores)),
                         "median_score": float(np.median(scores[score]))}
    summary["_lightcurves"] = curves
    return (pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()), summary
