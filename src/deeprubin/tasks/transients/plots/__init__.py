"""Figures of the evaluation report: one function per figure, one shared style.

Each function takes plain numpy / pandas inputs and returns a
:class:`matplotlib.figure.Figure` (Agg canvas, no display needed); save it with
:func:`deeprubin.core.io.save_figure`.
"""
from ....core.plot_style import (BAND_COLORS, CLASS_PALETTE, RC_PARAMS, apply_style, band_color, band_colors,
                                 class_colors, figure_style, new_figure)
from .classification import plot_confusion_matrix, plot_sample_predictions, plot_training_curves
from .eda import plot_class_distribution, plot_color_evolution, plot_mean_lightcurves

__all__ = [
    "plot_class_distribution",
    "plot_mean_lightcurves",
    "plot_color_evolution",
    "plot_confusion_matrix",
    "plot_sample_predictions",
    "plot_training_curves",
    "figure_style",
    "apply_style",
    "new_figure",
    "band_color",
    "band_colors",
    "class_colors",
    "BAND_COLORS",
    "CLASS_PALETTE",
    "RC_PARAMS",
]
