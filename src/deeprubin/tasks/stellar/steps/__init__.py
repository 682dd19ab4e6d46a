"""The stellar task's steps of the generic stages (:mod:`deeprubin.tasks`).

``ingest``: the simulated spectroscopic survey (spectra, their stars' parameters and synthetic
photometry; :mod:`..simulate`) and, when the file is there, the real Kepler stars (one row per
star, :func:`..readers.read_kepler_stellar`); ``preprocess``: spectra to the rest frame, a
common log-wavelength grid and the continuum, with a mask channel (:mod:`..preprocess`), and
the stars' SEDs (:mod:`..sed`); ``train``: the multi-task spectral network (class and Teff,
logg, [Fe/H] with a predicted sigma each); ``calibrate``: its class probabilities;
``evaluate``: parameters, classes and the coverage of the sigmas on the test stars, next to the
classical models of the ``stellar_sed`` stage and its real Kepler block; ``predict``: a
checkpoint applied to spectra files.

One module per step, each with a function of the step's name (:mod:`deeprubin.core.deps`).
"""

#: The train summary's key a Hydra sweeper optimises (sweepers maximise): minus the best
#: validation loss (cross-entropy plus the parameters' Gaussian negative log-likelihood).
OBJECTIVE = "neg_val_loss"
