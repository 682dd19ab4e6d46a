"""The transits task's steps of the generic stages (:mod:`deeprubin.tasks`).

``ingest``: the simulated Kepler/TESS survey (light curves, objects, truth ephemerides);
``preprocess``: clean, flatten, segment and label every light curve (light curves that
cannot be used are skipped and counted; ephemerides that cannot be right and times outside
the mission's time system stop the step, naming the file, object and field); ``train``: the
segment classifier (Lightning, MLflow run); ``evaluate``: segment and star-level metrics,
injection-recovery and the comparison with BLS at equal false-positive rate.

One module per step (``steps.ingest`` ...), each with a function of the step's name, so that a
stage depends only on the code of its own step (:mod:`deeprubin.core.deps`).
"""

#: The train summary's key a Hydra sweeper optimises.
OBJECTIVE = "val_pr_auc"

