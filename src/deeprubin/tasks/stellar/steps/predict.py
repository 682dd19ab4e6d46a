"""The stellar task's ``predict`` step: a trained spectral network applied to spectra, one row
per spectrum (see :mod:`deeprubin.tasks.stellar.steps`).

::

    python -m deeprubin.stages.predict task_name=stellar \\
        'predict.sdss_spectra=[spectra/spec-0266-51602-0001.fits]' predict.output=predictions/sdss.csv

With ``predict.sdss_spectra`` (SDSS ``spec-*.fits`` files, :func:`..readers.read_sdss_spectrum`)
the spectra are read from those files and put in the rest frame with the pipeline's redshift
``Z``; without it, the task's source (the simulator) is read as the ingest step reads it. The
spectra are preprocessed with the settings saved in the checkpoint (never the current ones).
Each row: the class probabilities (calibrated with ``calibration.json`` beside the checkpoint
when ``predict.calibration`` is ``auto``), the MK class, and Teff, logg, [Fe/H] with 1-sigma.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
from omegaconf import DictConfig, OmegaConf

from ....core import io
from ....core.checkpoint import load_checkpoint
from ....core.config import ConfigError
from ..evaluation import checkpoint_scaler, class_probabilities, network_outputs
from ..preprocess import spectra_to_inputs
from ..readers import read_sdss_spectrum
from ..source import load_sample

log = logging.getLogger(__name__)

#: Speed of light [km/s] (CODATA), for the SDSS redshift as a radial velocity.
C_KMS = 299792.458


def read_inputs(cfg: DictConfig) -> tuple[pd.DataFrame, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(table, wave, flux, ivar, mask, rv)``: SDSS files, all on the first file's grid, or the source."""
    files = cfg.predict.get("sdss_spectra")
    if not files:
        sample, _ = load_sample(cfg)
        table = sample.spectra[["object_id", "star_id", "label", "snr"]].copy()
        return table, sample.wave, sample.flux, sample.ivar, sample.mask, sample.spectra["rv"].to_numpy(float)
    spectra = [read_sdss_spectrum(Path(str(f))) for f in files]
    wave = spectra[0].wave
    for path, s in zip(files, spectra):
        if len(s.wave) != len(wave) or not np.allclose(s.wave, wave, rtol=1e-9):
            raise ValueError(f"{path}: its wavelength grid differs from {files[0]}'s; predict one grid at a time")
    table = pd.DataFrame({"object_id": [Path(str(f)).name for f in files],
                          "sdss_class": [str(s.meta.get("class", "")) for s in spectra],
                          "sdss_subclass": [str(s.meta.get("subclass", "")) for s in spectra]})
    rv = np.array([C_KMS * float(s.meta.get("z", 0.0) or 0.0) for s in spectra])
    stack = lambda key: np.stack([getattr(s, key) for s in spectra])  # noqa: E731
    return table, wave, stack("flux").astype(np.float32), stack("ivar").astype(np.float32), stack("mask"), rv


def predict(cfg: DictConfig) -> dict:
    """Write ``predict.output``: per spectrum the class probabilities, class and parameters."""
    checkpoint = Path(str(cfg.predict.checkpoint))
    if not checkpoint.exists():
        raise ConfigError(f"config key 'predict.checkpoint': {checkpoint} does not exist (run train@stellar first)")
    model, meta = load_checkpoint(checkpoint)
    classes = list(meta["classes"])
    scaler, targets = checkpoint_scaler(meta, checkpoint)
    trained = OmegaConf.create((meta.get("config") or {}).get("preprocess") or {})
    if OmegaConf.select(trained, "grid") is None:
        raise ConfigError(f"{checkpoint}: field 'config.preprocess.grid' is missing; not a stellar checkpoint")
    table, wave, flux, ivar, mask, rv = read_inputs(cfg)
    x, _ = spectra_to_inputs(wave, flux, ivar, mask, rv, OmegaConf.to_container(trained.grid, resolve=True),
                             OmegaConf.to_container(trained.continuum, resolve=True), float(trained.error_clip))
    out = network_outputs(model, x, len(classes), scaler, targets)
    proba, calibration = class_probabilities(out.logits, classes, checkpoint, cfg.predict.get("calibration", "auto"))
    table = table.reset_index(drop=True)
    table["pred_class"] = np.asarray(classes)[proba.argmax(1)]
    for k, c in enumerate(classes):
        table[f"p_{c}"] = proba[:, k]
    for t in targets:
        table[f"pred_{t}"], table[f"sigma_{t}"] = out.mean[t], out.sigma[t]
    table["calibration"] = str(calibration) if calibration else "none"
    output = Path(str(cfg.predict.output))
    io.write_table(table, output)
    log.info("predict stellar: %d spectra -> %s", len(table), output)
    return {"n_spectra": int(len(table)), "output": str(output)}
