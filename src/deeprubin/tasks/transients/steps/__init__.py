"""The transients task's steps of the generic stages (:mod:`deeprubin.tasks`).

``ingest``: the configured source -> validated ``lightcurves``/``objects`` tables;
``preprocess``: batched 2-D GP interpolation onto a regular grid; ``train``: the deep
classifier on the GP grid (Lightning, MLflow run); ``calibrate``: temperature scaling and
isotonic calibrators fitted on the validation split; ``evaluate``: test-set scores of the
calibrated classifier, with bootstrap intervals, tables and figures; ``predict``: the model
applied to any source (the predict entry point). Each reads the task's
view of the config (``tasks.transients`` over the shared keys) and writes under its paths.

One module per step (``steps.ingest`` ...), each with a function of the step's name, so that a
stage depends only on the code of its own step (:mod:`deeprubin.core.deps`).
"""

#: The train summary's key a Hydra sweeper optimises (``python -m deeprubin.stages.train -m ...``).
OBJECTIVE = "val_macro_f1"

