"""Post-hoc probability calibration: temperature scaling and per-class isotonic regression.

Both calibrators are fitted on the *validation* split only (the model never trained on
it; the test split stays untouched for scoring) and persisted as JSON beside the model
(``models/<task>/calibration.json``) through ``to_dict`` / ``from_dict``. Anything that
turns model outputs into probabilities for a user (the evaluate, early and predict
entry points) goes through :func:`apply_calibration`.

* :class:`TemperatureScaling` (Guo et al. 2017): one scalar ``T`` dividing the logits,
  chosen to minimise the validation negative log-likelihood. It never changes the
  predicted class, only how confident the model is.
* :class:`IsotonicCalibrator` (Zadrozny & Elkan 2002): one monotone map per class,
  fitted one-vs-rest with :class:`sklearn.isotonic.IsotonicRegression` on that class's
  probability, then renormalised so each row sums to one. More flexible, can change
  the predicted class, and needs more validation objects than temperature scaling.
* :class:`IdentityCalibrator`: ``method: none`` (calibration switched off).
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import log_softmax, softmax

from . import io

log = logging.getLogger(__name__)

METHODS = ("temperature", "isotonic", "none")
#: Allowed deviation of a probability row sum from one (float32 softmax written as text).
SUM_TOLERANCE = 1e-3
#: Search range of log(T): temperatures from 1/20 to 20 cover any sane network.
LOG_T_BOUNDS = (float(np.log(0.05)), float(np.log(20.0)))


# ----------------------------------------------------------------------------- input checks
def check_probabilities(probabilities: np.ndarray, name: str = "probabilities",
                        object_ids: Sequence[str] | None = None, tol: float = SUM_TOLERANCE) -> np.ndarray:
    """Validate an ``(n, C)`` probability matrix and return it as float64.

    Raises
    ------
    ValueError
        Not 2-D, non-finite values, values outside [0, 1], or a row whose sum differs
        from one by more than ``tol``; the message names ``name`` and the first
        offending row (its object id when ``object_ids`` is given).
    """
    p = np.asarray(probabilities, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] < 2:
        raise ValueError(f"{name}: expected an (n_objects, n_classes >= 2) array, got shape {p.shape}")

    def where(row: int) -> str:
        return f"object '{object_ids[row]}'" if object_ids is not None else f"row {row}"

    bad = np.flatnonzero(~np.isfinite(p).all(axis=1))
    if len(bad):
        raise ValueError(f"{name}: {where(bad[0])} has a non-finite probability ({len(bad)} rows in all)")
    bad = np.flatnonzero(((p < -tol) | (p > 1 + tol)).any(axis=1))
    if len(bad):
        raise ValueError(f"{name}: {where(bad[0])} has a probability outside [0, 1]: {p[bad[0]].tolist()}")
    sums = p.sum(axis=1)
    bad = np.flatnonzero(np.abs(sums - 1.0) > tol)
    if len(bad):
        raise ValueError(f"{name}: probabilities of {where(bad[0])} sum to {sums[bad[0]]:.6f}, not one "
                         f"({len(bad)} rows off by more than {tol}); pass logits with kind='logits' instead")
    return np.clip(p, 0.0, 1.0)


def single_class_reason(labels: np.ndarray, name: str = "validation set") -> str | None:
    """Why a non-empty set cannot be calibrated on: it holds one class only (else None).

    A single-class validation split is legitimate for a one-class real sample (e.g. the
    ZTF BTS SNe Ia, ``source=files_bts_snia``); the calibrate stage then keeps the
    uncalibrated probabilities and records this reason instead of stopping the pipeline.
    """
    present = np.unique(np.asarray(labels))
    if len(present) == 1:
        return (f"{name}: only one class (index {int(present[0])}) among {np.asarray(labels).size} objects; "
                "calibration needs at least two classes")
    return None


def check_calibration_set(labels: np.ndarray, n_classes: int, name: str = "validation set") -> np.ndarray:
    """Integer labels of a calibration set; errors for an empty or single-class set."""
    y = np.asarray(labels)
    if y.size == 0:
        raise ValueError(f"{name}: no objects to calibrate on (the validation split is empty)")
    if not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"{name}: labels must be class indices, got dtype {y.dtype}")
    if y.min() < 0 or y.max() >= n_classes:
        raise ValueError(f"{name}: label index {int(y.max() if y.max() >= n_classes else y.min())} outside "
                         f"[0, {n_classes - 1}]")
    reason = single_class_reason(y, name)
    if reason is not None:
        raise ValueError(reason)
    return y.astype(np.int64)


def _as_log_probabilities(scores: np.ndarray, kind: str) -> np.ndarray:
    """Logits (any additive offset) from logits or from probabilities (``log p``)."""
    if kind == "logits":
        z = np.asarray(scores, dtype=np.float64)
        if z.ndim != 2 or not np.isfinite(z).all():
            raise ValueError(f"logits: expected a finite (n_objects, n_classes) array, got shape {z.shape}")
        return z
    if kind == "probabilities":
        # Softmax is shift-invariant, so log p are valid logits; the floor keeps log finite.
        return np.log(np.maximum(check_probabilities(scores), np.finfo(np.float64).tiny))
    raise ValueError(f"kind must be 'probabilities' or 'logits', got {kind!r}")


# ----------------------------------------------------------------------------- calibrators
class IdentityCalibrator:
    """``method: none``: probabilities pass through unchanged."""

    method = "none"

    def __init__(self, classes: Sequence[str]):
        self.classes = [str(c) for c in classes]

    def fit(self, logits: np.ndarray, labels: np.ndarray) -> "IdentityCalibrator":
        check_calibration_set(labels, len(self.classes))
        return self

    def transform(self, log_probabilities: np.ndarray) -> np.ndarray:
        return softmax(log_probabilities, axis=1)

    def to_dict(self) -> dict:
        return {"method": self.method, "classes": self.classes}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "IdentityCalibrator":
        return cls(data["classes"])


class TemperatureScaling:
    """Softmax of ``logits / T`` with ``T`` minimising the calibration-set NLL.

    Attributes
    ----------
    temperature : float
        ``T > 1`` softens an over-confident model, ``T < 1`` sharpens an under-confident one.
    """

    method = "temperature"

    def __init__(self, classes: Sequence[str], temperature: float = 1.0):
        if not np.isfinite(temperature) or temperature <= 0:
            raise ValueError(f"temperature must be a positive finite number, got {temperature!r}")
        self.classes = [str(c) for c in classes]
        self.temperature = float(temperature)

    def fit(self, logits: np.ndarray, labels: np.ndarray) -> "TemperatureScaling":
        """Fit ``T`` on logits ``(n, C)`` and integer labels ``(n,)`` (bounded 1-D search in log T)."""
        y = check_calibration_set(labels, len(self.classes))
        z = np.asarray(logits, dtype=np.float64)
        if z.shape != (len(y), len(self.classes)):
            raise ValueError(f"logits shape {z.shape} != (n_labels={len(y)}, n_classes={len(self.classes)})")
        rows = np.arange(len(y))

        def nll(log_t: float) -> float:  # mean negative log-likelihood at T = exp(log_t)
            return float(-log_softmax(z / np.exp(log_t), axis=1)[rows, y].mean())

        result = minimize_scalar(nll, bounds=LOG_T_BOUNDS, method="bounded", options={"xatol": 1e-6})
        self.temperature = float(np.exp(result.x))
        return self

    def transform(self, log_probabilities: np.ndarray) -> np.ndarray:
        return softmax(log_probabilities / self.temperature, axis=1)

    def to_dict(self) -> dict:
        return {"method": self.method, "classes": self.classes, "temperature": self.temperature}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "TemperatureScaling":
        return cls(data["classes"], float(data["temperature"]))


class IsotonicCalibrator:
    """One-vs-rest isotonic map per class, renormalised to sum to one.

    Parameters
    ----------
    classes : sequence of str
    floor : float
        Smallest calibrated probability before renormalising: isotonic steps reach
        exactly 0, and one such zero on the true class would make the log-loss
        infinite.

    Notes
    -----
    A class absent from the calibration set keeps its uncalibrated probability (an
    isotonic fit on all-negative targets would map it to 0 for ever). The fitted map
    is stored as sklearn's ``X_thresholds_`` / ``y_thresholds_``; applying it is the
    same linear interpolation, clipped at the ends, that ``IsotonicRegression.predict``
    does with ``out_of_bounds="clip"``.
    """

    method = "isotonic"

    def __init__(self, classes: Sequence[str], floor: float = 1e-4,
                 thresholds: Mapping[str, tuple[Sequence[float], Sequence[float]] | None] | None = None):
        if not 0.0 <= floor < 1.0 / max(len(classes), 1):
            raise ValueError(f"isotonic floor must be in [0, 1/n_classes), got {floor!r}")
        self.classes = [str(c) for c in classes]
        self.floor = float(floor)
        self.thresholds: dict[str, tuple[np.ndarray, np.ndarray] | None] = {
            c: None if thresholds is None or thresholds.get(c) is None
            else (np.asarray(thresholds[c][0], float), np.asarray(thresholds[c][1], float))
            for c in self.classes}

    def fit(self, logits: np.ndarray, labels: np.ndarray) -> "IsotonicCalibrator":
        from sklearn.isotonic import IsotonicRegression

        y = check_calibration_set(labels, len(self.classes))
        p = softmax(np.asarray(logits, dtype=np.float64), axis=1)
        for k, c in enumerate(self.classes):
            target = (y == k).astype(float)
            if not target.any():
                log.warning("isotonic calibration: class %s has no validation object; left uncalibrated", c)
                self.thresholds[c] = None
                continue
            iso = IsotonicRegression(y_min=0.0, y_max=1.0, increasing=True, out_of_bounds="clip").fit(p[:, k], target)
            self.thresholds[c] = (iso.X_thresholds_.copy(), iso.y_thresholds_.copy())
        return self

    def transform(self, log_probabilities: np.ndarray) -> np.ndarray:
        p = softmax(log_probabilities, axis=1)
        out = p.copy()
        for k, c in enumerate(self.classes):
            if self.thresholds[c] is not None:
                x, y = self.thresholds[c]
                out[:, k] = np.interp(p[:, k], x, y)
        out = np.maximum(out, self.floor)
        return out / out.sum(axis=1, keepdims=True)

    def to_dict(self) -> dict:
        return {"method": self.method, "classes": self.classes, "floor": self.floor,
                "thresholds": {c: None if t is None else {"x": t[0].tolist(), "y": t[1].tolist()}
                               for c, t in self.thresholds.items()}}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "IsotonicCalibrator":
        thresholds = {c: None if t is None else (t["x"], t["y"]) for c, t in data["thresholds"].items()}
        return cls(data["classes"], float(data["floor"]), thresholds)


CALIBRATORS = {"temperature": TemperatureScaling, "isotonic": IsotonicCalibrator, "none": IdentityCalibrator}
Calibrator = TemperatureScaling | IsotonicCalibrator | IdentityCalibrator


def make_calibrator(method: str, classes: Sequence[str], isotonic_floor: float = 1e-4) -> Calibrator:
    """An unfitted calibrator of ``method`` (one of :data:`METHODS`)."""
    if method not in CALIBRATORS:
        raise ValueError(f"calibration method must be one of {list(METHODS)}, got {method!r}")
    if method == "isotonic":
        return IsotonicCalibrator(classes, floor=isotonic_floor)
    return CALIBRATORS[method](classes)


def calibrator_from_dict(data: Mapping[str, Any]) -> Calibrator:
    """Rebuild a calibrator from its ``to_dict()``."""
    method = data.get("method")
    if method not in CALIBRATORS:
        raise ValueError(f"calibrator: unknown method {method!r}; expected one of {list(METHODS)}")
    return CALIBRATORS[method].from_dict(data)


def apply_calibration(scores: np.ndarray, calibrator: Calibrator | Mapping[str, Any],
                      kind: str = "probabilities") -> np.ndarray:
    """Calibrated probabilities ``(n, C)`` from model probabilities or logits.

    Parameters
    ----------
    scores : numpy.ndarray, shape (n, C)
        Model softmax probabilities (``kind="probabilities"``; rows must sum to one) or
        raw logits (``kind="logits"``), columns in the calibrator's class order.
    calibrator : calibrator object or its ``to_dict()``
    kind : {"probabilities", "logits"}

    Returns
    -------
    numpy.ndarray
        float64, rows summing to one.
    """
    if isinstance(calibrator, Mapping):
        calibrator = calibrator_from_dict(calibrator)
    z = _as_log_probabilities(scores, kind)
    if z.shape[1] != len(calibrator.classes):
        raise ValueError(f"apply_calibration: {z.shape[1]} score columns but the calibrator has "
                         f"{len(calibrator.classes)} classes {calibrator.classes}")
    return calibrator.transform(z)


# ----------------------------------------------------------------------------- persistence
class CalibrationMismatchError(ValueError):
    """A calibrator applied to a checkpoint other than the one it was fitted for."""


#: ``predict.calibration: auto``: the ``calibration.json`` beside the checkpoint, if there is one.
AUTO = "auto"
CALIBRATION_NAME = "calibration.json"


def save_calibration(path: str | Path, calibrators: Mapping[str, Calibrator], default: str,
                     fitted_on: Mapping[str, Any], checkpoint: str | Path) -> Path:
    """Write every fitted calibrator and the default method to one JSON file (atomically).

    The file is bound to ``checkpoint`` by its sha256 (``checkpoint.sha256``): it is
    applied to that checkpoint only (:func:`load_calibrator`).
    """
    if default not in calibrators:
        raise ValueError(f"default calibration method {default!r} not among the fitted {sorted(calibrators)}")
    checkpoint = Path(checkpoint)
    payload = {"default": default, "fitted_on": dict(fitted_on),
               "checkpoint": {"file": checkpoint.name, "sha256": io.file_sha256(checkpoint)},
               "calibrators": {name: cal.to_dict() for name, cal in calibrators.items()}}
    return io.write_json(payload, path)


def resolve_calibration(calibration: str | Path | None, checkpoint: str | Path) -> Path | None:
    """The calibration file to apply with ``checkpoint``: None (raw softmax), a path, or ``auto``.

    ``auto`` is the ``calibration.json`` beside the checkpoint when it exists (the calibrate
    stage writes it there), else None.
    """
    if calibration is None or str(calibration).lower() in ("none", "null", ""):
        return None
    if str(calibration) == AUTO:
        beside = Path(checkpoint).parent / CALIBRATION_NAME
        return beside if beside.exists() else None
    return Path(calibration)


def saved_methods(path: str | Path) -> list[str]:
    """Names of the calibrators in :func:`save_calibration`'s file, in the file's order."""
    return list(_read_calibration_file(Path(path))["calibrators"])


def _read_calibration_file(path: Path) -> dict:
    data = io.read_json(path)
    if not isinstance(data, dict) or "calibrators" not in data or "default" not in data:
        raise ValueError(f"{path}: not a calibration file (needs 'default' and 'calibrators')")
    return data


def load_calibrator(path: str | Path, method: str | None = None, classes: Sequence[str] | None = None,
                    checkpoint: str | Path | None = None) -> Calibrator:
    """The calibrator ``method`` (default: the file's default) from :func:`save_calibration`'s file.

    ``classes``, when given, must equal the calibrator's class order (the model's).
    ``checkpoint``, when given, must be the checkpoint the file was fitted for (same sha256).

    Raises
    ------
    CalibrationMismatchError
        ``checkpoint`` is another model's, or the file records no checkpoint (made before
        calibrators were bound: rerun the calibrate stage).
    """
    path = Path(path)
    data = _read_calibration_file(path)
    if checkpoint is not None:
        bound = data.get("checkpoint") if isinstance(data.get("checkpoint"), dict) else {}
        if not bound.get("sha256"):
            raise CalibrationMismatchError(f"{path}: field 'checkpoint' is missing, so the file cannot be matched to "
                                           f"{checkpoint}; rerun the calibrate stage for that checkpoint")
        if io.file_sha256(checkpoint) != bound["sha256"]:
            raise CalibrationMismatchError(
                f"{path}: fitted for another checkpoint (sha256 {bound['sha256'][:12]}..., "
                f"'{bound.get('file')}') than {checkpoint}; a calibrator belongs to one model: use the "
                f"calibration.json written beside that checkpoint, predict.calibration=auto, or "
                f"predict.calibration=null for raw probabilities")
    name = method or data["default"]
    if name not in data["calibrators"]:
        raise ValueError(f"{path}: no '{name}' calibrator; the file has {sorted(data['calibrators'])}")
    try:
        calibrator = calibrator_from_dict(data["calibrators"][name])
    except (ValueError, TypeError, KeyError) as err:
        raise ValueError(f"{path}: calibrator '{name}' is invalid: {err}") from None
    if classes is not None and list(map(str, classes)) != calibrator.classes:
        raise ValueError(f"{path}: calibrator classes {calibrator.classes} != model classes {list(classes)}")
    return calibrator
