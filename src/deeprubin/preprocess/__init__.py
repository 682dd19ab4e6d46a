"""Preprocessing of canonical light curves into fixed-size model inputs.

:mod:`deeprubin.preprocess.gp` fits one Gaussian process per object over
(time, wavelength), batched through GPyTorch, and evaluates its posterior on a
regular per-band time grid (:class:`~deeprubin.preprocess.gp.GPGrid`).
:mod:`deeprubin.preprocess.gp_model` holds the batched GPyTorch model and its
optimiser.
"""
