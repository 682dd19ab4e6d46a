"""Built-in ZTF-like survey simulator: the project's default offline data source.

:func:`simulate_survey` draws sources from the class models in
:data:`CLASS_MODELS`, observes them with an irregular, seasonal cadence and a
limiting-magnitude noise model, and returns the canonical ``(lightcurves,
objects)`` tables.
"""
from deeprubin.sources.simulate.classes import CLASS_MODELS
from deeprubin.sources.simulate.survey import SimulationConfigError, simulate_survey

__all__ = ["CLASS_MODELS", "SimulationConfigError", "load_simulated", "simulate_survey"]


def load_simulated(cfg):
    """Ingest loader: the built-in survey simulator configured by ``cfg.source``.

    Parameters
    ----------
    cfg : omegaconf.DictConfig
        The whole pipeline config (uses ``source``, ``data_seed``, ``task.classes`` and
        the band names of ``task.band_wavelengths``). ``source.seed``, when set, replaces
        the data seed: an independent sample from the same simulator (e.g. the
        calibration_check stage's large test set).
    """
    seed = cfg.source.get("seed")
    return simulate_survey(cfg.source, seed=int(cfg.data_seed if seed is None else seed), classes=list(cfg.task.classes),
                           bands=list(cfg.task.band_wavelengths))
