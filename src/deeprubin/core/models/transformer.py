"""Transformer-encoder classifier over GP grids."""
from __future__ import annotations

import math

import torch
from torch import nn


class SinusoidalTimeEncoding(nn.Module):
    """Adds ``sin/cos`` features of the grid time (days) to each step's embedding.

    Uses the time of each grid step rather than its index, so grids of different
    spacing or length share one meaning of "10 days later". Periods span
    ``min_period_days`` to ``max_period_days`` geometrically.
    """

    def __init__(self, d_model: int, min_period_days: float = 1.0, max_period_days: float = 1000.0):
        super().__init__()
        n_freq = d_model // 2
        periods = torch.logspace(math.log10(min_period_days), math.log10(max_period_days), n_freq)
        self.register_buffer("angular", 2 * math.pi / periods)
        self.d_model = d_model

    def forward(self, times: torch.Tensor) -> torch.Tensor:
        """``times``: ``(T,)`` days -> ``(T, d_model)`` encoding."""
        phase = times[:, None] * self.angular[None, :]
        enc = torch.cat([torch.sin(phase), torch.cos(phase)], dim=-1)
        if enc.shape[-1] < self.d_model:  # odd d_model: pad one zero feature
            enc = nn.functional.pad(enc, (0, self.d_model - enc.shape[-1]))
        return enc


class TransformerClassifier(nn.Module):
    """Linear embedding, time encoding, ``n_layers`` encoder layers, masked mean pooling.

    Parameters
    ----------
    n_inputs, n_classes : int
        Input channels (GP mean and std per band) and output classes.
    d_model, n_heads, n_layers, dim_feedforward : int
        Encoder width, attention heads (must divide ``d_model``), depth, MLP width.
    dropout : float
    grid_step_days : float
        Spacing of the input grid in days (the time encoding needs physical time).

    Notes
    -----
    ``forward`` accepts an optional boolean ``padding_mask`` of shape ``(batch, T)``
    (True = padded step) so grids of unequal length can share a batch; padded
    steps are ignored by attention and by the pooling.
    """

    def __init__(self, n_inputs: int, n_classes: int, d_model: int = 32, n_heads: int = 4, n_layers: int = 2,
                 dim_feedforward: int = 64, dropout: float = 0.1, grid_step_days: float = 2.0):
        super().__init__()
        if d_model <= 0 or n_heads <= 0 or d_model % n_heads:
            raise ValueError(f"model (transformer): n_heads must divide d_model; got d_model={d_model}, "
                             f"n_heads={n_heads}")
        if n_layers <= 0 or dim_feedforward <= 0 or not 0.0 <= dropout < 1.0 or grid_step_days <= 0:
            raise ValueError(f"model (transformer): need n_layers > 0, dim_feedforward > 0, 0 <= dropout < 1, "
                             f"grid_step_days > 0; got n_layers={n_layers}, dim_feedforward={dim_feedforward}, "
                             f"dropout={dropout}, grid_step_days={grid_step_days}")
        self.embed = nn.Linear(n_inputs, d_model)
        self.time_encoding = SinusoidalTimeEncoding(d_model)
        layer = nn.TransformerEncoderLayer(d_model, n_heads, dim_feedforward, dropout, batch_first=True,
                                           norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, n_layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, n_classes)
        self.grid_step_days = grid_step_days

    def forward(self, x: torch.Tensor, padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        """``x``: ``(batch, n_inputs, T)`` -> logits ``(batch, n_classes)``."""
        steps = x.shape[-1]
        times = torch.arange(steps, device=x.device, dtype=x.dtype) * self.grid_step_days
        h = self.embed(x.transpose(1, 2)) + self.time_encoding(times)[None]
        h = self.norm(self.encoder(h, src_key_padding_mask=padding_mask))
        if padding_mask is None:
            pooled = h.mean(dim=1)
        else:
            keep = (~padding_mask).unsqueeze(-1).to(h.dtype)
            pooled = (h * keep).sum(dim=1) / keep.sum(dim=1).clamp_min(1.0)
        return self.head(pooled)
