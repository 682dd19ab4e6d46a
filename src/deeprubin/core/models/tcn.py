"""Temporal Convolutional Network (Bai, Kolter & Koltun 2018) for light-curve grids."""
from __future__ import annotations

import torch
from torch import nn


class _CausalConv1d(nn.Conv1d):
    """1-D convolution padded on the left only, so output t sees inputs <= t."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, dilation: int):
        super().__init__(in_channels, out_channels, kernel_size, dilation=dilation)
        self._left_pad = (kernel_size - 1) * dilation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(nn.functional.pad(x, (self._left_pad, 0)))


class TemporalBlock(nn.Module):
    """Two dilated causal convolutions with a residual connection.

    Shapes: ``(batch, in_channels, T) -> (batch, out_channels, T)``.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, dilation: int, dropout: float):
        super().__init__()
        self.net = nn.Sequential(
            _CausalConv1d(in_channels, out_channels, kernel_size, dilation),
            nn.BatchNorm1d(out_channels),
            nn.ReLU(),
            nn.Dropout(dropout),
            _CausalConv1d(out_channels, out_channels, kernel_size, dilation),
            nn.BatchNorm1d(out_channels),
            nn.ReLU(),
            nn.Dropout(dropout),
        )
        self.residual = (
            nn.Conv1d(in_channels, out_channels, 1) if in_channels != out_channels else nn.Identity()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.net(x) + self.residual(x))


class TCNClassifier(nn.Module):
    """Stack of temporal blocks with dilations 1, 2, 4, ... and a pooled linear head.

    Parameters
    ----------
    n_inputs : int
        Input channels: GP mean and GP std for each band.
    n_classes : int
        Number of output classes.
    channels : int
        Width of every temporal block.
    kernel_size : int
        Convolution kernel size (in grid steps).
    n_blocks : int
        Number of blocks; the receptive field is ``1 + 2 (kernel_size - 1) (2**n_blocks - 1)`` steps.
    dropout : float
        Dropout probability inside blocks.
    """

    def __init__(self, n_inputs: int, n_classes: int, channels: int = 32, kernel_size: int = 3,
                 n_blocks: int = 4, dropout: float = 0.1):
        super().__init__()
        if channels <= 0 or kernel_size < 2 or n_blocks <= 0 or not 0.0 <= dropout < 1.0:
            raise ValueError(
                f"model (tcn): need channels > 0, kernel_size >= 2, n_blocks > 0, 0 <= dropout < 1; "
                f"got channels={channels}, kernel_size={kernel_size}, n_blocks={n_blocks}, dropout={dropout}"
            )
        blocks = []
        for i in range(n_blocks):
            blocks.append(TemporalBlock(n_inputs if i == 0 else channels, channels, kernel_size, 2**i, dropout))
        self.blocks = nn.Sequential(*blocks)
        # Mean and max pooling over time: the class signal can sit anywhere in the window.
        self.head = nn.Linear(2 * channels, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x``: ``(batch, n_inputs, T)`` -> logits ``(batch, n_classes)``."""
        h = self.blocks(x)
        pooled = torch.cat([h.mean(dim=-1), h.amax(dim=-1)], dim=-1)
        return self.head(pooled)
