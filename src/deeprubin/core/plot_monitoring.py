"""Figures of drift monitoring (:mod:`deeprubin.core.monitoring`): one per drift family.

Each function takes its family's entry of a :func:`deeprubin.core.monitoring.monitor_window`
report and returns a figure even when the family was skipped (the figure then says why), so a
stage's figure outputs always exist.
"""
from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from matplotlib.figure import Figure

from .plot_style import NEUTRAL_COLOR, OKABE_ITO, figure_style, new_figure
from .reliability import ece_from_bins, reliability_bins, top_label

#: Colours of the two sides, the same in every monitoring figure.
REFERENCE_COLOR = OKABE_ITO["blue"]
WINDOW_COLOR = OKABE_ITO["vermillion"]
#: Bar colours of a feature's PSI status (stable, moderate shift, major shift).
STATUS_COLORS = {"stable": NEUTRAL_COLOR, "moderate": OKABE_ITO["orange"], "major": OKABE_ITO["vermillion"]}


def _note(fig: Figure, title: str, text: str) -> Figure:
    ax = fig.add_subplot()
    ax.set_axis_off()
    ax.set_title(title)
    ax.text(0.5, 0.5, text, ha="center", va="center", wrap=True, transform=ax.transAxes, fontsize=11)
    return fig


def _names(report: Mapping) -> tuple[str, str]:
    names = report.get("names", {})
    return str(names.get("reference", "reference")), str(names.get("window", "window"))


def plot_feature_drift(report: Mapping, top_n: int) -> Figure:
    """The ``features`` family: for the ``top_n`` features (alerting ones first, then by PSI) the PSI
    against the warn/alert thresholds, the KS statistic, and the missing fraction of each side."""
    family = report["families"]["features"]
    settings = report["thresholds"]["features"]
    title = "Feature drift: window against the training features"
    with figure_style():
        if family.get("skipped"):
            return _note(new_figure((8.0, 3.0)), title, f"Not compared: {family['skipped']}")
        per = family["per_feature"]
        alerting = list(family["crossed"])
        rest = sorted((c for c in per if c not in alerting),
                      key=lambda c: -(per[c]["psi"] if per[c]["psi"] is not None else -1.0))
        shown = (alerting + rest)[:top_n][::-1]   # barh draws bottom-up: the first on top
        y = np.arange(len(shown))
        fig = new_figure((13.0, 1.6 + 0.3 * len(shown)))
        ax_psi, ax_ks, ax_miss = fig.subplots(1, 3, sharey=True, gridspec_kw={"width_ratios": [1.3, 1.0, 1.0]})
        psi = [per[c]["psi"] if per[c]["psi"] is not None else 0.0 for c in shown]
        ax_psi.barh(y, psi, color=[STATUS_COLORS.get(per[c]["psi_status"], NEUTRAL_COLOR) for c in shown])
        ax_psi.axvline(settings["psi_warn"], color=OKABE_ITO["orange"], linestyle="--",
                       label=f"moderate shift ({settings['psi_warn']})")
        ax_psi.axvline(settings["psi_alert"], color=OKABE_ITO["vermillion"], linestyle="--",
                       label=f"major shift: alert ({settings['psi_alert']})")
        ax_psi.set_yticks(y, [f"{c} *" if c in alerting else c for c in shown])
        ax_psi.set_xlabel("PSI (dimensionless)")
        ks = [per[c]["ks_statistic"] if per[c]["ks_statistic"] is not None else 0.0 for c in shown]
        significant = [per[c]["ks_p_adjusted"] is not None and per[c]["ks_p_adjusted"] < settings["ks_alpha"]
                       for c in shown]
        ax_ks.barh(y, ks, color=[OKABE_ITO["vermillion"] if s else NEUTRAL_COLOR for s in significant])
        ax_ks.axvline(settings["ks_min_statistic"], color=OKABE_ITO["black"], linestyle=":",
                      label=f"KS: alert at D >= {settings['ks_min_statistic']} with adjusted p < "
                            f"{settings['ks_alpha']} (red bars)")
        ax_ks.set_xlabel("KS statistic D (dimensionless)")
        ref_name, win_name = _names(report)
        ax_miss.scatter([per[c]["missing_reference"] for c in shown], y, marker="o", color=REFERENCE_COLOR,
                        label=f"reference ({ref_name})", zorder=3)
        ax_miss.scatter([per[c]["missing_window"] for c in shown], y, marker="s", color=WINDOW_COLOR,
                        label=f"window ({win_name})", zorder=3)
        ax_miss.set_xlim(-0.03, 1.03)
        ax_miss.set_xlabel("Missing fraction (NaN or infinite)")
        fig.legend(loc="outside lower center", ncols=3)
        fig.suptitle(f"{title}: {len(family['crossed'])} of {family['n_features']} features alert (* marked), "
                     f"{len(shown)} shown")
    return fig


def plot_class_fractions(report: Mapping) -> Figure:
    """The ``class_fractions`` family: the fraction of objects predicted as each class, reference and
    window side by side (classes past the per-class threshold marked)."""
    family = report["families"]["class_fractions"]
    title = "Predicted class fractions: window against reference"
    with figure_style():
        if family.get("skipped"):
            return _note(new_figure((8.0, 3.0)), title, f"Not compared: {family['skipped']}")
        classes = list(family["reference"])
        x = np.arange(len(classes))
        width = 0.4
        ref_name, win_name = _names(report)
        fig = new_figure((max(6.5, 0.9 * len(classes) + 2.5), 4.6))
        ax = fig.add_subplot()
        ax.bar(x - width / 2, [family["reference"][c] for c in classes], width * 0.95, color=REFERENCE_COLOR,
               label=f"reference: {ref_name} (N={family['n_reference']})")
        ax.bar(x + width / 2, [family["window"][c] for c in classes], width * 0.95, color=WINDOW_COLOR,
               label=f"window: {win_name} (N={family['n_window']})")
        ax.set_xticks(x, [f"{c} *" if c in family["crossed"] else c for c in classes],
                      rotation=30 if len(classes) > 6 else 0, ha="right" if len(classes) > 6 else "center")
        ax.set_xlabel("Predicted class (arg-max of the probabilities; * past the per-class threshold)")
        ax.set_ylabel("Fraction of objects")
        fig.legend(loc="outside lower center", ncols=2)
        state = "ALERT" if family["alert"] else "no alert"
        ax.set_title(f"{title} ({state}): total variation {family['total_variation']:.3f}, "
                     f"PSI {family['psi']:.3f}")
    return fig


def plot_calibration_drift(report: Mapping, reference: tuple[np.ndarray, np.ndarray] | None,
                           window: tuple[np.ndarray, np.ndarray] | None) -> Figure:
    """The ``calibration`` family: top-label reliability of the labelled reference and window objects
    (``(probabilities, label indices)`` each), with the number of objects per bin below."""
    family = report["families"]["calibration"]
    title = "Calibration drift: top-label reliability, window against reference"
    with figure_style():
        if family.get("skipped") or reference is None or window is None:
            return _note(new_figure((8.0, 3.0)), title,
                         f"Not compared: {family.get('skipped') or 'no labelled objects given'}")
        n_bins, scheme = int(family["n_bins"]), str(family["scheme"])
        fig = new_figure((6.4, 6.6))
        top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=[3, 1.2])
        top.plot([0, 1], [0, 1], color=NEUTRAL_COLOR, linestyle="--", label="perfect calibration")
        ref_name, win_name = _names(report)
        sides = ((f"reference: {ref_name}", reference, REFERENCE_COLOR, "o"),
                 (f"window: {win_name}", window, WINDOW_COLOR, "s"))
        for name, (p, y), color, marker in sides:
            bins = reliability_bins(*top_label(p, y), n_bins=n_bins, scheme=scheme)
            top.plot(bins["confidence"], bins["accuracy"], marker=marker, color=color,
                     label=f"{name} (N={len(y)}, ECE {ece_from_bins(bins):.3f})")
            bottom.plot(bins["confidence"], bins["count"], marker=marker, color=color)
        top.set_xlim(0, 1.02)
        top.set_ylim(0, 1.02)
        top.set_ylabel("Fraction correct in bin")
        floor = family.get("window_floor")
        state = "ALERT" if family["alert"] else "no alert"
        top.set_title(f"Top-label reliability ({n_bins} equal-{scheme} bins, {state})"
                      + (f"\nwindow noise floor: ECE p95 {floor['p95']:.3f}" if floor else ""))
        bottom.set_yscale("log")
        bottom.set_xlabel("Mean predicted probability of the predicted class (confidence)")
        bottom.set_ylabel("Objects")
        fig.legend(loc="outside lower center", ncols=1)
    return fig


def plot_performance(report: Mapping) -> Figure:
    """The ``performance`` family: macro-F1 and accuracy, and each class's F1, reference and window."""
    family = report["families"]["performance"]
    title = "Performance on labelled feedback: window against reference"
    with figure_style():
        if family.get("skipped"):
            return _note(new_figure((8.0, 3.0)), title, f"Not compared: {family['skipped']}")
        labels = ["macro-F1", "accuracy"] + [f"F1 {c}" for c in family["per_class_f1"]]
        ref = [family["reference"]["macro_f1"], family["reference"]["accuracy"]] + \
              [v["reference"] for v in family["per_class_f1"].values()]
        win = [family["window"]["macro_f1"], family["window"]["accuracy"]] + \
              [v["window"] for v in family["per_class_f1"].values()]
        x = np.arange(len(labels))
        width = 0.4
        ref_name, win_name = _names(report)
        fig = new_figure((max(6.5, 0.8 * len(labels) + 2.5), 4.6))
        ax = fig.add_subplot()
        ax.bar(x - width / 2, ref, width * 0.95, color=REFERENCE_COLOR,
               label=f"reference: {ref_name} (N={family['n_labelled_reference']})")
        ax.bar(x + width / 2, win, width * 0.95, color=WINDOW_COLOR,
               label=f"window: {win_name} (N={family['n_labelled_window']})")
        ax.set_xticks(x, labels, rotation=30, ha="right")
        ax.set_ylim(0, 1.05)
        ax.set_ylabel("Score (0-1)")
        fig.legend(loc="outside lower center", ncols=2)
        state = "ALERT" if family["alert"] else "no alert"
        ax.set_title(f"{title} ({state})")
    return fig


__all__ = ["plot_calibration_drift", "plot_class_fractions", "plot_feature_drift", "plot_performance"]
