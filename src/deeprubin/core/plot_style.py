"""One matplotlib style for every figure of the evaluation report.

All figure functions build their figure inside :func:`figure_style` (through
:func:`new_figure`), so fonts, line widths and colours are the same everywhere
without touching the global ``rcParams`` of the caller.

Colours come from colour-blind-safe palettes: the Okabe & Ito (2008) palette,
extended by Paul Tol's "muted" palette when more than eight classes are shown.
Bands have a fixed colour (``g`` bluish green, ``r`` vermillion, ...) and a fixed
marker, so a band looks the same in every figure; classes take colours in the order
of the ``classes`` list, so a class keeps its colour across figures of one run.

Figures are created as :class:`matplotlib.figure.Figure` with an Agg canvas,
not through ``pyplot``: nothing needs a display and nothing is registered with
pyplot's figure manager (``deeprubin.core.io.save_figure`` closes them anyway).
"""
from __future__ import annotations

import contextlib
import os
import sys
from typing import Iterator, Mapping, Sequence

import matplotlib

# Headless pipeline: pick Agg unless the user already chose a backend.
if "matplotlib.pyplot" not in sys.modules and not os.environ.get("MPLBACKEND"):
    matplotlib.use("Agg")

from cycler import cycler  # noqa: E402  (matplotlib dependency)
from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

#: Okabe & Ito colour-blind-safe palette.
OKABE_ITO = {
    "black": "#000000",
    "orange": "#E69F00",
    "sky_blue": "#56B4E9",
    "bluish_green": "#009E73",
    "yellow": "#F0E442",
    "blue": "#0072B2",
    "vermillion": "#D55E00",
    "reddish_purple": "#CC79A7",
}

#: Paul Tol's "muted" palette (colour-blind safe), used after Okabe-Ito runs out.
TOL_MUTED = (
    "#332288", "#88CCEE", "#44AA99", "#117733", "#999933",
    "#DDCC77", "#CC6677", "#882255", "#AA4499",
)

#: Class colours, assigned in class order. Yellow comes last (weak on white).
CLASS_PALETTE: tuple[str, ...] = (
    OKABE_ITO["blue"],
    OKABE_ITO["orange"],
    OKABE_ITO["bluish_green"],
    OKABE_ITO["vermillion"],
    OKABE_ITO["reddish_purple"],
    OKABE_ITO["sky_blue"],
    OKABE_ITO["black"],
    OKABE_ITO["yellow"],
) + TOL_MUTED

#: Fixed band colours (blue to red with wavelength where possible).
BAND_COLORS: dict[str, str] = {
    "u": OKABE_ITO["blue"],
    "g": OKABE_ITO["bluish_green"],
    "r": OKABE_ITO["vermillion"],
    "i": OKABE_ITO["reddish_purple"],
    "z": OKABE_ITO["black"],
    "y": OKABE_ITO["orange"],
}

#: Fixed band markers, so bands stay distinguishable in greyscale too.
BAND_MARKERS: dict[str, str] = {"u": "v", "g": "o", "r": "s", "i": "^", "z": "D", "y": "P"}
_FALLBACK_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "<", ">")

#: Colours for the data splits in the class-distribution figure.
SPLIT_COLORS: dict[str, str] = {
    "train": OKABE_ITO["blue"],
    "val": OKABE_ITO["orange"],
    "test": OKABE_ITO["bluish_green"],
}

#: Shared colours for "train" / "validation" curves and highlighted bars.
TRAIN_COLOR = OKABE_ITO["blue"]
VAL_COLOR = OKABE_ITO["vermillion"]
HIGHLIGHT_COLOR = OKABE_ITO["blue"]
NEUTRAL_COLOR = "#BBBBBB"

#: Sequential colour map for matrices (perceptually uniform, colour-blind safe).
MATRIX_CMAP = "Blues"

#: The shared rcParams. Every text element is >= 10 pt.
RC_PARAMS: dict[str, object] = {
    "font.family": "sans-serif",
    "font.sans-serif": ["DejaVu Sans", "Arial", "Helvetica"],
    "font.size": 11,
    "axes.titlesize": 12,
    "axes.labelsize": 11,
    "xtick.labelsize": 10,
    "ytick.labelsize": 10,
    "legend.fontsize": 10,
    "legend.title_fontsize": 10,
    "figure.titlesize": 13,
    "mathtext.default": "regular",
    "axes.prop_cycle": cycler(color=CLASS_PALETTE),
    "axes.grid": True,
    "axes.axisbelow": True,
    "grid.color": "#B0B0B0",
    "grid.alpha": 0.4,
    "grid.linewidth": 0.6,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.linewidth": 0.8,
    "lines.linewidth": 1.8,
    "lines.markersize": 5,
    "errorbar.capsize": 0,
    "legend.frameon": False,
    "legend.handlelength": 1.8,
    "image.cmap": "viridis",
    "figure.dpi": 100,
    "figure.facecolor": "white",
    "savefig.dpi": 150,
    "savefig.facecolor": "white",
    "savefig.bbox": "tight",
    "figure.constrained_layout.use": True,
}


@contextlib.contextmanager
def figure_style(overrides: Mapping[str, object] | None = None) -> Iterator[None]:
    """Apply the shared rcParams inside a ``with`` block (restored on exit)."""
    params = dict(RC_PARAMS)
    if overrides:
        params.update(overrides)
    with matplotlib.rc_context(params):
        yield


def apply_style() -> None:
    """Apply the shared rcParams globally (for notebooks and ad-hoc scripts)."""
    matplotlib.rcParams.update(RC_PARAMS)


def new_figure(figsize: tuple[float, float], **kwargs) -> Figure:
    """A constrained-layout :class:`Figure` with an Agg canvas (no pyplot, no display).

    Call it, and draw on the figure, inside :func:`figure_style`.
    """
    kwargs.setdefault("layout", "constrained")
    fig = Figure(figsize=figsize, **kwargs)
    FigureCanvasAgg(fig)
    return fig


def band_color(band: str, bands: Sequence[str] = ()) -> str:
    """Fixed colour of one band; unknown bands take palette colours by position."""
    band = str(band)
    if band in BAND_COLORS:
        return BAND_COLORS[band]
    unknown = [b for b in map(str, bands) if b not in BAND_COLORS]
    pos = unknown.index(band) if band in unknown else sum(map(ord, band))
    spare = [c for c in CLASS_PALETTE if c not in BAND_COLORS.values()]
    return spare[pos % len(spare)]


def band_colors(bands: Sequence[str]) -> dict[str, str]:
    """``{band: colour}`` for the given bands (``g`` green-ish, ``r`` red-ish)."""
    return {str(b): band_color(b, bands) for b in bands}


def band_marker(band: str, bands: Sequence[str] = ()) -> str:
    band = str(band)
    if band in BAND_MARKERS:
        return BAND_MARKERS[band]
    names = list(map(str, bands))
    pos = names.index(band) if band in names else 0
    return _FALLBACK_MARKERS[pos % len(_FALLBACK_MARKERS)]


def class_colors(classes: Sequence[str]) -> dict[str, str]:
    """``{class: colour}``, deterministic by class order (cycles past 17 classes)."""
    return {str(c): CLASS_PALETTE[i % len(CLASS_PALETTE)] for i, c in enumerate(classes)}


def split_color(split: str, position: int = 0) -> str:
    if split in SPLIT_COLORS:
        return SPLIT_COLORS[split]
    spare = [c for c in CLASS_PALETTE if c not in SPLIT_COLORS.values()]
    return spare[position % len(spare)]
