"""On-the-fly transit injection into normalised training segments.

Each training batch, a fraction of the negative segments gets a train of synthetic,
trapezoid-shaped transits (random duration, period, phase, per-transit SNR, ingress) and
becomes a positive. The model thus sees, every epoch, new transits on real noise
(granulation, spots residuals, outliers, jumps and the eclipses of binaries), not only
the few dozen simulated planets of the training stars: the usual way transit CNNs are
trained (injection-based training sets). Depths are capped at ``max_depth`` (planetary),
so deep eclipses stay negative.
"""
from __future__ import annotations

import torch


def trapezoid(positions: torch.Tensor, centres: torch.Tensor, duration: float, ingress: float) -> torch.Tensor:
    """Sum over transit centres of a unit-depth trapezoid (full ``duration``, ``ingress`` long
    ramps), evaluated at ``positions`` (cadence indices); values in [0, 1]."""
    d = (positions[None, :] - centres[:, None]).abs()  # (n_transits, L)
    half = 0.5 * duration
    shape = ((half - d) / max(ingress, 1e-6)).clamp(0.0, 1.0)
    return shape.amax(dim=0)


def inject_transits(x: torch.Tensor, y: torch.Tensor, cfg, channels: list[str], relative_scale: float,
                    clip: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Inject transits into a fraction ``cfg.probability`` of the negatives of a batch.

    Parameters
    ----------
    x : torch.Tensor, shape (batch, n_channels, L)
        Normalised segments (channels named by ``channels``: ``robust_z``, ``relative``).
    y : torch.Tensor, shape (batch,)
        0/1 labels; injected segments become 1.
    cfg : mapping
        ``probability``, ``snr_per_transit`` [lo, hi] (log-uniform), ``duration_cadences``
        [lo, hi] (log-uniform), ``period_cadences`` [lo, hi], ``ingress_fraction`` [lo, hi],
        ``max_depth`` (relative flux).

    Uses torch's global generator (seeded by ``lightning.seed_everything``).
    """
    x, y = x.clone(), y.clone()
    length = x.shape[-1]
    positions = torch.arange(length, dtype=x.dtype, device=x.device)
    pick = (y == 0) & (torch.rand(len(y), device=x.device) < float(cfg.probability))
    z_idx = channels.index("robust_z") if "robust_z" in channels else None
    r_idx = channels.index("relative") if "relative" in channels else None

    def log_uniform(lo_hi) -> float:
        lo, hi = (torch.tensor(float(v)).log() for v in lo_hi)
        return float(torch.exp(lo + (hi - lo) * torch.rand(())))

    for i in torch.nonzero(pick).flatten().tolist():
        duration = log_uniform(cfg.duration_cadences)
        period = max(float(cfg.period_cadences[0]) + (float(cfg.period_cadences[1]) - float(cfg.period_cadences[0]))
                     * float(torch.rand(())), 3.0 * duration)
        phase = float(torch.rand(())) * period
        centres = torch.arange(phase, length + period, period, dtype=x.dtype, device=x.device)
        ingress = duration * (float(cfg.ingress_fraction[0]) + (float(cfg.ingress_fraction[1])
                                                                  - float(cfg.ingress_fraction[0])) * float(torch.rand(())))
        shape = trapezoid(positions, centres, duration, ingress)
        if shape.max() <= 0:
            continue
        # noise per cadence in relative flux, from the segment itself (robust)
        if r_idx is not None:
            rel = x[i, r_idx]
            sigma = 1.4826 * (rel - rel.median()).abs().median() * relative_scale
        else:
            sigma = torch.tensor(1e-3)
        depth_z = log_uniform(cfg.snr_per_transit) / max(duration, 1.0) ** 0.5  # per-cadence depth in sigma
        depth = min(depth_z * float(sigma), float(cfg.max_depth))
        if z_idx is not None:
            x[i, z_idx] -= shape * depth / max(float(sigma), 1e-12)
        if r_idx is not None:
            x[i, r_idx] -= shape * depth / relative_scale
        y[i] = 1
    return x.clamp(-clip, clip), y
