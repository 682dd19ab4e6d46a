"""The transients task's own architecture: a fusion of the GP grid, the light-curve features and folded views.

Why (measured in ``docs/decisions/fusion-model.md``): a network over the 100-day GP window alone
cannot see periods of hours to days nor long-term stochastic variability, which the feature +
random-forest baseline reads from its periodogram and whole-light-curve statistics. The fusion
classifier therefore has three branches whose embeddings are concatenated before one head:

- ``grid``: temporal blocks (:class:`deeprubin.core.models.tcn.TemporalBlock`) over the GP mean
  and std channels, as :class:`~deeprubin.core.models.tcn.TCNClassifier`;
- ``features``: an MLP over the baseline's ``light-curve`` features. Missing values (NaN: too
  few points in a band, a failed fit) become 0 plus a missing-value indicator per feature; each
  feature is centred and scaled by its training-set median and inter-quartile range and passed
  through ``asinh`` against heavy tails (``feature_encoding: asinh``), or encoded piecewise-
  linearly over its training-set quantile bins (``ple``; Gorishniy, Rubachev & Babenko 2022,
  the numerical-feature embedding that brings MLPs close to tree ensembles on tabular data).
  Median, scale and bin edges are buffers of the module, set by
  :meth:`FusionClassifier.fit_input_scaling` before training, so they travel in the checkpoint;
- ``fold``: a circular 1-D CNN over the light curve folded at the Lomb-Scargle period and its
  multiples (:func:`deeprubin.tasks.transients.training.inputs.fold_views`).

One model input is one flat float32 vector per object: the parts of :func:`input_layout`, in the
order ``grid``, ``features``, ``fold`` (absent branches take no room), so every path that applies
a model to an array (prediction, calibration, MC dropout, MLflow) applies this one unchanged.
"""
from __future__ import annotations

import torch
from torch import nn

from ...core.models.tcn import TemporalBlock

#: The classes of this module that a model config (or a checkpoint) may build.
MODELS = ("FusionClassifier",)

#: The branches a fusion model may use, in input order.
BRANCHES = ("grid", "features", "fold")

#: How the feature branch encodes a feature value (see the module docstring).
FEATURE_ENCODINGS = ("asinh", "ple")


def piecewise_linear(values: torch.Tensor, edges: torch.Tensor) -> torch.Tensor:
    """Piecewise-linear encoding of ``values`` ``(batch, n)`` over per-feature bin ``edges``
    ``(n, n_bins + 1)``: per bin, 1 below the value, the fraction of the bin under it, 0 above;
    shape ``(batch, n, n_bins)``. A zero-width bin (a repeated quantile) is a step at its edge."""
    lo, hi = edges[:, :-1], edges[:, 1:]
    width = hi - lo
    v = values.unsqueeze(-1)
    ramp = (v - lo) / torch.where(width > 0, width, torch.ones_like(width))
    step = (v >= lo).to(values.dtype)
    return torch.where(width > 0, ramp.clamp(0.0, 1.0), step)


def fold_channel_count(n_bands: int, n_periods: int) -> int:
    """Folded-view channels: mean normalised flux and bin occupancy per band, per folding period."""
    return 2 * n_bands * n_periods


def input_layout(branches, n_grid_channels: int, grid_length: int, n_features: int, n_fold_channels: int,
                 fold_bins: int) -> dict[str, tuple[int, int]]:
    """``{branch: (start, stop)}`` of each branch's slice of the flat input vector."""
    sizes = {"grid": n_grid_channels * grid_length, "features": n_features, "fold": n_fold_channels * fold_bins}
    layout, start = {}, 0
    for name in BRANCHES:
        if name in branches:
            layout[name] = (start, start + sizes[name])
            start += sizes[name]
    return layout


class FusionClassifier(nn.Module):
    """GP grid + features + folded views, fused by concatenation (see the module docstring).

    Parameters
    ----------
    n_inputs : int
        GP-grid channels (mean and std per band), as for every grid model; ``n_inputs // 2`` bands.
    n_classes : int
    grid_length : int
        Steps of the GP grid (from the data).
    n_features : int
        Light-curve features (from the data: the feature set's columns).
    fold_bins : int
        Phase bins of each folded view.
    fold_periods : list of float
        Multiples of the Lomb-Scargle period the light curve is folded at (``[1, 2]``: an
        eclipsing binary's periodogram peak is often half its period).
    branches : list of str
        Which of ``grid``, ``features``, ``fold`` to use (ablations); at least one.
    channels, kernel_size, n_blocks : int
        The grid branch's temporal blocks.
    feature_hidden : int
        Width of the feature MLP.
    fold_channels : int
        Width of the fold CNN.
    head_hidden : int
        Width of the fused head's hidden layer.
    dropout : float
        Dropout in every branch and in the head.
    branch_dropout : float
        Training only: probability of zeroing a whole branch embedding per object, so no
        branch carries the decision alone.
    feature_encoding : str
        ``asinh`` (scaled value) or ``ple`` (piecewise-linear over ``feature_bins`` training
        quantile bins) for the feature branch.
    """

    def __init__(self, n_inputs: int, n_classes: int, grid_length: int, n_features: int, fold_bins: int = 32,
                 fold_periods: list | tuple = (1.0, 2.0), branches: list | tuple = BRANCHES, channels: int = 32,
                 kernel_size: int = 3, n_blocks: int = 4, feature_hidden: int = 128, fold_channels: int = 32,
                 head_hidden: int = 64, dropout: float = 0.1, branch_dropout: float = 0.1,
                 feature_encoding: str = "asinh", feature_bins: int = 16):
        super().__init__()
        branches = [str(b) for b in branches]
        unknown = sorted(set(branches) - set(BRANCHES))
        if unknown or not branches or len(set(branches)) != len(branches):
            raise ValueError(f"model (fusion): 'branches' must be distinct names from {list(BRANCHES)}, "
                             f"got {branches}")
        sizes = dict(n_inputs=n_inputs, grid_length=grid_length, n_features=n_features, fold_bins=fold_bins,
                     channels=channels, n_blocks=n_blocks, feature_hidden=feature_hidden,
                     fold_channels=fold_channels, head_hidden=head_hidden, feature_bins=feature_bins)
        bad = {k: v for k, v in sizes.items() if not isinstance(v, int) or isinstance(v, bool) or v <= 0}
        if n_inputs % 2:
            bad["n_inputs"] = n_inputs
        if feature_encoding not in FEATURE_ENCODINGS:
            raise ValueError(f"model (fusion): 'feature_encoding' must be one of {list(FEATURE_ENCODINGS)}, "
                             f"got {feature_encoding!r}")
        if bad or kernel_size < 2 or not 0.0 <= dropout < 1.0 or not 0.0 <= branch_dropout < 1.0 \
                or not fold_periods or any(float(p) <= 0 for p in fold_periods):
            raise ValueError(f"model (fusion): need positive integer sizes (even n_inputs), kernel_size >= 2, "
                             f"0 <= dropout, branch_dropout < 1 and positive fold_periods; got {bad or sizes}, "
                             f"kernel_size={kernel_size}, dropout={dropout}, branch_dropout={branch_dropout}, "
                             f"fold_periods={list(fold_periods)}")
        self.branches = tuple(b for b in BRANCHES if b in branches)
        self.n_grid_channels, self.grid_length = n_inputs, grid_length
        self.n_features, self.fold_bins = n_features, fold_bins
        self.n_fold_channels = fold_channel_count(n_inputs // 2, len(fold_periods))
        self.layout = input_layout(self.branches, n_inputs, grid_length, n_features, self.n_fold_channels,
                                   fold_bins)
        self.n_values = max(stop for _, stop in self.layout.values())
        self.branch_dropout = branch_dropout
        width = 0
        if "grid" in self.branches:
            self.grid = nn.Sequential(*[TemporalBlock(n_inputs if i == 0 else channels, channels, kernel_size, 2 ** i,
                                                      dropout) for i in range(n_blocks)])
            width += 2 * channels
        if "features" in self.branches:
            self.register_buffer("feature_center", torch.zeros(n_features))
            self.register_buffer("feature_scale", torch.ones(n_features))
            self.feature_encoding = feature_encoding
            per_feature = 1
            if feature_encoding == "ple":
                self.register_buffer("feature_edges", torch.linspace(-1.0, 1.0, feature_bins + 1).repeat(n_features, 1))
                per_feature = feature_bins
            self.features = nn.Sequential(nn.Linear((per_feature + 1) * n_features, feature_hidden), nn.GELU(),
                                          nn.Dropout(dropout),
                                          nn.Linear(feature_hidden, feature_hidden), nn.GELU())
            width += feature_hidden
        if "fold" in self.branches:
            def conv(c_in, c_out):
                return nn.Conv1d(c_in, c_out, 5, padding=2, padding_mode="circular")
            self.fold = nn.Sequential(conv(self.n_fold_channels, fold_channels), nn.BatchNorm1d(fold_channels),
                                      nn.GELU(), conv(fold_channels, fold_channels), nn.BatchNorm1d(fold_channels),
                                      nn.GELU(), conv(fold_channels, fold_channels), nn.BatchNorm1d(fold_channels),
                                      nn.GELU())
            width += 2 * fold_channels
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(width, head_hidden), nn.GELU(),
                                  nn.Linear(head_hidden, n_classes))

    def part(self, x: torch.Tensor, name: str) -> torch.Tensor:
        """One branch's slice of the flat input, reshaped to that branch's shape."""
        start, stop = self.layout[name]
        values = x[:, start:stop]
        if name == "grid":
            return values.reshape(len(x), self.n_grid_channels, self.grid_length)
        if name == "fold":
            return values.reshape(len(x), self.n_fold_channels, self.fold_bins)
        return values

    @torch.no_grad()
    def fit_input_scaling(self, x: torch.Tensor) -> None:
        """Set the features' centre and scale from training inputs ``x`` (median, inter-quartile range)
        and, for ``ple``, their bin edges (the training quantiles, in scaled units).

        A feature that is missing for every training object keeps centre 0 and scale 1; a
        constant one, scale 1.
        """
        if "features" not in self.branches:
            return
        values = self.part(torch.as_tensor(x, dtype=torch.float32), "features")
        center = torch.nanquantile(values, 0.5, dim=0)
        iqr = torch.nanquantile(values, 0.75, dim=0) - torch.nanquantile(values, 0.25, dim=0)
        self.feature_center.copy_(torch.nan_to_num(center, nan=0.0))
        self.feature_scale.copy_(torch.where(torch.isfinite(iqr) & (iqr > 0), iqr, torch.ones_like(iqr)))
        if self.feature_encoding == "ple":
            z = (values - self.feature_center) / self.feature_scale
            q = torch.linspace(0.0, 1.0, self.feature_edges.shape[1], dtype=z.dtype)
            edges = torch.nanquantile(z, q, dim=0).T            # (n_features, n_bins + 1), NaN if all missing
            default = torch.linspace(-1.0, 1.0, self.feature_edges.shape[1], dtype=z.dtype)
            self.feature_edges.copy_(torch.where(torch.isfinite(edges).all(dim=1, keepdim=True), edges, default))

    def embed_features(self, values: torch.Tensor) -> torch.Tensor:
        missing = ~torch.isfinite(values)
        z = (torch.where(missing, self.feature_center, values) - self.feature_center) / self.feature_scale
        if self.feature_encoding == "ple":
            encoded = piecewise_linear(z, self.feature_edges).masked_fill(missing.unsqueeze(-1), 0.0)
            return self.features(torch.cat([encoded.flatten(1), missing.float()], dim=-1))
        return self.features(torch.cat([torch.asinh(z), missing.float()], dim=-1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x``: ``(batch, n_values)`` flat inputs (see :func:`input_layout`) -> logits ``(batch, n_classes)``."""
        if x.ndim != 2 or x.shape[1] != self.n_values:
            raise ValueError(f"model (fusion): expects flat inputs of shape (batch, {self.n_values}) "
                             f"(branches {list(self.branches)}), got {tuple(x.shape)}")
        embeddings = []
        for name in self.branches:
            values = self.part(x, name)
            if name == "grid":
                h = self.grid(values)
                h = torch.cat([h.mean(dim=-1), h.amax(dim=-1)], dim=-1)
            elif name == "features":
                h = self.embed_features(values)
            else:
                h = self.fold(values)
                h = torch.cat([h.mean(dim=-1), h.amax(dim=-1)], dim=-1)
            if self.training and self.branch_dropout > 0 and len(self.branches) > 1:
                h = h * (torch.rand(len(h), 1, device=h.device) >= self.branch_dropout).to(h.dtype)
            embeddings.append(h)
        return self.head(torch.cat(embeddings, dim=-1))
