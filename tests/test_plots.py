"""Figure functions of the evaluation report: tiny synthetic inputs, no display.

Every test runs with warnings escalated to errors, so a figure that emits a
RuntimeWarning (all-NaN slice, division by zero, log of a negative flux) fails.
"""
from __future__ import annotations

import matplotlib
import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure
from matplotlib.text import Text

from deeprubin.tasks.transients import plots
from deeprubin.core import plot_style as style
from deeprubin.core.io import save_figure

pytestmark = pytest.mark.filterwarnings("error")

CLASSES = ["SN Ia", "SN II", "SLSN", "TDE"]  # TDE never has objects below
BANDS = ["g", "r"]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


# ----------------------------------------------------------------------------- helpers
def _grid(n_time: int = 25) -> np.ndarray:
    return np.linspace(-20.0, 60.0, n_time)


def _gp_set(n_obj: int = 9, seed: int = 0):
    """Peak-normalised GP means (N, B, T), stds, flux scales and labels."""
    rng = np.random.default_rng(seed)
    grid = _grid()
    labels = np.array([CLASSES[i % 3] for i in range(n_obj)])
    mean = np.empty((n_obj, len(BANDS), grid.size))
    for n in range(n_obj):
        for b in range(len(BANDS)):
            tau = 15.0 + 10.0 * b + 5.0 * (n % 3)
            mean[n, b] = np.where(grid < 0, np.exp(-(grid / 6.0) ** 2), np.exp(-grid / tau))
    mean += rng.normal(0.0, 0.01, mean.shape)
    std = np.full_like(mean, 0.05)
    scale = rng.uniform(50.0, 300.0, n_obj)
    return grid, mean, std, scale, labels


def _observations(object_ids, t_ref, grid, mean, scale, seed: int = 1) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for i, oid in enumerate(object_ids):
        for b, band in enumerate(BANDS):
            dt = np.sort(rng.uniform(grid.min() - 15, grid.max() + 15, 12))  # some outside
            flux = np.interp(dt, grid, mean[i, b]) * scale[i]
            err = np.full(dt.size, 0.05 * scale[i])
            rows.append(pd.DataFrame({"object_id": oid, "time": dt + t_ref[i], "band": band,
                                      "flux": flux + rng.normal(0, 1, dt.size) * err,
                                      "flux_err": err}))
    return pd.concat(rows, ignore_index=True)


def _all_axes_labelled(fig: Figure) -> list:
    """Data axes (not colourbars) of a figure."""
    return [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]


def _has_legend(fig: Figure) -> bool:
    return bool(fig.legends) or any(ax.get_legend() is not None for ax in fig.axes)


def _legend_texts(fig: Figure) -> list[str]:
    legends = list(fig.legends) + [ax.get_legend() for ax in fig.axes if ax.get_legend()]
    return [t.get_text() for leg in legends for t in leg.get_texts()]


def _check_fonts(fig: Figure, minimum: float = 10.0) -> None:
    """Every visible text >= ``minimum`` pt (call after saving: the save drew the ticks)."""
    for text in fig.findobj(Text):
        if text.get_text().strip() and text.get_visible():
            assert text.get_fontsize() >= minimum, (text.get_text(), text.get_fontsize())


def _save(fig: Figure, tmp_path, name: str) -> None:
    path = save_figure(fig, tmp_path / f"{name}.png")
    assert path.read_bytes()[:8] == PNG_MAGIC
    assert path.stat().st_size > 5_000


# ----------------------------------------------------------------------------- style
def test_style_colours_are_fixed_and_deterministic():
    colors = style.band_colors(["g", "r", "i", "w"])
    assert colors["g"] == style.OKABE_ITO["bluish_green"]
    assert colors["r"] == style.OKABE_ITO["vermillion"]
    assert colors["w"] not in (colors["g"], colors["r"])
    assert style.class_colors(CLASSES) == style.class_colors(list(CLASSES))
    assert len(set(style.class_colors(CLASSES).values())) == len(CLASSES)
    assert style.class_colors(["a", "b"])["a"] == style.class_colors(["a", "c"])["a"]


def test_style_context_restores_rcparams():
    before = matplotlib.rcParams["font.size"], matplotlib.rcParams["axes.spines.top"]
    with style.figure_style():
        assert matplotlib.rcParams["font.size"] == style.RC_PARAMS["font.size"]
    grid, mean, _, _, labels = _gp_set()
    plots.plot_mean_lightcurves(grid, mean, BANDS, labels, CLASSES)
    assert (matplotlib.rcParams["font.size"], matplotlib.rcParams["axes.spines.top"]) == before


# ----------------------------------------------------------------------------- EDA
def test_class_distribution(tmp_path):
    labels = pd.DataFrame({
        "label": ["SN Ia"] * 5 + ["SN II"] * 3 + ["SLSN"],
        "split": ["train", "train", "val", "test", "train", "train", "test", "val", "train"],
    })
    fig = plots.plot_class_distribution(labels, CLASSES)
    assert isinstance(fig, Figure)
    ax = _all_axes_labelled(fig)[0]
    assert ax.get_ylabel() == "Number of objects"
    assert ax.get_xlabel()
    assert [t.get_text() for t in ax.get_xticklabels()] == CLASSES
    heights = sorted(p.get_height() for p in ax.patches)
    assert sum(heights) == len(labels)
    assert _has_legend(fig)
    assert any(t.startswith("train") for t in _legend_texts(fig))
    _save(fig, tmp_path, "class_distribution")
    _check_fonts(fig)


def test_class_distribution_missing_split_and_unknown_label(tmp_path):
    labels = pd.DataFrame({"label": ["SN Ia", "weird"], "split": ["train", "train"]})
    fig = plots.plot_class_distribution(labels, CLASSES)
    ticks = [t.get_text() for t in fig.axes[0].get_xticklabels()]
    assert ticks == CLASSES + ["weird"]
    _save(fig, tmp_path, "class_distribution_degenerate")


def test_mean_lightcurves(tmp_path):
    grid, mean, _, _, labels = _gp_set()
    fig = plots.plot_mean_lightcurves(grid, mean, BANDS, labels, CLASSES)
    axes = _all_axes_labelled(fig)
    assert len(axes) == len(BANDS)
    assert all(ax.get_xlabel() == "Time relative to peak [days]" for ax in axes)
    assert axes[0].get_ylabel() == "Normalised flux (GP mean)"
    assert axes[0].get_shared_y_axes().joined(axes[0], axes[1])
    # One median line per populated class and band.
    assert sum(len(ax.get_lines()) for ax in axes) >= 3 * len(BANDS)
    texts = _legend_texts(fig)
    assert "TDE (N=0)" in texts and any(t.startswith("SN Ia") for t in texts)
    _save(fig, tmp_path, "mean_lightcurves")
    _check_fonts(fig)


def test_color_evolution(tmp_path):
    grid, mean, _, scale, labels = _gp_set()
    fig = plots.plot_color_evolution(grid, mean, scale, BANDS, labels, CLASSES)
    ax = _all_axes_labelled(fig)[0]
    assert ax.get_xlabel() == "Time relative to peak [days]"
    assert ax.get_ylabel() == "g - r [mag]"
    assert _has_legend(fig)
    _save(fig, tmp_path, "color_evolution")
    _check_fonts(fig)


def test_color_evolution_values_match_definition():
    grid = np.array([-1.0, 0.0, 1.0])
    mean = np.array([[[1.0, 2.0, -1.0], [1.0, 1.0, 1.0]]])  # one object, g and r
    scale = np.array([10.0])
    fig = plots.plot_color_evolution(grid, mean, scale, BANDS, np.array(["SN Ia"]), ["SN Ia"])
    line = fig.axes[0].get_lines()[0]
    y = np.asarray(line.get_ydata(), dtype=float)
    np.testing.assert_allclose(y[:2], [0.0, -2.5 * np.log10(2.0)])
    assert np.isnan(y[2])  # negative g flux -> no colour


def test_color_evolution_negative_fluxes_and_empty_classes(tmp_path):
    grid, mean, _, scale, labels = _gp_set()
    mean[labels == "SN II", 0] = -np.abs(mean[labels == "SN II", 0])  # no valid colour anywhere
    mean[labels == "SN Ia", 0, :5] = -0.3  # partly invalid
    fig = plots.plot_color_evolution(grid, mean, scale, BANDS, labels, CLASSES)
    texts = _legend_texts(fig)
    assert any("SN II" in t and "no valid" in t for t in texts)
    assert "TDE (N=0)" in texts
    _save(fig, tmp_path, "color_evolution_degenerate")


def test_color_evolution_unknown_band():
    grid, mean, _, scale, labels = _gp_set()
    with pytest.raises(ValueError, match="band 'i'"):
        plots.plot_color_evolution(grid, mean, scale, BANDS, labels, CLASSES, blue="i")


# ----------------------------------------------------------------------------- classification
@pytest.mark.parametrize("normalize", [False, True])
def test_confusion_matrix(tmp_path, normalize):
    y_true = ["SN Ia", "SN Ia", "SN II", "SN II", "SLSN", "SN Ia"]
    y_pred = ["SN Ia", "SN II", "SN II", "SN II", "SN Ia", "SN Ia"]
    fig = plots.plot_confusion_matrix(y_true, y_pred, CLASSES, normalize=normalize)  # TDE row empty
    ax = _all_axes_labelled(fig)[0]
    assert ax.get_xlabel() == "Predicted class"
    assert ax.get_ylabel() == "True class"
    cbar = [a for a in fig.axes if a.get_label() == "<colorbar>"][0]
    assert cbar.get_ylabel() == ("Fraction of true class" if normalize else "Objects")
    assert ("row-normalised" in ax.get_title()) == normalize
    assert ("counts" in ax.get_title()) != normalize
    cells = [t.get_text() for t in ax.texts]
    assert len(cells) == len(CLASSES) ** 2
    image = ax.get_images()[0].get_array()
    assert np.all(np.isfinite(image))
    if normalize:
        assert cells[0] == "0.67" and cells[-1] == "0.00"
        np.testing.assert_allclose(np.asarray(image).sum(axis=1), [1, 1, 1, 0])
    else:
        assert cells[0] == "2" and cells[-1] == "0"
    _save(fig, tmp_path, f"confusion_{normalize}")
    _check_fonts(fig)


def test_sample_predictions(tmp_path):
    grid, mean, std, scale, labels = _gp_set(n_obj=3)
    object_ids = ["ZTF1", "ZTF2", "ZTF3"]
    t_ref = np.array([58000.0, 58500.0, 59000.0])
    obs = _observations(object_ids + ["other"], np.append(t_ref, 1.0), grid,
                        np.concatenate([mean, mean[:1]]), np.append(scale, 1.0))
    probs = np.array([[0.7, 0.2, 0.1, 0.0], [0.1, 0.1, 0.8, 0.0], [0.25, 0.25, 0.25, 0.25]])
    fig = plots.plot_sample_predictions(obs, grid, mean, std, scale, t_ref, BANDS, object_ids,
                                        labels, probs, CLASSES)
    axes = np.array(_all_axes_labelled(fig)).reshape(3, 2)
    assert axes[-1, 0].get_xlabel() == "Time relative to peak [days]"
    assert all(ax.get_ylabel() == "Flux [µJy]" for ax in axes[:, 0])
    assert axes[-1, 1].get_xlabel() == "Predicted probability"
    assert axes[0, 1].get_xlim() == (0.0, 1.0)
    for i, oid in enumerate(object_ids):
        title = axes[i, 0].get_title(loc="left")
        assert oid in title and labels[i] in title
        # Only observations inside the grid window are drawn.
        for container in axes[i, 0].containers:
            x = np.asarray(container.lines[0].get_xdata(), dtype=float)
            assert x.min() >= grid.min() and x.max() <= grid.max()
        # The true-class bar is highlighted.
        bars = axes[i, 1].patches
        true_idx = CLASSES.index(labels[i])
        colors = [tuple(b.get_facecolor()) for b in bars]
        assert colors.count(colors[true_idx]) == 1
    texts = _legend_texts(fig)
    assert "g band" in texts and "r band" in texts
    _save(fig, tmp_path, "sample_predictions")
    _check_fonts(fig)


def test_sample_predictions_object_without_observations(tmp_path):
    grid, mean, std, scale, labels = _gp_set(n_obj=1)
    empty = pd.DataFrame({"object_id": [], "time": [], "band": [], "flux": [], "flux_err": []})
    fig = plots.plot_sample_predictions(empty, grid, mean, std, scale, np.array([0.0]), BANDS,
                                        ["lonely"], labels, np.array([[1.0, 0.0, 0.0, 0.0]]),
                                        CLASSES)
    _save(fig, tmp_path, "sample_predictions_empty")


def test_sample_predictions_shape_mismatch():
    grid, mean, std, scale, labels = _gp_set(n_obj=2)
    with pytest.raises(ValueError, match="probabilities"):
        plots.plot_sample_predictions(pd.DataFrame(columns=["object_id", "time", "band", "flux",
                                                            "flux_err"]),
                                      grid, mean, std, scale, np.zeros(2), BANDS, ["a", "b"],
                                      labels, np.ones((2, 3)) / 3, CLASSES)


def test_training_curves(tmp_path):
    epochs = np.arange(1, 11)
    history = pd.DataFrame({
        "epoch": epochs,
        "train_loss": 1.0 / epochs,
        "val_loss": 1.2 / epochs + 0.01 * epochs,
        "train_acc": 1 - 0.5 / epochs,
        "val_acc": 0.9 - 0.5 / epochs,
    })
    history.loc[3, ["val_loss", "val_acc"]] = np.nan
    fig = plots.plot_training_curves(history)
    loss_ax, acc_ax = _all_axes_labelled(fig)
    assert loss_ax.get_ylabel() == "Cross-entropy loss"
    assert acc_ax.get_ylabel() == "Accuracy"
    assert loss_ax.get_xlabel() == acc_ax.get_xlabel() == "Epoch"
    assert len(loss_ax.get_lines()) >= 2
    texts = _legend_texts(fig)
    assert "training" in texts and "validation" in texts
    _save(fig, tmp_path, "training_curves")
    _check_fonts(fig)


def test_training_curves_missing_validation(tmp_path):
    history = pd.DataFrame({"epoch": [0, 1, 2], "train_loss": [1.0, 0.8, 0.7],
                            "val_loss": np.nan, "train_acc": [0.3, 0.5, 0.6], "val_acc": np.nan})
    fig = plots.plot_training_curves(history)
    assert _legend_texts(fig) == ["training"]
    _save(fig, tmp_path, "training_curves_no_val")


def test_training_curves_all_nan(tmp_path):
    history = pd.DataFrame({"epoch": [0, 1], "train_loss": np.nan, "val_loss": np.nan,
                            "train_acc": np.nan, "val_acc": np.nan})
    fig = plots.plot_training_curves(history)
    assert any(t.get_text() == "no data" for ax in fig.axes for t in ax.texts)
    _save(fig, tmp_path, "training_curves_empty")
