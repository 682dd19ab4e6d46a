"""Multi-task networks of the stellar task: an MK class and Teff, logg, [Fe/H] with uncertainties.

Every model maps its input to ONE tensor of shape ``(batch, n_classes + 2 * n_targets)``:

``[class logits (n_classes) | target means (n_targets) | target log-variances (n_targets)]``

with the means and log-variances in standardised target units (see
:class:`deeprubin.tasks.stellar.fit.TargetScaler`). One tensor, so the project's checkpoint code
(which stores one ``nn.Module``) works unchanged; :func:`split_outputs` takes it apart. The
regression heads are heteroscedastic (a Gaussian mean and variance per target, trained by the
Gaussian negative log-likelihood; Nix & Weigend 1994, Kendall & Gal 2017), as astroNN's
Bayesian CNN for APOGEE spectra (Leung & Bovy 2019, MNRAS 483, 3255).

* :class:`SpectralCNN`: 1-D convolutions over a spectrum ``(batch, n_inputs, n_grid)``.
* :class:`SpectralTransformer`: a transformer encoder over patches of the spectrum.
* :class:`SEDNet`: an MLP over tabular SED features ``(batch, n_features)``, NaN = missing.
"""
from __future__ import annotations

import math

import torch
from torch import nn

#: The classes a stellar model config may build (see deeprubin.core.models.model_class).
MODELS = ("SpectralCNN", "SpectralTransformer", "SEDNet")

#: Range of the predicted log-variance, standardised units: sigma from exp(-4.5) = 0.011 to
#: exp(3) = 20 standard deviations of the training targets. The bounds keep the Gaussian NLL
#: finite (no division by a vanishing variance, no collapse onto a memorised example); the
#: models reach them smoothly (:func:`soft_clamp`), so the gradient never vanishes at a bound.
LOG_VAR_MIN = -9.0
LOG_VAR_MAX = 6.0

ACTIVATIONS = {"gelu": nn.GELU, "relu": nn.ReLU, "silu": nn.SiLU}
POOLINGS = ("avg", "max", "avgmax")
TOKEN_POOLINGS = ("mean", "cls")
POSITIONAL = ("sinusoidal", "learned")


def soft_clamp(log_var: torch.Tensor, low: float = LOG_VAR_MIN, high: float = LOG_VAR_MAX) -> torch.Tensor:
    """``log_var`` squashed smoothly into ``(low, high)``: ``mid + half * tanh((v - mid) / half)``.

    Close to the identity around the middle of the range (slope 1 there), never outside it.
    """
    mid, half = 0.5 * (low + high), 0.5 * (high - low)
    return mid + half * torch.tanh((log_var - mid) / half)


def split_outputs(out: torch.Tensor, n_classes: int, n_targets: int
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(logits, mean, log_var)`` of a stellar model's output ``(batch, n_classes + 2 * n_targets)``.

    ``log_var`` is clamped to ``[LOG_VAR_MIN, LOG_VAR_MAX]`` (a no-op on the models' outputs, which
    are already inside; it guards outputs of other origin).

    Raises
    ------
    ValueError
        The output's last dimension is not ``n_classes + 2 * n_targets``.
    """
    width = int(n_classes) + 2 * int(n_targets)
    if out.ndim != 2 or out.shape[-1] != width:
        raise ValueError(f"split_outputs: output of shape {tuple(out.shape)} is not (batch, n_classes + 2 * "
                         f"n_targets) = (batch, {width}) for n_classes={n_classes}, n_targets={n_targets}")
    logits = out[:, :n_classes]
    mean = out[:, n_classes:n_classes + n_targets]
    log_var = out[:, n_classes + n_targets:].clamp(LOG_VAR_MIN, LOG_VAR_MAX)
    return logits, mean, log_var


def _check(model: str, ok: bool, message: str) -> None:
    if not ok:
        raise ValueError(f"model ({model}): {message}")


def _check_common(model: str, n_inputs: int, n_classes: int, n_targets: int, dropout: float,
                  hidden, activation: str) -> None:
    _check(model, int(n_inputs) >= 1, f"n_inputs must be >= 1, got {n_inputs}")
    _check(model, int(n_classes) >= 0 and int(n_targets) >= 0 and int(n_classes) + int(n_targets) >= 1,
           f"n_classes and n_targets must be >= 0 and not both 0, got n_classes={n_classes}, n_targets={n_targets}")
    _check(model, 0.0 <= float(dropout) < 1.0, f"dropout must be in [0, 1), got {dropout}")
    _check(model, all(int(h) >= 1 for h in hidden), f"hidden sizes must be >= 1, got {list(hidden)}")
    _check(model, activation in ACTIVATIONS, f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")


def _mlp(width: int, hidden, dropout: float, activation: str) -> tuple[nn.Sequential, int]:
    """Linear -> activation -> dropout per entry of ``hidden``; returns the stack and its output width."""
    layers: list[nn.Module] = []
    for h in hidden:
        layers += [nn.Linear(width, int(h)), ACTIVATIONS[activation](), nn.Dropout(float(dropout))]
        width = int(h)
    return nn.Sequential(*layers), width


class MultiTaskHeads(nn.Module):
    """Class logits, target means and (soft-clamped) log-variances from a trunk's features, concatenated.

    The log-variance head starts at zero (weights and bias), i.e. sigma = 1 standard deviation of
    the training targets: the prior of a standardised target, so early training is not dominated
    by a random variance.
    """

    def __init__(self, width: int, n_classes: int, n_targets: int):
        super().__init__()
        self.classes = nn.Linear(width, n_classes) if n_classes > 0 else None   # None: regression only
        self.mean = nn.Linear(width, n_targets)
        self.log_var = nn.Linear(width, n_targets)
        nn.init.zeros_(self.log_var.weight)
        nn.init.zeros_(self.log_var.bias)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        logits = self.classes(z) if self.classes is not None else z.new_zeros(len(z), 0)
        return torch.cat([logits, self.mean(z), soft_clamp(self.log_var(z))], dim=-1)


class SpectralCNN(nn.Module):
    """1-D CNN over spectra: ``(batch, n_inputs, n_grid) -> (batch, n_classes + 2 * n_targets)``.

    Blocks of (convolution, batch norm, activation, max-pool by ``pool_size``), channel dropout,
    adaptive pooling to ``pooled_length`` bins per channel (1 = global pooling; more keeps where
    along the spectrum a feature is, which identifies a line), an MLP trunk with dropout, then the
    class head and the per-target mean and log-variance heads. After astroNN's APOGEE CNN (Leung &
    Bovy 2019: two convolutions, max-pool, two dense layers with dropout), smaller, for CPUs.

    Parameters
    ----------
    n_inputs : int
        Input channels (3: normalised flux, its error, the bad-pixel mask).
    n_classes : int
        MK classes (logits); 0 for a regression-only model.
    n_targets : int
        Regressed parameters (3: Teff, logg, [Fe/H]).
    channels : list of int
        Filters of each convolution block.
    kernel_sizes : list of int
        Odd kernel of each block (one entry per block, or one for all).
    pool_size : int
        Max-pool factor after each block (>= 1; 1 = none).
    pooled_length : int
        Bins of the final adaptive pooling per channel.
    pooling : {"avg", "max", "avgmax"}
        Kind of the final adaptive pooling (``avgmax``: both, concatenated).
    hidden : list of int
        Widths of the MLP trunk.
    dropout : float
        Dropout of the trunk's layers and (as whole-channel dropout) after the convolutions.
    activation : {"gelu", "relu", "silu"}

    Notes
    -----
    The defaults fit CPUs: on 3,000 spectra of 3 x 950 pixels an epoch (batch 64, one thread)
    takes about 1.5 s; ``pooled_length = 8`` clearly beat global pooling (1) on synthetic spectra.
    """

    def __init__(self, n_inputs: int = 3, n_classes: int = 6, n_targets: int = 3, channels=(8, 16, 32),
                 kernel_sizes=(7, 5, 5), pool_size: int = 3, pooled_length: int = 8, pooling: str = "avgmax",
                 hidden=(128,), dropout: float = 0.2, activation: str = "gelu"):
        super().__init__()
        name = "SpectralCNN"
        channels, kernel_sizes, hidden = [int(c) for c in channels], [int(k) for k in kernel_sizes], list(hidden)
        _check_common(name, n_inputs, n_classes, n_targets, dropout, hidden, activation)
        _check(name, len(channels) >= 1 and all(c >= 1 for c in channels),
               f"channels must be a non-empty list of positive widths, got {channels}")
        if len(kernel_sizes) == 1:
            kernel_sizes = kernel_sizes * len(channels)
        _check(name, len(kernel_sizes) == len(channels),
               f"kernel_sizes needs one entry per block ({len(channels)}) or one for all, got {kernel_sizes}")
        _check(name, all(k >= 1 and k % 2 == 1 for k in kernel_sizes), f"kernel_sizes must be odd, got {kernel_sizes}")
        _check(name, int(pool_size) >= 1, f"pool_size must be >= 1, got {pool_size}")
        _check(name, int(pooled_length) >= 1, f"pooled_length must be >= 1, got {pooled_length}")
        _check(name, pooling in POOLINGS, f"pooling must be one of {POOLINGS}, got {pooling!r}")
        self.n_classes, self.n_targets = int(n_classes), int(n_targets)
        layers: list[nn.Module] = []
        width = int(n_inputs)
        for c, k in zip(channels, kernel_sizes):
            layers += [nn.Conv1d(width, c, k, padding=k // 2, bias=False), nn.BatchNorm1d(c),
                       ACTIVATIONS[activation]()]
            if int(pool_size) > 1:
                layers.append(nn.MaxPool1d(int(pool_size), ceil_mode=True))
            width = c
        self.features = nn.Sequential(*layers, nn.Dropout1d(float(dropout)))
        self.pooling = pooling
        self.avg = nn.AdaptiveAvgPool1d(int(pooled_length))
        self.max = nn.AdaptiveMaxPool1d(int(pooled_length))
        n_flat = width * int(pooled_length) * (2 if pooling == "avgmax" else 1)
        self.trunk, width = _mlp(n_flat, hidden, dropout, activation)
        self.heads = MultiTaskHeads(width, self.n_classes, self.n_targets)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x``: ``(batch, n_inputs, n_grid)`` -> ``(batch, n_classes + 2 * n_targets)``."""
        h = self.features(x)
        if self.pooling == "avg":
            z = self.avg(h)
        elif self.pooling == "max":
            z = self.max(h)
        else:
            z = torch.cat([self.avg(h), self.max(h)], dim=1)
        return self.heads(self.trunk(z.flatten(1)))


def sinusoidal_encoding(n_positions: int, d_model: int, device=None, dtype=None) -> torch.Tensor:
    """The ``(n_positions, d_model)`` sine/cosine position encoding of Vaswani et al. (2017)."""
    position = torch.arange(n_positions, device=device, dtype=torch.float32)[:, None]
    n_freq = (d_model + 1) // 2
    freq = torch.exp(-math.log(10000.0) * torch.arange(n_freq, device=device, dtype=torch.float32) * 2 / d_model)
    enc = torch.zeros(n_positions, 2 * n_freq, device=device)
    enc[:, 0::2] = torch.sin(position * freq)
    enc[:, 1::2] = torch.cos(position * freq)
    return enc[:, :d_model].to(dtype or torch.float32)


class SpectralTransformer(nn.Module):
    """Transformer encoder over spectrum patches: ``(batch, n_inputs, n_grid) -> (batch, n_classes + 2 * n_targets)``.

    The spectrum is cut into patches of ``patch_size`` pixels (all channels; the last patch is
    padded by repeating the last pixel), each embedded linearly to ``d_model`` (a strided
    convolution, as a Vision Transformer's patches; Dosovitskiy et al. 2021), plus a position
    encoding of the patch index; ``n_layers`` pre-norm encoder layers, then the mean of the
    patch tokens or a learned CLS token, an MLP trunk and the heads.

    Parameters
    ----------
    n_inputs, n_classes, n_targets : int
        As :class:`SpectralCNN`.
    patch_size : int
        Pixels per patch (the token count is ``ceil(n_grid / patch_size)``).
    d_model, n_heads, n_layers, dim_feedforward : int
        Encoder width, attention heads (must divide ``d_model``), depth, feed-forward width.
    dropout : float
        Of the encoder layers and the trunk.
    positional : {"sinusoidal", "learned"}
        Position encoding (``learned``: a table of ``max_patches`` rows).
    max_patches : int
        Longest spectrum in patches for ``learned`` encodings.
    token_pooling : {"mean", "cls"}
    hidden : list of int
        Widths of the MLP trunk after pooling (may be empty).
    activation : {"gelu", "relu", "silu"}
        Of the trunk (the encoder layers use GELU).
    """

    def __init__(self, n_inputs: int = 3, n_classes: int = 6, n_targets: int = 3, patch_size: int = 16,
                 d_model: int = 64, n_heads: int = 4, n_layers: int = 2, dim_feedforward: int = 128,
                 dropout: float = 0.1, positional: str = "sinusoidal", max_patches: int = 256,
                 token_pooling: str = "mean", hidden=(64,), activation: str = "gelu"):
        super().__init__()
        name = "SpectralTransformer"
        hidden = list(hidden)
        _check_common(name, n_inputs, n_classes, n_targets, dropout, hidden, activation)
        _check(name, int(patch_size) >= 1, f"patch_size must be >= 1, got {patch_size}")
        _check(name, int(d_model) >= 2 and int(n_heads) >= 1 and int(d_model) % int(n_heads) == 0,
               f"n_heads must divide d_model (>= 2), got d_model={d_model}, n_heads={n_heads}")
        _check(name, int(n_layers) >= 1, f"n_layers must be >= 1, got {n_layers}")
        _check(name, int(dim_feedforward) >= 1, f"dim_feedforward must be >= 1, got {dim_feedforward}")
        _check(name, positional in POSITIONAL, f"positional must be one of {POSITIONAL}, got {positional!r}")
        _check(name, int(max_patches) >= 1, f"max_patches must be >= 1, got {max_patches}")
        _check(name, token_pooling in TOKEN_POOLINGS,
               f"token_pooling must be one of {TOKEN_POOLINGS}, got {token_pooling!r}")
        self.n_classes, self.n_targets = int(n_classes), int(n_targets)
        self.patch_size, self.d_model = int(patch_size), int(d_model)
        self.positional, self.token_pooling, self.max_patches = positional, token_pooling, int(max_patches)
        self.embed = nn.Conv1d(int(n_inputs), self.d_model, self.patch_size, stride=self.patch_size)
        if positional == "learned":
            self.position = nn.Parameter(torch.zeros(self.max_patches, self.d_model))
            nn.init.trunc_normal_(self.position, std=0.02)
        if token_pooling == "cls":
            self.cls = nn.Parameter(torch.zeros(1, 1, self.d_model))
            nn.init.trunc_normal_(self.cls, std=0.02)
        self.drop = nn.Dropout(float(dropout))
        layer = nn.TransformerEncoderLayer(self.d_model, int(n_heads), int(dim_feedforward), float(dropout),
                                           activation="gelu", batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, int(n_layers), enable_nested_tensor=False)
        self.norm = nn.LayerNorm(self.d_model)
        self.trunk, width = _mlp(self.d_model, hidden, dropout, activation)
        self.heads = MultiTaskHeads(width, self.n_classes, self.n_targets)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x``: ``(batch, n_inputs, n_grid)`` -> ``(batch, n_classes + 2 * n_targets)``."""
        pad = (-x.shape[-1]) % self.patch_size
        if pad:
            x = nn.functional.pad(x, (0, pad), mode="replicate")
        tokens = self.embed(x).transpose(1, 2)                   # (batch, n_patches, d_model)
        n_patches = tokens.shape[1]
        if self.positional == "learned":
            if n_patches > self.max_patches:
                raise ValueError(f"model (SpectralTransformer): {n_patches} patches exceed max_patches="
                                 f"{self.max_patches}; raise max_patches or patch_size")
            tokens = tokens + self.position[:n_patches]
        else:
            tokens = tokens + sinusoidal_encoding(n_patches, self.d_model, tokens.device, tokens.dtype)
        if self.token_pooling == "cls":
            tokens = torch.cat([self.cls.expand(len(tokens), -1, -1), tokens], dim=1)
        h = self.norm(self.encoder(self.drop(tokens)))
        z = h[:, 0] if self.token_pooling == "cls" else h.mean(dim=1)
        return self.heads(self.trunk(z))


class SEDNet(nn.Module):
    """MLP over tabular SED features: ``(batch, n_features[, 1]) -> (batch, n_classes + 2 * n_targets)``.

    A missing feature (NaN or infinite: a band not observed) is set to 0 and flagged: the network
    sees ``[features with missing = 0 | missing indicator per feature]`` (``2 * n_features`` inputs),
    so the features should be standardised beforehand (0 = a typical value). Then ``hidden``
    layers (linear, layer norm, activation, dropout) and the heads.

    Parameters
    ----------
    n_inputs : int
        Number of features (colours, magnitudes, parallax...).
    n_classes, n_targets : int
        As :class:`SpectralCNN` (``n_classes = 0`` for a regression-only model).
    hidden : list of int
        Widths of the hidden layers (at least one).
    dropout : float
    activation : {"gelu", "relu", "silu"}
    """

    def __init__(self, n_inputs: int, n_classes: int = 6, n_targets: int = 3, hidden=(128, 128),
                 dropout: float = 0.1, activation: str = "gelu"):
        super().__init__()
        name = "SEDNet"
        hidden = list(hidden)
        _check_common(name, n_inputs, n_classes, n_targets, dropout, hidden, activation)
        _check(name, len(hidden) >= 1, "hidden needs at least one layer width")
        self.n_features, self.n_classes, self.n_targets = int(n_inputs), int(n_classes), int(n_targets)
        layers: list[nn.Module] = []
        width = 2 * self.n_features
        for h in hidden:
            layers += [nn.Linear(width, int(h)), nn.LayerNorm(int(h)), ACTIVATIONS[activation](),
                       nn.Dropout(float(dropout))]
            width = int(h)
        self.trunk = nn.Sequential(*layers)
        self.heads = MultiTaskHeads(width, self.n_classes, self.n_targets)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x``: ``(batch, n_features)`` or ``(batch, n_features, 1)``, NaN = missing."""
        if x.ndim == 3 and x.shape[-1] == 1:
            x = x[..., 0]
        if x.ndim != 2 or x.shape[1] != self.n_features:
            raise ValueError(f"model (SEDNet): input of shape {tuple(x.shape)} is not (batch, {self.n_features}) "
                             f"or (batch, {self.n_features}, 1)")
        known = torch.isfinite(x)
        filled = torch.where(known, x, torch.zeros_like(x))
        return self.heads(self.trunk(torch.cat([filled, (~known).to(x.dtype)], dim=1)))
