"""Apply a trained classifier to GP-grid features."""
from __future__ import annotations

import contextlib
from collections.abc import Iterator

import numpy as np
import pandas as pd
import torch

from ....core.calibration import apply_calibration


@contextlib.contextmanager
def representation(model: torch.nn.Module) -> Iterator[list[list[torch.Tensor]]]:
    """While active, every forward pass of ``model`` records the input of each ensemble member's
    last linear layer (the classifier's learned representation): ``captured[k]`` lists member
    ``k``'s batches. :func:`representation_array` turns them into one array."""
    members = list(getattr(model, "members", [model]))
    last = []
    for member in members:
        linears = [m for m in member.modules() if isinstance(m, torch.nn.Linear)]
        if not linears:
            raise ValueError(f"representation: {type(member).__name__} has no linear layer to read the "
                             f"representation of")
        last.append(linears[-1])
    captured: list[list[torch.Tensor]] = [[] for _ in last]
    hooks = [layer.register_forward_hook(lambda mod, inp, out, k=k: captured[k].append(inp[0].detach()))
             for k, layer in enumerate(last)]
    try:
        yield captured
    finally:
        for h in hooks:
            h.remove()


def representation_array(captured: list[list[torch.Tensor]]) -> np.ndarray:
    """The recorded representation, L2-normalised per member and concatenated, ``(n, width)`` float64."""
    parts = [torch.nn.functional.normalize(torch.cat(c).double(), dim=1) for c in captured]
    return torch.cat(parts, dim=1).numpy()


@torch.no_grad()
def predict_logits(model: torch.nn.Module, x: np.ndarray, batch_size: int = 512) -> np.ndarray:
    """Raw class scores (logits), shape ``(n, n_classes)`` float64, for inputs ``(n, C_in, T)``."""
    model.eval()
    if len(x) == 0:
        raise ValueError("predict_logits: no objects to classify")
    out = [model(torch.from_numpy(x[i:i + batch_size])) for i in range(0, len(x), batch_size)]
    return torch.cat(out).numpy().astype(np.float64)


@torch.no_grad()
def predict_probabilities(model: torch.nn.Module, x: np.ndarray, batch_size: int = 512) -> np.ndarray:
    """Softmax probabilities, shape ``(n, n_classes)``, for inputs ``x`` of shape ``(n, C_in, T)``."""
    model.eval()
    if len(x) == 0:
        raise ValueError("predict_probabilities: no objects to classify")
    out = [torch.softmax(model(torch.from_numpy(x[i:i + batch_size])), dim=-1)
           for i in range(0, len(x), batch_size)]
    return torch.cat(out).numpy().astype(np.float64)


def class_probabilities(model: torch.nn.Module, x: np.ndarray, calibrator=None,
                        batch_size: int = 512) -> np.ndarray:
    """Class probabilities of a checkpoint's model for features ``x``, shape ``(n, n_classes)``.

    The one place where :func:`deeprubin.tasks.transients.evaluation.inference.predict_source` (the ``predict``
    entry point and the ``real_sky`` stage) turns model outputs into probabilities, in the
    model's class order: the softmax, then the calibrator fitted by the ``calibrate`` stage
    (:func:`deeprubin.core.calibration.apply_calibration`) when one is given.
    """
    probabilities = predict_probabilities(model, x, batch_size=batch_size)
    if calibrator is None:
        return probabilities
    return apply_calibration(probabilities, calibrator, kind="probabilities")


def prediction_table(object_ids: np.ndarray, probabilities: np.ndarray, classes: list[str],
                     true_labels: np.ndarray | None = None) -> pd.DataFrame:
    """One row per object: object_id, [label], predicted, prob_<class> for every class."""
    table = pd.DataFrame({"object_id": object_ids})
    if true_labels is not None:
        table["label"] = true_labels
    table["predicted"] = np.asarray(classes)[probabilities.argmax(axis=1)]
    for j, c in enumerate(classes):
        table[f"prob_{c}"] = probabilities[:, j]
    return table


def probabilities_from_table(table: pd.DataFrame, classes: list[str], source: str = "prediction table") -> np.ndarray:
    """The ``(n, C)`` probabilities of a :func:`prediction_table` (``prob_<class>`` columns).

    Raises ``ValueError`` naming ``source`` when a class has no column or a row's
    probabilities do not sum to one (naming the object).
    """
    from ....core.calibration import check_probabilities

    missing = [c for c in classes if f"prob_{c}" not in table.columns]
    if missing:
        raise ValueError(f"{source}: no probability column for class(es) {missing} "
                         f"(expected prob_<class> for every class of {list(classes)})")
    ids = table["object_id"].astype(str).tolist() if "object_id" in table.columns else None
    return check_probabilities(table[[f"prob_{c}" for c in classes]].to_numpy(dtype=float), source, ids)
