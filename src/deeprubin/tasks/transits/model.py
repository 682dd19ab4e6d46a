"""The AstroSeq seed's 1-D Inception-ResNet for transit / no-transit segments.

Stem (convolution of ``stem_channels`` filters, kernel ``stem_kernel``, batch norm, ReLU,
max-pool by 2), then stacks of Inception-residual blocks (the Inception module of
:mod:`deeprubin.core.models.inception`: bottleneck, parallel kernels, max-pool branch), the
second stack wider and after another max-pool by 2, spatial dropout (whole channels),
global pooling and one logit (the sigmoid is applied by the loss and at prediction).
"""
from __future__ import annotations

import torch
from torch import nn

from ...core.models.inception import InceptionModule

#: The classes a transits model config may build (see deeprubin.core.models.model_class).
MODELS = ("InceptionResNet1D", "AstroNetVetter")

POOLINGS = ("avg", "max", "avgmax")


class InceptionResidualBlock(nn.Module):
    """An Inception module with a residual shortcut (1x1 conv + BN when widths differ).

    ``(batch, in_channels, T) -> (batch, (len(kernel_sizes) + 1) * branch_channels, T)``.
    """

    def __init__(self, in_channels: int, branch_channels: int, kernel_sizes: tuple[int, ...]):
        super().__init__()
        self.inception = InceptionModule(in_channels, branch_channels, kernel_sizes)
        width = branch_channels * (len(kernel_sizes) + 1)
        self.shortcut = nn.Identity() if in_channels == width else nn.Sequential(
            nn.Conv1d(in_channels, width, 1, bias=False), nn.BatchNorm1d(width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.inception(x) + self.shortcut(x))


class InceptionResNet1D(nn.Module):
    """Binary segment classifier: ``(batch, n_inputs, T) -> (batch, 1)`` logits.

    Parameters
    ----------
    n_inputs : int
        Input channels (1: normalised flux).
    n_classes : int
        Must be 1 (one logit, sigmoid for the transit probability).
    stem_channels, stem_kernel : int
        Stem convolution filters and kernel (seed: 64 and 7).
    branch_channels : list of int
        Branch width per stack (one entry per stack; a block outputs 4 x this with three kernels).
    blocks_per_stack : list of int
        Inception-residual blocks per stack.
    kernel_sizes : list of int
        Odd kernel sizes of the parallel branches (cadences after the stem's pooling).
    spatial_dropout : float
        Probability of zeroing whole channels (``Dropout1d``) before pooling.
    pooling : {"avg", "max", "avgmax"}
        Global pooling; ``avg`` is the seed's; ``max``/``avgmax`` keep a short dip's response.
    """

    def __init__(self, n_inputs: int = 1, n_classes: int = 1, stem_channels: int = 64, stem_kernel: int = 7,
                 branch_channels=(16, 32), blocks_per_stack=(2, 2), kernel_sizes=(5, 11, 21),
                 spatial_dropout: float = 0.1, pooling: str = "avg"):
        super().__init__()
        kernel_sizes = tuple(int(k) for k in kernel_sizes)
        branch_channels, blocks_per_stack = list(branch_channels), list(blocks_per_stack)
        if n_classes != 1:
            raise ValueError(f"model (inception_resnet_1d): binary model has one logit; got n_classes={n_classes}")
        if len(branch_channels) != len(blocks_per_stack) or not branch_channels:
            raise ValueError("model (inception_resnet_1d): branch_channels and blocks_per_stack need one entry "
                             f"per stack; got {branch_channels} and {blocks_per_stack}")
        if any(k < 1 or k % 2 == 0 for k in kernel_sizes) or stem_kernel % 2 == 0:
            raise ValueError(f"model (inception_resnet_1d): kernel sizes must be odd; got {kernel_sizes}, "
                             f"stem {stem_kernel}")
        if pooling not in POOLINGS:
            raise ValueError(f"model (inception_resnet_1d): pooling must be one of {POOLINGS}, got {pooling!r}")
        if not 0.0 <= spatial_dropout < 1.0:
            raise ValueError(f"model (inception_resnet_1d): need 0 <= spatial_dropout < 1, got {spatial_dropout}")
        self.stem = nn.Sequential(nn.Conv1d(n_inputs, stem_channels, stem_kernel, padding=stem_kernel // 2,
                                            bias=False),
                                  nn.BatchNorm1d(stem_channels), nn.ReLU(), nn.MaxPool1d(2))
        layers: list[nn.Module] = []
        width = stem_channels
        for s, (branch, n_blocks) in enumerate(zip(branch_channels, blocks_per_stack)):
            if s > 0:
                layers.append(nn.MaxPool1d(2))
            for _ in range(int(n_blocks)):
                layers.append(InceptionResidualBlock(width, int(branch), kernel_sizes))
                width = int(branch) * (len(kernel_sizes) + 1)
        self.stacks = nn.Sequential(*layers)
        self.dropout = nn.Dropout1d(spatial_dropout)
        self.pooling = pooling
        self.head = nn.Linear(width * (2 if pooling == "avgmax" else 1), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x``: ``(batch, n_inputs, T)`` normalised flux -> ``(batch, 1)`` logits."""
        h = self.dropout(self.stacks(self.stem(x)))
        if self.pooling == "avg":
            z = h.mean(dim=-1)
        elif self.pooling == "max":
            z = h.amax(dim=-1)
        else:
            z = torch.cat([h.mean(dim=-1), h.amax(dim=-1)], dim=1)
        return self.head(z)


def _conv_tower(channels: list[int], kernel: int, pool: int) -> nn.Sequential:
    """AstroNet's column: per block two same-padded convolutions (ReLU) then max-pool."""
    layers: list[nn.Module] = []
    c_in = 1
    for c_out in channels:
        layers += [nn.Conv1d(c_in, c_out, kernel, padding=kernel // 2), nn.ReLU(),
                   nn.Conv1d(c_out, c_out, kernel, padding=kernel // 2), nn.ReLU(),
                   nn.MaxPool1d(pool, stride=2, padding=pool // 2)]
        c_in = c_out
    return nn.Sequential(*layers)


class AstroNetVetter(nn.Module):
    """Vetting network of a transit candidate (after Shallue & Vanderburg 2018, AstroNet).

    Input ``(batch, 1, n_global + n_local + n_diagnostics)``: the global and local folded
    views and the scalar diagnostics concatenated (:func:`deeprubin.tasks.transits.vetting.candidate_inputs`).
    One convolutional column per view, flattened, concatenated with the diagnostics, then
    fully connected layers with dropout and one logit (planet vs not).
    """

    def __init__(self, n_inputs: int = 1, n_classes: int = 1, n_global: int = 201, n_local: int = 61,
                 n_diagnostics: int = 11, global_channels: tuple[int, ...] = (16, 32, 64),
                 local_channels: tuple[int, ...] = (16, 32), kernel_size: int = 5, pool_size: int = 5,
                 hidden: tuple[int, ...] = (128, 128), dropout: float = 0.2):
        super().__init__()
        if n_inputs != 1:
            raise ValueError(f"AstroNetVetter takes one input channel (views and diagnostics in a row), got {n_inputs}")
        self.sizes = (int(n_global), int(n_local), int(n_diagnostics))
        self.global_tower = _conv_tower(list(global_channels), int(kernel_size), int(pool_size))
        self.local_tower = _conv_tower(list(local_channels), int(kernel_size), int(pool_size))
        with torch.no_grad():
            n_flat = (self.global_tower(torch.zeros(1, 1, self.sizes[0])).numel()
                      + self.local_tower(torch.zeros(1, 1, self.sizes[1])).numel() + self.sizes[2])
        layers: list[nn.Module] = []
        width = n_flat
        for h in hidden:
            layers += [nn.Linear(width, int(h)), nn.ReLU(), nn.Dropout(float(dropout))]
            width = int(h)
        layers.append(nn.Linear(width, int(n_classes)))
        self.head = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n_g, n_l, n_d = self.sizes
        if x.shape[-1] != n_g + n_l + n_d:
            raise ValueError(f"AstroNetVetter: input length {x.shape[-1]} != n_global + n_local + n_diagnostics "
                             f"({n_g} + {n_l} + {n_d})")
        x = x.reshape(x.shape[0], 1, -1)
        g = self.global_tower(x[..., :n_g]).flatten(1)
        loc = self.local_tower(x[..., n_g:n_g + n_l]).flatten(1)
        return self.head(torch.cat([g, loc, x[:, 0, n_g + n_l:]], dim=1))
