"""Stellar and instrumental noise of Kepler-like and TESS-like light curves.

All functions return relative flux perturbations (dimensionless, 0 = none) on the given
cadences; ``rng`` makes every draw reproducible.
"""
from __future__ import annotations

import numpy as np


def white_noise_ppm(kepmag: float, floor_ppm: float) -> float:
    """Kepler long-cadence (30-min) white noise in ppm at Kepler magnitude ``kepmag``.

    Photon noise (75 ppm at Kp = 12, scaling as the square root of the flux) plus a
    background/read term (15 ppm at Kp = 12, scaling with the flux) and a floor; about
    25, 80, 200 and 700 ppm at Kp = 10, 12, 14, 16, close to Kepler's quoted precision
    (Jenkins et al. 2010, ApJ 713, L120; Gilliland et al. 2011).
    """
    shot = 75.0 * 10 ** (0.2 * (kepmag - 12.0))
    background = 15.0 * 10 ** (0.4 * (kepmag - 12.0))
    return float(np.sqrt(shot ** 2 + background ** 2 + floor_ppm ** 2))


def ar1_noise(time: np.ndarray, sigma: float, tau: float, rng: np.random.Generator) -> np.ndarray:
    """Stationary AR(1) (Ornstein-Uhlenbeck) process: granulation-like correlated noise.

    Correlation ``exp(-dt / tau)`` between consecutive cadences (gaps handled through dt);
    marginal standard deviation ``sigma``. This is the exponential kernel of celerite.
    """
    n = len(time)
    out = np.empty(n)
    if n == 0:
        return out
    rho = np.exp(-np.diff(time) / tau)
    innov = rng.standard_normal(n)
    out[0] = sigma * innov[0]
    scale = sigma * np.sqrt(1.0 - rho ** 2)
    for i in range(1, n):  # a recurrence; n is a few thousand cadences
        out[i] = rho[i - 1] * out[i - 1] + scale[i - 1] * innov[i]
    return out


def rotation_signal(time: np.ndarray, amplitude: float, period: float, rng: np.random.Generator) -> np.ndarray:
    """Spot modulation: fundamental plus first harmonic, with slowly evolving amplitude."""
    phase1, phase2 = rng.uniform(0, 2 * np.pi, 2)
    envelope = 1.0 + 0.3 * np.sin(2 * np.pi * time / (3.0 * period) + rng.uniform(0, 2 * np.pi))
    return amplitude * envelope * (np.sin(2 * np.pi * time / period + phase1)
                                   + 0.3 * np.sin(4 * np.pi * time / period + phase2))


def flares(time: np.ndarray, rate_per_day: float, rng: np.random.Generator) -> np.ndarray:
    """Stellar flares: instantaneous rise, exponential decay (10-60 min), amplitude 0.1-5 %."""
    out = np.zeros_like(time)
    span = float(time.max() - time.min()) if len(time) else 0.0
    for _ in range(rng.poisson(rate_per_day * span)):
        t_peak = rng.uniform(time.min(), time.max())
        amp = np.exp(rng.uniform(np.log(1e-3), np.log(5e-2)))
        decay = rng.uniform(10, 60) / 1440.0
        after = time >= t_peak
        out[after] += amp * np.exp(-(time[after] - t_peak) / decay)
    return out


def jumps(time: np.ndarray, rate_per_day: float, rng: np.random.Generator) -> np.ndarray:
    """Sudden sensitivity drops (Kepler SPSD-like): a step down of 100-2000 ppm, recovering
    exponentially over 0.1-2 days; a systematic that mimics a transit ingress."""
    out = np.zeros_like(time)
    span = float(time.max() - time.min()) if len(time) else 0.0
    for _ in range(rng.poisson(rate_per_day * span)):
        t_jump = rng.uniform(time.min(), time.max())
        amp = np.exp(rng.uniform(np.log(1e-4), np.log(2e-3)))
        recover = rng.uniform(0.1, 2.0)
        after = time >= t_jump
        out[after] -= amp * np.exp(-(time[after] - t_jump) / recover)
    return out


def single_outliers(n: int, rate: float, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """Isolated low points (cosmic-ray hits on the background, momentum dumps): 5-30 sigma dips."""
    out = np.zeros(n)
    hits = rng.random(n) < rate
    out[hits] = -sigma * rng.uniform(5, 30, hits.sum())
    return out
