"""Recurrent classifier (GRU) over light-curve grids."""
from __future__ import annotations

import torch
from torch import nn


class GRUClassifier(nn.Module):
    """(Bi)directional multi-layer GRU; the last hidden states feed a linear head.

    Parameters
    ----------
    n_inputs : int
        Input channels per time step (GP mean and std per band).
    n_classes : int
        Number of output classes.
    hidden_size, n_layers : int
        GRU width and depth.
    dropout : float
        Dropout between GRU layers and before the head.
    bidirectional : bool
        Read the grid both ways (the whole light curve is available offline).
    """

    def __init__(self, n_inputs: int, n_classes: int, hidden_size: int = 48, n_layers: int = 2,
                 dropout: float = 0.1, bidirectional: bool = True):
        super().__init__()
        if hidden_size <= 0 or n_layers <= 0 or not 0.0 <= dropout < 1.0:
            raise ValueError(
                f"model (gru): need hidden_size > 0, n_layers > 0, 0 <= dropout < 1; got "
                f"hidden_size={hidden_size}, n_layers={n_layers}, dropout={dropout}"
            )
        self.gru = nn.GRU(n_inputs, hidden_size, num_layers=n_layers, batch_first=True,
                          dropout=dropout if n_layers > 1 else 0.0, bidirectional=bidirectional)
        n_directions = 2 if bidirectional else 1
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(n_directions * hidden_size, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x``: ``(batch, n_inputs, T)`` -> logits ``(batch, n_classes)``."""
        _, h_n = self.gru(x.transpose(1, 2))          # h_n: (layers * directions, batch, hidden)
        n_directions = 2 if self.gru.bidirectional else 1
        last = h_n[-n_directions:].transpose(0, 1).reshape(x.shape[0], -1)
        return self.head(self.dropout(last))
