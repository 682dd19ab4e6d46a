"""The ``stellar_sed`` stage's science: the classical models of the simulated survey and the
real Kepler stars from their photometry.

- **Spectra, classical**: PCA of the training spectra (normalised flux, masked pixels at the
  continuum) then gradient-boosted trees (:mod:`.gbm`): the baseline the spectral network is
  reported against, on the same split.
- **SEDs of the simulated stars**: the same trees on the stars' colours, same split (a star's
  split is that of its spectra).
- **Real Kepler stars**: one row per star, split on their own (grouped by star, stratified by MK
  class, ``data_seed``); the trees and the deep :class:`~.model.SEDNet` side by side on the
  same stars, with the references the issue names: predicting the training median, and the
  Kepler Input Catalog's quoted photometric precision (Brown et al. 2011). The trees trained on
  the *simulated* SEDs are also applied to the Kepler test stars: the domain shift from the
  simulator's photometry to a real catalogue.
"""
from __future__ import annotations

import logging
from typing import Mapping, Sequence

import numpy as np
import pandas as pd
from omegaconf import OmegaConf
from sklearn.decomposition import PCA

from ...core import io
from ...core.split import make_split
from .dataset import TARGETS, class_index, read_split_tables, truth_columns
from .fit import StellarArrays, TargetScaler, fit_stellar, predict_outputs
from .gbm import fit_gbm, predict_gbm
from .metrics import parameter_block, score_block

log = logging.getLogger(__name__)


def spectra_features(x: np.ndarray, train_rows: np.ndarray, n_components: int, seed: int) -> np.ndarray:
    """PCA coefficients of the normalised flux (masked pixels set to the continuum, 1), fitted on
    the training rows only."""
    flux = np.where(x[:, 2] > 0.5, 1.0, x[:, 0]).astype(np.float64)
    pca = PCA(n_components=int(n_components), random_state=int(seed)).fit(flux[train_rows])
    return pca.transform(flux)


def feature_matrix(table: pd.DataFrame, columns: Sequence[str], where: str) -> np.ndarray:
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise ValueError(f"{where}: feature column(s) {missing} missing; columns: {sorted(table.columns)}")
    return table[list(columns)].to_numpy(float)


def standardise(x: np.ndarray, train_rows: np.ndarray) -> np.ndarray:
    """Features centred and scaled by the training rows' NaN-aware mean and std (NaN kept)."""
    centre = np.nanmean(x[train_rows], axis=0)
    scale = np.nanstd(x[train_rows], axis=0)
    return (x - centre) / np.where(scale > 0, scale, 1.0)


def kepler_split(kepler: pd.DataFrame, fractions: Mapping[str, float], seed: int) -> pd.Series:
    """Each Kepler star's split (grouped by star, stratified by class), by star_id."""
    objects = pd.DataFrame({"object_id": kepler["star_id"].astype(str), "group_id": kepler["star_id"].astype(str),
                            "label": kepler["label"].astype(str)})
    manifest = make_split(objects, fractions, seed=seed)
    return pd.Series(manifest["split"].to_numpy(), index=manifest["object_id"].to_numpy())


def truths(table: pd.DataFrame, prefix: str, targets: Sequence[str] = TARGETS) -> dict[str, np.ndarray]:
    return {t: table[f"{prefix}{t}"].to_numpy(float) for t in targets}


def fit_sednet(sed_cfg, x: np.ndarray, labels: np.ndarray, targets: np.ndarray, parts: Mapping[str, np.ndarray],
               n_classes: int, seed: int, ids: np.ndarray, log10=()):
    """The deep SED model (``sed.model``, trained by ``sed.trainer``) on standardised features;
    returns ``(proba, mean, sigma)`` of every row in physical units."""
    scaler = TargetScaler.fit(targets[parts["train"]], list(TARGETS), log10=log10)
    z = scaler.transform(targets).astype(np.float32)

    def arrays(rows):
        return StellarArrays(ids[rows], x[rows].astype(np.float32), labels[rows], z[rows], np.isfinite(targets[rows]))

    model_cfg = OmegaConf.to_container(sed_cfg.model, resolve=True)
    result = fit_stellar(sed_cfg.trainer, model_cfg, arrays(parts["train"]), arrays(parts["val"]), seed,
                         n_classes=n_classes, target_names=list(TARGETS))
    proba, mean, sigma = predict_outputs(result.model, x.astype(np.float32))
    return proba, scaler.inverse_mean(mean), scaler.inverse_sigma(sigma, mean), result


def as_dict(values: np.ndarray, targets: Sequence[str] = TARGETS) -> dict[str, np.ndarray]:
    return {t: values[:, k] for k, t in enumerate(targets)}


def simulated_block(cfg, io_paths, sed_cfg, seed: int) -> tuple[dict, pd.DataFrame, object]:
    """The classical models of the simulated survey on the pipeline's split: the trees on PCA
    of the spectra (per spectrum) and on the stars' colours (per star). Returns the metrics,
    the test predictions and the SED trees (for the domain-shift check)."""
    classes = list(cfg.task.classes)
    x, parts = read_split_tables(io_paths, ("train", "val", "test"))
    table = pd.concat([parts[s] for s in ("train", "val", "test")], ignore_index=True).sort_values("row")
    split = table["split"].to_numpy()
    where = f"{io_paths.raw}/objects.parquet"
    labels = class_index(table["label"], classes, where)
    values = table[truth_columns()].to_numpy(float)
    train_rows = np.flatnonzero(split == "train")
    log.info("stellar_sed: trees on %d PCA coefficients of %d training spectra", int(sed_cfg.pca_components),
             len(train_rows))
    feats = spectra_features(x[table["row"].to_numpy()], train_rows, int(sed_cfg.pca_components), seed)
    gbm_cfg = sed_cfg.gbm
    log10 = list(sed_cfg.log10_targets)
    spectra_models = fit_gbm(feats[train_rows], labels[train_rows], as_dict(values[train_rows]), gbm_cfg, seed,
                             log10=log10)
    test = np.flatnonzero(split == "test")
    n_boot = int(cfg.evaluate.bootstrap.n_boot)
    proba, mean, sigma = predict_gbm(spectra_models, feats[test])
    groups = table["star_id"].astype(str).to_numpy()
    spectra_block = score_block(as_dict(values[test]), mean, sigma, labels[test], proba, groups[test], len(classes),
                                n_boot, seed, TARGETS)
    predictions = pd.DataFrame({"object_id": table["object_id"].to_numpy()[test], "star_id": groups[test],
                                "snr": table["snr"].to_numpy()[test], "model": "gbm_spectra_pca"})
    for k, t in enumerate(TARGETS):
        predictions[f"truth_{t}"] = values[test, k]
        predictions[f"pred_{t}"], predictions[f"sigma_{t}"] = mean[t], sigma[t]
    predictions["pred_class"] = np.asarray(classes)[proba.argmax(1)]

    # the stars' SEDs on the same split: a star's split is its spectra's
    sed = io.read_parquet(f"{io_paths.processed}/sed.parquet")
    star_split = table.drop_duplicates("star_id").set_index("star_id")["split"]
    sed = sed[sed["star_id"].astype(str).isin(star_split.index)].reset_index(drop=True)
    stars = io.read_parquet(f"{io_paths.raw}/stars.parquet").set_index("star_id").loc[sed["star_id"]].reset_index()
    s_split = star_split.loc[sed["star_id"]].to_numpy()
    columns = list(sed_cfg.features)
    fx = feature_matrix(sed, columns, f"{io_paths.processed}/sed.parquet")
    s_labels = class_index(stars["label"], classes, f"{io_paths.raw}/stars.parquet")
    s_values = stars[truth_columns()].to_numpy(float)
    s_train, s_test = np.flatnonzero(s_split == "train"), np.flatnonzero(s_split == "test")
    log.info("stellar_sed: trees on the colours of %d simulated training stars", len(s_train))
    sed_models = fit_gbm(fx[s_train], s_labels[s_train], as_dict(s_values[s_train]), gbm_cfg, seed, columns,
                         log10=log10)
    proba, mean, sigma = predict_gbm(sed_models, fx[s_test])
    sed_block = score_block(as_dict(s_values[s_test]), mean, sigma, s_labels[s_test], proba,
                            sed["star_id"].astype(str).to_numpy()[s_test], len(classes), n_boot, seed, TARGETS)
    return {"gbm_spectra_pca": spectra_block, "gbm_sed": sed_block}, predictions, sed_models


def kepler_block(cfg, io_paths, sed_cfg, sim_sed_models, seed: int) -> tuple[dict, pd.DataFrame]:
    """The real Kepler stars: trees and SEDNet side by side, the two references, the domain shift."""
    kepler = io.read_parquet(f"{io_paths.raw}/kepler_stars.parquet")
    if not len(kepler):
        report = io.read_json(f"{io_paths.raw}/ingest_report.json").get("kepler", {})
        return {"status": "skipped", "reason": f"no Kepler stars (catalogue {report.get('status', 'absent')})"}, \
            pd.DataFrame()
    sed = io.read_parquet(f"{io_paths.processed}/sed_kepler.parquet").set_index("star_id").loc[
        kepler["star_id"]].reset_index()   # the Kepler stars' order
    classes = list(cfg.task.classes)
    split = kepler_split(kepler, cfg.split.fractions, int(cfg.data_seed))
    s = split.loc[kepler["star_id"].astype(str)].to_numpy()
    parts = {name: np.flatnonzero(s == name) for name in ("train", "val", "test")}
    columns = list(sed_cfg.kepler_features)
    fx = feature_matrix(sed, columns, f"{io_paths.processed}/sed_kepler.parquet")
    labels = class_index(kepler["label"], classes, f"{io_paths.raw}/kepler_stars.parquet")
    values = kepler[list(TARGETS)].to_numpy(float)
    groups = kepler["star_id"].astype(str).to_numpy()
    n_boot, test = int(cfg.evaluate.bootstrap.n_boot), parts["test"]
    fit_rows = np.concatenate([parts["train"], parts["val"]])   # the trees early-stop on their own holdout
    log10 = list(sed_cfg.log10_targets)
    log.info("stellar_sed: Kepler stars: trees and SEDNet on %d training stars (%d validation)",
             len(parts["train"]), len(parts["val"]))
    models = fit_gbm(fx[fit_rows], labels[fit_rows], as_dict(values[fit_rows]), sed_cfg.gbm, seed, columns,
                     log10=log10)
    g_proba, g_mean, g_sigma = predict_gbm(models, fx[test])
    truth = as_dict(values[test])
    out = {"status": "evaluated", "n_stars": int(len(kepler)),
           "n_train": int(len(parts["train"])), "n_val": int(len(parts["val"])), "n_test": int(len(test)),
           "features": columns,
           "gbm": score_block(truth, g_mean, g_sigma, labels[test], g_proba, groups[test], len(classes), n_boot, seed,
                              TARGETS)}
    n_proba, n_mean, n_sigma, fit = fit_sednet(sed_cfg, standardise(fx, parts["train"]), labels, values, parts,
                                               len(classes), seed, groups, log10=log10)
    out["sednet"] = score_block(truth, as_dict(n_mean[test]), as_dict(n_sigma[test]), labels[test], n_proba[test],
                                groups[test], len(classes), n_boot, seed, TARGETS)
    out["sednet"]["epochs_run"] = int(fit.epochs_run)
    median = {t: np.full(len(test), np.nanmedian(values[parts["train"], k])) for k, t in enumerate(TARGETS)}
    out["reference_training_median"] = {t: float(np.nanmean(np.abs(median[t] - truth[t]))) for t in TARGETS}
    out["reference_kic"] = dict(sed_cfg.kic_reference)
    out["catalogue_median_quoted_error"] = {t: float(np.nanmedian(kepler[f"{t}_err"])) for t in TARGETS}
    sim_columns = list(sed_cfg.features)
    if all(c in sed.columns for c in sim_columns):
        _, sim_mean, sim_sigma = predict_gbm(sim_sed_models, sed[sim_columns].to_numpy(float)[test])
        out["domain_shift_sim_to_kepler"] = parameter_block(truth, sim_mean, sim_sigma, groups[test], TARGETS,
                                                            n_boot, seed)
    else:
        out["domain_shift_sim_to_kepler"] = {"status": "skipped",
                                             "reason": f"Kepler SEDs lack the simulated features {sim_columns}"}
    predictions = pd.DataFrame({"star_id": groups[test], **{f"truth_{t}": truth[t] for t in TARGETS}})
    for name, mean, sigma in (("gbm", g_mean, g_sigma), ("sednet", as_dict(n_mean[test]), as_dict(n_sigma[test]))):
        for t in TARGETS:
            predictions[f"{name}_{t}"], predictions[f"{name}_sigma_{t}"] = mean[t], sigma[t]
    return out, predictions
