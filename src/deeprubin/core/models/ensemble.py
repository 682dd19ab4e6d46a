"""A deep ensemble: several trained networks of one architecture applied as one predictor.

Lakshminarayanan et al. (2017): averaging the predicted probabilities of networks trained
from different seeds gives steadier and better calibrated predictions than any one of them.
:class:`DeepEnsemble` returns the log of the members' mean probability as its logits, so
everything downstream (softmax, calibrators, MC dropout) takes it as it takes one network.
It is saved and loaded as one checkpoint (:func:`deeprubin.core.checkpoint.save_checkpoint`:
the members' shared model config, their number and the stacked weights), never from a config
of its own: the members are rebuilt from the allow-listed model config like a single model.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch
from torch import nn

#: The most members a checkpoint may ask to rebuild (a file a user was handed).
MAX_MEMBERS = 64


class DeepEnsemble(nn.Module):
    """Networks of one architecture whose probabilities are averaged.

    Parameters
    ----------
    members : sequence of torch.nn.Module
        At least two, each mapping an input to ``(batch, n_outputs)`` logits. ``n_outputs == 1``
        is a binary classifier (sigmoid); more outputs, a multi-class one (softmax).

    The output has the members' shape: ``log(mean_k softmax(z_k))`` (multi-class, so its
    softmax is the mean probability) or ``logit(mean_k sigmoid(z_k))`` (binary).
    """

    def __init__(self, members: Sequence[nn.Module]):
        super().__init__()
        if not 2 <= len(members) <= MAX_MEMBERS:
            raise ValueError(f"DeepEnsemble: needs 2 to {MAX_MEMBERS} members, got {len(members)}")
        kinds = {type(m) for m in members}
        if len(kinds) != 1:
            raise ValueError(f"DeepEnsemble: members must share one architecture, got {sorted(k.__name__ for k in kinds)}")
        self.members = nn.ModuleList(members)

    def forward(self, *args, **kwargs) -> torch.Tensor:
        outputs = torch.stack([member(*args, **kwargs) for member in self.members])   # (K, batch, n_outputs)
        log_k = math.log(len(self.members))
        if outputs.shape[-1] == 1:   # binary: the mean of the sigmoids, back to a logit
            log_p = torch.logsumexp(nn.functional.logsigmoid(outputs), dim=0) - log_k
            log_q = torch.logsumexp(nn.functional.logsigmoid(-outputs), dim=0) - log_k
            return log_p - log_q
        return torch.logsumexp(torch.log_softmax(outputs, dim=-1), dim=0) - log_k


def member_class(model: nn.Module) -> type[nn.Module]:
    """The architecture of a model or of an ensemble's members."""
    return type(model.members[0]) if isinstance(model, DeepEnsemble) else type(model)


def check_members(members, key: str) -> int:
    """The number of ensemble members a config gives at ``key``: an integer in [1, MAX_MEMBERS]
    (not a boolean), else :class:`deeprubin.core.config.ConfigError` naming the key."""
    from ..config import ConfigError

    if isinstance(members, bool) or not isinstance(members, int) or not 1 <= members <= MAX_MEMBERS:
        raise ConfigError(f"config key '{key}' must be an integer in [1, {MAX_MEMBERS}], got {members!r}")
    return members


def member_seed(seed: int, member: int) -> int:
    """Seed of an ensemble's ``member``-th network: ``seed`` itself for the first, then independent
    streams (:class:`numpy.random.SeedSequence` of ``(seed, member)``), so the ensembles of two
    neighbouring seeds share no member."""
    return int(seed) if member == 0 else int(np.random.SeedSequence([int(seed), int(member)]).generate_state(1)[0])
