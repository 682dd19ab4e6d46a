"""Monte Carlo dropout (Gal & Ghahramani 2016): predictive uncertainty per object.

The trained network is run ``n_passes`` times with its dropout layers sampling (and
everything else, batch-norm above all, in inference mode: batch statistics of a test
batch must not leak into a prediction). With ``p_t`` the softmax of pass ``t``:

* predictive mean ``p̄ = mean_t p_t`` (the MC prediction);
* predictive entropy ``H[p̄] = -sum_k p̄_k ln p̄_k`` (total uncertainty, nats);
* mutual information ``I = H[p̄] - mean_t H[p_t]`` (the part due to uncertain weights,
  "epistemic"; 0 when all passes agree).

How well an uncertainty flags mistakes is the ROC-AUC of the uncertainty as a score
for "the prediction is wrong"; the accuracy-rejection curve shows the accuracy on the
objects kept after rejecting the most uncertain fraction.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

#: Modules whose inference-time randomness MC dropout switches on. Their ``training``
#: flag only controls dropout: recurrent layers (inter-layer dropout), attention
#: (attention-weight dropout) and transformer layers (whose eval fast path skips dropout).
STOCHASTIC_MODULES = (nn.modules.dropout._DropoutNd, nn.RNNBase, nn.MultiheadAttention,
                      nn.TransformerEncoderLayer, nn.TransformerDecoderLayer)


def enable_mc_dropout(model: nn.Module) -> int:
    """Put ``model`` in eval mode, then switch only its dropout-bearing modules to sampling.

    Returns the number of modules switched; 0 means the model has no dropout (MC
    passes would all be identical). Batch-norm, layer-norm and everything else stay in
    eval mode, so running statistics are used and never updated.
    """
    model.eval()
    n = 0
    for module in model.modules():
        if isinstance(module, STOCHASTIC_MODULES):
            module.training = True  # non-recursive: children keep their own flags
            n += 1
    return n


def require_dropout(model: nn.Module, source: str) -> float:
    """The model's dropout rate; ``ValueError`` naming ``source`` when it has none (MC dropout impossible)."""
    rate = dropout_rate(model)
    if rate == 0.0:
        raise ValueError(f"{source}: the model has no dropout (or dropout 0); Monte Carlo dropout needs "
                         "model.dropout > 0")
    return rate


def dropout_rate(model: nn.Module) -> float:
    """Largest dropout probability in ``model`` (0.0 when it has none)."""
    rates = [float(m.p) for m in model.modules() if isinstance(m, nn.modules.dropout._DropoutNd)]
    rates += [float(m.dropout) for m in model.modules() if isinstance(m, (nn.RNNBase, nn.MultiheadAttention))]
    return max(rates, default=0.0)


@torch.no_grad()
def mc_dropout_probabilities(model: nn.Module, x: np.ndarray, n_passes: int, seed: int,
                             batch_size: int = 512) -> np.ndarray:
    """Softmax outputs of ``n_passes`` stochastic passes, shape ``(n_passes, n, C)`` float64.

    ``x``: ``(n, C_in, T)`` model inputs. Seeded: the same model, inputs and seed give
    the same samples. The model is left in eval mode afterwards.
    """
    if n_passes < 1:
        raise ValueError(f"mc_dropout_probabilities: n_passes must be >= 1, got {n_passes}")
    if len(x) == 0:
        raise ValueError("mc_dropout_probabilities: no objects")
    enable_mc_dropout(model)
    generator_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        xs = torch.from_numpy(np.ascontiguousarray(x))
        passes = []
        for _ in range(n_passes):
            passes.append(torch.cat([torch.softmax(model(xs[i:i + batch_size]).double(), dim=-1)
                                     for i in range(0, len(xs), batch_size)]).numpy())
        out = np.stack(passes)
    finally:
        torch.random.set_rng_state(generator_state)
        model.eval()
    return out


def _entropy(p: np.ndarray) -> np.ndarray:
    return -np.sum(np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0), axis=-1)


def predictive_entropy(samples: np.ndarray) -> np.ndarray:
    """``H[mean_t p_t]`` per object (nats), from samples ``(T, n, C)``."""
    return _entropy(np.asarray(samples).mean(axis=0))


def mutual_information(samples: np.ndarray) -> np.ndarray:
    """``H[mean_t p_t] - mean_t H[p_t]`` per object (nats, >= 0 up to rounding)."""
    samples = np.asarray(samples)
    return np.maximum(predictive_entropy(samples) - _entropy(samples).mean(axis=0), 0.0)


def misclassification_auroc(uncertainty: np.ndarray, wrong: np.ndarray) -> float:
    """ROC-AUC of ``uncertainty`` as a detector of wrong predictions (NaN if all right or all wrong)."""
    from sklearn.metrics import roc_auc_score

    wrong = np.asarray(wrong, dtype=bool)
    if wrong.all() or not wrong.any():
        return float("nan")
    return float(roc_auc_score(wrong, np.asarray(uncertainty, dtype=float)))


def accuracy_rejection_curve(uncertainty: np.ndarray, correct: np.ndarray,
                             fractions: np.ndarray) -> np.ndarray:
    """Accuracy on the objects kept after rejecting the ``fraction`` most uncertain ones.

    Ties in ``uncertainty`` are broken by object order (stable sort), so the curve is
    deterministic. A fraction that rejects everything gives NaN.
    """
    order = np.argsort(-np.asarray(uncertainty, dtype=float), kind="stable")  # most uncertain first
    correct = np.asarray(correct, dtype=float)[order]
    n = len(correct)
    out = []
    for f in np.asarray(fractions, dtype=float):
        kept = correct[int(round(f * n)):]
        out.append(float(kept.mean()) if len(kept) else float("nan"))
    return np.asarray(out)
