"""A trained stellar network applied to preprocessed spectra: class logits and physical
parameters with their sigmas (the checkpoint's target scaler undoes the standardisation)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy.special import softmax

from ...core.calibration import apply_calibration, load_calibrator, resolve_calibration
from .fit import TargetScaler
from .model import split_outputs


@dataclass
class NetworkOutputs:
    """Class logits (n, C) and, per target name, the mean and 1-sigma in physical units."""

    logits: np.ndarray
    mean: dict[str, np.ndarray]
    sigma: dict[str, np.ndarray]


def checkpoint_scaler(meta: dict, checkpoint) -> tuple[TargetScaler, list[str]]:
    """The target scaler and target names a stellar checkpoint's metadata holds."""
    metadata = meta.get("metadata") or {}
    if "target_scaler" not in metadata or "targets" not in metadata:
        raise ValueError(f"{checkpoint}: field 'metadata.target_scaler' is missing; not a checkpoint of "
                         "the stellar train step")
    return TargetScaler.from_dict(metadata["target_scaler"]), list(metadata["targets"])


@torch.no_grad()
def network_outputs(model: torch.nn.Module, x: np.ndarray, n_classes: int, scaler: TargetScaler,
                    targets: list[str], batch_size: int = 512) -> NetworkOutputs:
    """Apply ``model`` (eval mode) to ``x`` (n, channels, n_grid) in fixed-size batches."""
    model.eval()
    chunks = [model(torch.from_numpy(np.ascontiguousarray(x[i:i + batch_size], dtype=np.float32)))
              for i in range(0, len(x), batch_size)]
    out = torch.cat(chunks) if chunks else torch.zeros((0, n_classes + 2 * len(targets)))
    logits, mean, log_var = split_outputs(out, n_classes, len(targets))
    sigma = torch.exp(0.5 * log_var)
    mean_phys = scaler.inverse_mean(mean.double().numpy())
    sigma_phys = scaler.inverse_sigma(sigma.double().numpy(), mean.double().numpy())
    return NetworkOutputs(logits.double().numpy(), {t: mean_phys[:, k] for k, t in enumerate(targets)},
                          {t: sigma_phys[:, k] for k, t in enumerate(targets)})


def class_probabilities(logits: np.ndarray, classes: list[str], checkpoint, calibration) -> tuple[np.ndarray, object]:
    """``(probabilities, calibration file or None)``: the logits through the checkpoint's calibrator
    (``calibration``: ``auto``, a file, or null, as ``predict.calibration``), or their softmax
    when there is none."""
    path = resolve_calibration(calibration, checkpoint)
    if path is None:
        return softmax(logits, axis=1), None
    calibrator = load_calibrator(path, classes=classes, checkpoint=checkpoint)
    return apply_calibration(logits, calibrator, kind="logits"), path
