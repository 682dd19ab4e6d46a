"""Preprocessing of canonical light curves into fixed-size model inputs.

:mod:`deeprubin.tasks.transients.preprocess.gp` fits one Gaussian process per object over
(time, wavelength), batched through GPyTorch, and evaluates its posterior on a
regular per-band time grid (:class:`~deeprubin.tasks.transients.preprocess.gp.GPGrid`).
:mod:`deeprubin.tasks.transients.preprocess.gp_model` holds the batched GPyTorch model and its
optimiser.
"""
