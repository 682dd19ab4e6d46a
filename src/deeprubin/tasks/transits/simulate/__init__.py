"""Simulated Kepler-like and TESS-like light curves with planets, eclipsing binaries and noise."""
from .survey import simulate_survey

__all__ = ["simulate_survey"]
