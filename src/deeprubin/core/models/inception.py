"""1-D Inception-ResNet classifier (the AstroSeq seed's architecture family).

Inception modules (Szegedy et al. 2015) look at the grid through several kernel
sizes at once; residual shortcuts every ``blocks_per_residual`` modules (InceptionTime,
Ismail Fawaz et al. 2020) keep a deep stack trainable.
"""
from __future__ import annotations

import torch
from torch import nn


class InceptionModule(nn.Module):
    """Bottleneck, then parallel convolutions of several widths plus a max-pool branch.

    Shapes: ``(batch, in_channels, T) -> (batch, 4 * branch_channels, T)``.
    """

    def __init__(self, in_channels: int, branch_channels: int, kernel_sizes: tuple[int, ...]):
        super().__init__()
        self.bottleneck = nn.Conv1d(in_channels, branch_channels, 1, bias=False) if in_channels > 1 else nn.Identity()
        bottleneck_out = branch_channels if in_channels > 1 else in_channels
        self.branches = nn.ModuleList(
            nn.Conv1d(bottleneck_out, branch_channels, k, padding=k // 2, bias=False) for k in kernel_sizes
        )
        self.pool_branch = nn.Sequential(nn.MaxPool1d(3, stride=1, padding=1),
                                         nn.Conv1d(in_channels, branch_channels, 1, bias=False))
        self.norm = nn.BatchNorm1d(branch_channels * (len(kernel_sizes) + 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.bottleneck(x)
        out = torch.cat([branch(z) for branch in self.branches] + [self.pool_branch(x)], dim=1)
        return torch.relu(self.norm(out))


class InceptionResNetClassifier(nn.Module):
    """Stack of Inception modules with residual shortcuts and global average pooling.

    Parameters
    ----------
    n_inputs, n_classes : int
        Input channels (GP mean and std per band) and output classes.
    branch_channels : int
        Channels of each branch; a module outputs ``4 * branch_channels``.
    kernel_sizes : list of int
        Odd kernel sizes (grid steps) of the three convolution branches.
    n_modules : int
        Number of Inception modules; must be a multiple of ``blocks_per_residual``.
    blocks_per_residual : int
        Modules between residual shortcuts.
    dropout : float
        Dropout before the linear head.
    """

    def __init__(self, n_inputs: int, n_classes: int, branch_channels: int = 16,
                 kernel_sizes: tuple[int, ...] | list[int] = (9, 19, 39), n_modules: int = 6,
                 blocks_per_residual: int = 3, dropout: float = 0.1):
        super().__init__()
        kernel_sizes = tuple(int(k) for k in kernel_sizes)
        if branch_channels <= 0 or n_modules <= 0 or blocks_per_residual <= 0 or n_modules % blocks_per_residual:
            raise ValueError(
                "model (inception): need branch_channels > 0 and n_modules a positive multiple of "
                f"blocks_per_residual; got branch_channels={branch_channels}, n_modules={n_modules}, "
                f"blocks_per_residual={blocks_per_residual}")
        if not kernel_sizes or any(k < 1 or k % 2 == 0 for k in kernel_sizes):
            raise ValueError(f"model (inception): kernel_sizes must be odd and >= 1, got {list(kernel_sizes)}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"model (inception): need 0 <= dropout < 1, got dropout={dropout}")
        width = branch_channels * (len(kernel_sizes) + 1)
        self.max_kernel_size = max(kernel_sizes)
        self.modules_list = nn.ModuleList(
            InceptionModule(n_inputs if i == 0 else width, branch_channels, kernel_sizes) for i in range(n_modules))
        self.shortcuts = nn.ModuleList(
            nn.Sequential(nn.Conv1d(n_inputs if i == 0 else width, width, 1, bias=False), nn.BatchNorm1d(width))
            for i in range(n_modules // blocks_per_residual))
        self.blocks_per_residual = blocks_per_residual
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(width, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x``: ``(batch, n_inputs, T)`` -> logits ``(batch, n_classes)``."""
        if x.shape[-1] < self.max_kernel_size // 2 + 1:
            raise ValueError(f"model (inception): kernel size {self.max_kernel_size} is too large for a grid of "
                             f"{x.shape[-1]} steps; lower model.kernel_sizes")
        residual = x
        h = x
        for i, module in enumerate(self.modules_list):
            h = module(h)
            if (i + 1) % self.blocks_per_residual == 0:
                h = torch.relu(h + self.shortcuts[i // self.blocks_per_residual](residual))
                residual = h
        return self.head(self.dropout(h.mean(dim=-1)))
