"""Anomaly scores: how poorly the known classes explain an object.

Three scorers, each fitted on the training split's objects (known classes only), higher = more
anomalous, and their combination:

``iforest``   isolation forest (Liu et al. 2008; scikit-learn) on the light-curve features the
              classifier and the forest baseline use (missing values: the training median), as
              ALeRCE's anomaly detector works on its light-curve features (Perez-Carrasco et
              al. 2023, AJ 166, 151): ``-score_samples``.
``knn``       distance in the classifier's learned representation (the input of each ensemble
              member's last linear layer, L2-normalised per member): mean Euclidean distance to
              the ``k`` nearest training objects (Sun et al. 2022, "Out-of-distribution detection
              with deep nearest neighbors", who normalise too).
``msp``       one minus the largest (calibrated) class probability: the classic baseline
              (Hendrycks & Gimpel 2017).
``combined``  the mean of the scorers in ``combine``, each first turned into its percentile
              among the validation split's objects (so the scales agree).

:class:`AnomalyModel` saves what it needs to score new objects as arrays (``.npz``) and JSON,
never as a pickle; the isolation forest is refitted from the saved training features with its
seed when loaded (a second or so), which gives the same trees.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
from sklearn.ensemble import IsolationForest
from sklearn.metrics import roc_auc_score
from sklearn.neighbors import NearestNeighbors

from ....core import io

SCORERS = ("iforest", "knn", "msp")
FORMAT = "deeprubin-anomaly-1"


@dataclass
class AnomalyModel:
    """Fitted scorers (see the module docstring)."""

    train_features: np.ndarray          # (n_train, n_features), missing values imputed
    feature_medians: np.ndarray         # (n_features,)
    feature_names: list[str]
    train_embeddings: np.ndarray        # (n_train, width): evaluation.predict.representation_array
    reference: dict[str, np.ndarray]    # scorer -> sorted validation scores (percentile reference)
    combine: list[str]
    k: int = 10
    n_estimators: int = 300
    seed: int = 0
    default_score: str = "combined"     # the score the stream reports (the anomaly stage's choice)
    _forest: IsolationForest | None = field(default=None, repr=False)
    _nn: NearestNeighbors | None = field(default=None, repr=False)

    # -- fit ------------------------------------------------------------------------------------
    @classmethod
    def fit(cls, features: pd.DataFrame, emb: np.ndarray, *, val_features: pd.DataFrame, val_emb: np.ndarray,
            val_probabilities: np.ndarray, combine: Sequence[str], k: int = 10, n_estimators: int = 300,
            seed: int = 0) -> "AnomalyModel":
        """Fit on the training objects' ``features`` and embeddings ``emb``; percentiles from the validation set."""
        unknown = [s for s in combine if s not in SCORERS]
        if unknown or not combine:
            raise ValueError(f"anomaly.combine must list scorers of {list(SCORERS)}, got {list(combine)}")
        if len(features) <= k:
            raise ValueError(f"anomaly: {len(features)} training objects, need more than k={k}")
        values = features.to_numpy(dtype=np.float64)
        values[~np.isfinite(values)] = np.nan
        medians = np.nanmedian(values, axis=0)
        medians[~np.isfinite(medians)] = 0.0
        model = cls(_impute(values, medians), medians, list(features.columns), np.asarray(emb, dtype=np.float64),
                    {}, list(combine), int(k), int(n_estimators), int(seed))
        val = model.score(val_features, val_emb, val_probabilities, with_combined=False)
        model.reference = {s: np.sort(val[s].to_numpy()) for s in SCORERS}
        return model

    def _fitted(self) -> tuple[IsolationForest, NearestNeighbors]:
        if self._forest is None:
            self._forest = IsolationForest(n_estimators=self.n_estimators, random_state=self.seed, n_jobs=1).fit(
                self.train_features)
            self._nn = NearestNeighbors(n_neighbors=self.k).fit(self.train_embeddings)
        return self._forest, self._nn

    # -- score ----------------------------------------------------------------------------------
    def score(self, features: pd.DataFrame, emb: np.ndarray, probabilities: np.ndarray, *,
              with_combined: bool = True) -> pd.DataFrame:
        """One row per object: ``iforest``, ``knn``, ``msp`` and (``with_combined``) ``combined`` and
        each scorer's validation percentile ``<scorer>_pct``."""
        missing = [c for c in self.feature_names if c not in features.columns]
        if missing:
            raise ValueError(f"anomaly: features lack column(s) {missing[:5]} the anomaly model was fitted on")
        if emb.shape[1] != self.train_embeddings.shape[1]:
            raise ValueError(f"anomaly: embeddings have width {emb.shape[1]}, the anomaly model was fitted on "
                             f"{self.train_embeddings.shape[1]} (another classifier?)")
        forest, nn = self._fitted()
        values = features[self.feature_names].to_numpy(dtype=np.float64)
        values[~np.isfinite(values)] = np.nan
        out = pd.DataFrame(index=features.index)
        out["iforest"] = -forest.score_samples(_impute(values, self.feature_medians))
        dist, _ = nn.kneighbors(emb)
        out["knn"] = dist.mean(axis=1)
        out["msp"] = 1.0 - probabilities.max(axis=1)
        if with_combined:
            for s in SCORERS:
                ref = self.reference[s]
                out[f"{s}_pct"] = np.searchsorted(ref, out[s].to_numpy(), side="right") / len(ref)
            out["combined"] = out[[f"{s}_pct" for s in self.combine]].mean(axis=1)
        return out

    # -- persistence ----------------------------------------------------------------------------
    def save(self, folder: str | Path, *, score: str = "combined") -> None:
        """Write ``anomaly.npz`` and ``anomaly.json`` (``score``: the one a stream reports)."""
        folder = Path(folder)
        io.write_npz(folder / "anomaly.npz", train_features=self.train_features, feature_medians=self.feature_medians,
                     train_embeddings=self.train_embeddings,
                     **{f"reference_{s}": v for s, v in self.reference.items()})
        io.write_json({"format": FORMAT, "feature_names": self.feature_names, "combine": self.combine, "k": self.k,
                       "n_estimators": self.n_estimators, "seed": self.seed, "score": score},
                      folder / "anomaly.json")

    @classmethod
    def load(cls, folder: str | Path) -> "AnomalyModel":
        folder = Path(folder)
        meta_path, arrays_path = folder / "anomaly.json", folder / "anomaly.npz"
        for p in (meta_path, arrays_path):
            if not p.exists():
                raise FileNotFoundError(f"{p}: no anomaly model (run the anomaly stage: dvc repro anomaly)")
        meta = json.loads(meta_path.read_text())
        if meta.get("format") != FORMAT:
            raise ValueError(f"{meta_path}: format {meta.get('format')!r}, expected {FORMAT!r}")
        a = io.read_npz(arrays_path)
        return cls(a["train_features"], a["feature_medians"], list(meta["feature_names"]), a["train_embeddings"],
                   {s: a[f"reference_{s}"] for s in SCORERS},
                   list(meta["combine"]), int(meta["k"]), int(meta["n_estimators"]), int(meta["seed"]),
                   str(meta.get("score", "combined")))


def _impute(values: np.ndarray, medians: np.ndarray) -> np.ndarray:
    out = values.copy()
    rows, cols = np.nonzero(~np.isfinite(out))
    out[rows, cols] = medians[cols]
    return out


def novelty_metrics(scores: pd.DataFrame, is_novel: np.ndarray, novel_class: np.ndarray,
                    scorers: Sequence[str], top_fraction: float = 0.01) -> dict:
    """Per scorer: AUROC of each novel class against the known objects, and the precision of the
    top ``top_fraction`` of all objects ranked by the score."""
    out = {}
    known = ~is_novel
    for s in scorers:
        v = scores[s].to_numpy()
        per_class = {}
        for c in sorted(set(novel_class[is_novel])):
            sel = known | (novel_class == c)
            per_class[c] = float(roc_auc_score((novel_class[sel] == c).astype(int), v[sel]))
        n_top = max(1, int(np.ceil(top_fraction * len(v))))
        top = np.argsort(-v, kind="mergesort")[:n_top]
        out[s] = {"auroc": per_class, "auroc_min": min(per_class.values()) if per_class else float("nan"),
                  "top_precision": float(is_novel[top].mean()), "top_n": int(n_top)}
    return out
