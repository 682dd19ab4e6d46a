"""How close is the simulator to the sky? Light-curve statistics of simulated and real samples.

SN Ia statistics follow the ZTF Bright Transient Survey (BTS; Fremling et al.
2020, ApJ 895, 32; Perley et al. 2020, ApJ 904, 35) definitions as used in its
public sample explorer (whose catalogue is ``bts.csv``):

* ``peakmag``: brightest magnitude of the light curve (either band);
* ``rise``: observer-frame days from the epoch at which the transient was half
  its peak flux (0.75 mag fainter than peak) to the peak, in the band of the
  peak; ``fade``: days from the peak until it is back at half the peak flux;
  ``duration = rise + fade`` (checked on ``bts.csv``: duration equals rise + fade
  for every object). Crossing epochs are linearly interpolated in magnitude
  between the two detections that bracket the half-flux level; no bracketing
  pair means the quantity is undefined (NaN), as for BTS objects without it.

Two further statistics are measured identically on both samples here:
``n_detections`` (detections in either band between 30 d before and 100 d after
peak) and ``g_minus_r_peak`` (g - r at the epoch of peak, each band linearly
interpolated between detections at most :data:`COLOUR_MAX_GAP_DAYS` apart that
bracket the peak).

Everything here is a pure function of tables; the DVC stage is
:mod:`deeprubin.stages.sim_vs_real`.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from deeprubin.core.schema import SchemaError
from deeprubin.sources.files import load_files

#: BTS brightness limit (peak magnitude) of the spectroscopically complete sample.
BTS_PEAK_MAG_LIMIT = 18.5
#: Half flux = 0.75 mag below peak (2.5 log10 2).
HALF_FLUX_MAG = 2.5 * np.log10(2.0)
#: Window (observer days relative to peak) in which detections are counted.
DETECTION_WINDOW_DAYS = (-30.0, 100.0)
#: Detections (days from the brightest) fitted by a parabola to locate maximum light.
PEAK_FIT_WINDOW_DAYS = (-8.0, 8.0)
#: Largest gap between the two detections used to interpolate a band at peak.
COLOUR_MAX_GAP_DAYS = 10.0
#: SN Ia statistics compared, in report order.
SNIA_STATISTICS = ("peakmag", "rise", "fade", "duration", "n_detections", "g_minus_r_peak")


def _crossing(t: np.ndarray, m: np.ndarray, level: float, k: int, direction: int) -> float:
    """Time at which ``m`` (sorted by ``t``) last/first crosses ``level`` before/after index ``k``.

    ``direction = -1`` searches backwards from the peak (rise), ``+1`` forwards (fade).
    Linear interpolation in magnitude between the bracketing points; NaN when the
    light curve never reaches ``level`` on that side.
    """
    idx = range(k - 1, -1, -1) if direction < 0 else range(k + 1, len(t))
    prev = k
    for i in idx:
        if m[i] >= level:
            # interpolate between point prev (brighter than level) and i (fainter)
            frac = (level - m[prev]) / (m[i] - m[prev]) if m[i] != m[prev] else 0.0
            return float(t[prev] + frac * (t[i] - t[prev]))
        prev = i
    return float("nan")


def _band_at(t: np.ndarray, m: np.ndarray, t0: float) -> float:
    """Magnitude interpolated at ``t0`` between bracketing points <= COLOUR_MAX_GAP_DAYS apart."""
    if len(t) == 0:
        return float("nan")
    exact = np.flatnonzero(t == t0)
    if len(exact):
        return float(m[exact[0]])
    before, after = np.flatnonzero(t < t0), np.flatnonzero(t > t0)
    if not len(before) or not len(after):
        return float("nan")
    i, j = before[-1], after[0]
    if t[j] - t[i] > COLOUR_MAX_GAP_DAYS:
        return float("nan")
    return float(m[i] + (m[j] - m[i]) * (t0 - t[i]) / (t[j] - t[i]))


def _peak_vertex(t: np.ndarray, m: np.ndarray, k: int) -> tuple[float, float]:
    """Time and magnitude of maximum light from a parabola through the detections within
    :data:`PEAK_FIT_WINDOW_DAYS` of the brightest one (index ``k``).

    The vertex may move at most half-way to the neighbouring detections (the
    maximum lies between them; an asymmetric light curve would otherwise drag a
    parabola's vertex towards its slower side). The brightest detection itself is
    used when it has no neighbour on each side in the window, fewer than 3 points
    are there, or the parabola opens downwards.
    """
    lo, hi = PEAK_FIT_WINDOW_DAYS
    sel = (t >= t[k] + lo) & (t <= t[k] + hi)
    if 0 < k < len(t) - 1 and sel.sum() >= 3 and np.ptp(t[sel]) > 0:
        a, b, c = np.polyfit(t[sel] - t[k], m[sel], 2)
        if a > 0:
            x = float(np.clip(-b / (2 * a), -(t[k] - t[k - 1]) / 2, (t[k + 1] - t[k]) / 2))
            return float(t[k] + x), float(min(a * x * x + b * x + c, m[k]))
    return float(t[k]), float(m[k])


def measure_transient(time: np.ndarray, mag: np.ndarray, band: np.ndarray) -> dict[str, float]:
    """BTS-style statistics of one transient's detections.

    Parameters
    ----------
    time : ndarray, shape (n,)
        Detection epochs, days (MJD).
    mag : ndarray, shape (n,)
        Detected AB magnitudes (non-detections must already be removed).
    band : ndarray of str, shape (n,)
        ``"g"`` or ``"r"``.

    Returns
    -------
    dict
        ``peakmag`` (mag), ``peak_band``, ``peak_time`` (MJD), ``rise``, ``fade``,
        ``duration`` (days), ``n_detections`` and ``g_minus_r_peak`` (mag); NaN
        where undefined (see the module docstring).
    """
    time, mag, band = np.asarray(time, float), np.asarray(mag, float), np.asarray(band).astype(str)
    ok = np.isfinite(time) & np.isfinite(mag)
    time, mag, band = time[ok], mag[ok], band[ok]
    nan = float("nan")
    if len(time) == 0:
        return {"peakmag": nan, "peak_band": "", "peak_time": nan, "rise": nan, "fade": nan,
                "duration": nan, "n_detections": 0.0, "g_minus_r_peak": nan}
    best = int(np.argmin(mag))
    peak_band, t_peak, peak = band[best], time[best], mag[best]
    sel = band == peak_band
    order = np.argsort(time[sel], kind="stable")
    t, m = time[sel][order], mag[sel][order]
    k = int(np.flatnonzero(t == t_peak)[0])
    t_max, m_max = _peak_vertex(t, m, k)
    level = m_max + HALF_FLUX_MAG
    rise = t_max - _crossing(t, m, level, k, -1)
    fade = _crossing(t, m, level, k, +1) - t_max
    lo, hi = DETECTION_WINDOW_DAYS
    n_det = float(np.sum((time >= t_max + lo) & (time <= t_max + hi)))
    colour = {}
    for b in ("g", "r"):
        s = band == b
        o = np.argsort(time[s], kind="stable")
        colour[b] = _band_at(time[s][o], mag[s][o], t_max)
    return {"peakmag": float(peak), "peak_band": str(peak_band), "peak_time": float(t_max),
            "rise": float(rise), "fade": float(fade), "duration": float(rise + fade),
            "n_detections": n_det, "g_minus_r_peak": colour["g"] - colour["r"]}


def measure_lightcurves(lightcurves: pd.DataFrame) -> pd.DataFrame:
    """:func:`measure_transient` of every object of a canonical (detections-only) table.

    Rows with ``detected == False`` (when that column exists) or non-positive flux
    are ignored. Returns one row per object, indexed by ``object_id``.
    """
    lc = lightcurves
    if "detected" in lc.columns:
        lc = lc[lc["detected"].astype(bool)]
    lc = lc[np.isfinite(lc["mag"].to_numpy(dtype=float))]
    rows = {oid: measure_transient(g["time"].to_numpy(), g["mag"].to_numpy(), g["band"].to_numpy())
            for oid, g in lc.groupby("object_id", sort=True)}
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("object_id")


@dataclass(frozen=True)
class Comparison:
    """Two-sample KS comparison of one statistic."""

    name: str
    n_sim: int
    n_real: int
    ks_statistic: float
    p_value: float
    sim_median: float
    real_median: float

    def as_dict(self) -> dict:
        return {"n_sim": self.n_sim, "n_real": self.n_real, "ks_statistic": self.ks_statistic,
                "p_value": self.p_value, "sim_median": self.sim_median, "real_median": self.real_median}


def compare(name: str, sim: np.ndarray, real: np.ndarray) -> Comparison:
    """``scipy.stats.ks_2samp`` of the finite values of two samples (NaN when either is empty)."""
    sim = np.asarray(sim, float)
    real = np.asarray(real, float)
    sim, real = sim[np.isfinite(sim)], real[np.isfinite(real)]
    if len(sim) == 0 or len(real) == 0:
        return Comparison(name, len(sim), len(real), float("nan"), float("nan"),
                          float(np.median(sim)) if len(sim) else float("nan"),
                          float(np.median(real)) if len(real) else float("nan"))
    result = stats.ks_2samp(sim, real)
    return Comparison(name, len(sim), len(real), float(result.statistic), float(result.pvalue),
                      float(np.median(sim)), float(np.median(real)))


def parse_sesar_table(path: str | Path) -> pd.DataFrame:
    """Sesar et al. (2010) Table 2 (machine-readable ``apj326724t2.txt``) -> type, period, A_g, A_r.

    Data rows are the lines that start with the integer star id and have the
    full set of columns: Num, Type, Per, then (A, mag, epoch, template id) for
    u, g, r, i, z.
    """
    path = Path(path)
    rows = []
    for line in path.read_text().splitlines():
        parts = line.split()
        if len(parts) == 23 and parts[0].isdigit():
            rows.append((parts[0], parts[1], float(parts[2]), float(parts[7]), float(parts[11])))
    if not rows:
        raise SchemaError(f"{path}: no data rows (expected 23 columns: Num Type Per Au umag ...)")
    return pd.DataFrame(rows, columns=["num", "type", "period", "amp_g", "amp_r"])


# --------------------------------------------------------------------------- samples

#: ``bts.csv`` quantities as the files source joins them into ``objects`` (the ``metadata.columns``
#: of ``conf/source/files_bts_snia.yaml``) -> the names of :data:`SNIA_STATISTICS`.
BTS_CATALOGUE_COLUMNS = {"peak_mag": "peakmag", "rise_days": "rise", "fade_days": "fade",
                         "duration_days": "duration", "redshift": "redshift"}


def load_real_bts(cfg, peak_mag_limit: float = BTS_PEAK_MAG_LIMIT) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Real BTS SNe Ia brighter than ``peak_mag_limit``: (measured statistics, catalogue values).

    Read by the shared ``files`` source (:func:`deeprubin.sources.files.load_files`), as
    ``source=files_bts_snia`` reads them for ingest and the real-sky check: one BTS reader.

    Parameters
    ----------
    cfg : DictConfig
        ``source`` (a ``files`` source config such as ``conf/source/files_bts_snia.yaml``, with
        the ``bts.csv`` quantities among its ``metadata.columns``: ``peak_mag``, ``rise_days``,
        ``fade_days``, ``duration_days`` and optionally ``redshift``) and ``task`` (bands, classes).

    Returns
    -------
    measured : pandas.DataFrame
        :func:`measure_transient` of each light curve with a catalogue ``peakmag <=
        peak_mag_limit``, over all its points (BTS light curves are alert detections).
    catalogue : pandas.DataFrame
        The same objects' catalogue values (peakmag, rise, fade, duration, redshift; BTS's
        ``-`` for undefined -> NaN), indexed by object id.

    Raises
    ------
    SchemaError
        From the files source (naming file, column and row), or when ``metadata.columns`` lacks
        one of the quantities.
    """
    lightcurves, objects = load_files(cfg)
    missing = [c for c in list(BTS_CATALOGUE_COLUMNS)[:4] if c not in objects.columns]
    if missing:
        raise SchemaError(f"source '{cfg.source.get('dataset')}': objects have no column(s) {missing}: add them to "
                          f"source.metadata.columns (bts.csv peakmag, rise, fade, duration)")
    catalogue = pd.DataFrame({new: pd.to_numeric(objects[old], errors="coerce").to_numpy()  # BTS writes '-'
                              for old, new in BTS_CATALOGUE_COLUMNS.items() if old in objects.columns},
                             index=pd.Index(objects["object_id"].astype(str), name="ZTFID"))
    catalogue = catalogue[catalogue["peakmag"] <= peak_mag_limit]
    if catalogue.empty:
        raise SchemaError(f"{cfg.source.get('path')}: no light curve of an object with a catalogue peak magnitude "
                          f"<= {peak_mag_limit}")
    chosen = lightcurves[lightcurves["object_id"].astype(str).isin(catalogue.index)]
    measured = measure_lightcurves(chosen.drop(columns=["detected"]))
    return measured, catalogue.loc[measured.index]


def simulate_bts_snia(source_cfg, *, n_objects: int, seed: int, bands, survey_overrides=None,
                      sampler_peak_mag: float | None = None, min_detections: int = 1,
                      peak_mag_limit: float = BTS_PEAK_MAG_LIMIT) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Simulated BTS-like SN Ia sample: the survey simulator, detections only, BTS peak cut.

    The BTS selection is a peak-magnitude limit plus a spectrum, not a minimum
    number of alerts, so the simulator's detection selection is relaxed to
    ``min_detections`` (1: the object was detected at all). The simulator runs
    in forced mode and only its detections (SNR >= 5) are measured, which is
    exactly the alert view without the alert mode's 3-detection minimum.

    Parameters
    ----------
    source_cfg : Mapping
        The simulator's source config (``survey`` and ``population`` are used).
    n_objects : int
        SNe Ia simulated (after the simulator's detection selection, before the BTS cut).
    survey_overrides : Mapping, optional
        Keys replacing those of ``source_cfg.survey`` (e.g. the BTS fields' cadence).
    sampler_peak_mag : float, optional
        ``population.max_peak_mag`` of the simulation: a noise-free pre-selection
        a little fainter than ``peak_mag_limit`` that only saves time.

    Returns
    -------
    measured : pandas.DataFrame
        :func:`measure_transient` of the objects whose measured peak is <= ``peak_mag_limit``.
    objects : pandas.DataFrame
        Their rows of the simulator's objects table (truth).
    """
    from deeprubin.sources.simulate import simulate_survey

    src = dict(source_cfg)
    survey = {**dict(src.get("survey") or {}), **dict(survey_overrides or {})}
    # The sample is flux-limited as a whole: no separate spectroscopic sub-population.
    population = {**dict(src.get("population") or {}), "max_peak_mag": sampler_peak_mag,
                  "min_detections": int(min_detections), "spectroscopic_fraction": 0.0}
    config = {"n_objects": int(n_objects), "class_fractions": None, "overlap_fraction": 0.0,
              "output": "forced", "survey": survey, "population": population}
    lightcurves, objects = simulate_survey(config, seed=seed, classes=["SNIa"], bands=list(bands))
    measured = measure_lightcurves(lightcurves)
    measured = measured[measured["peakmag"] <= peak_mag_limit]
    return measured, objects.set_index("object_id").loc[measured.index]


def compare_snia(sim: pd.DataFrame, real: pd.DataFrame, catalogue: pd.DataFrame) -> dict:
    """KS comparisons of :data:`SNIA_STATISTICS`, sim vs real measured identically, plus sim vs
    the catalogue values and the agreement of our measurement with the catalogue on real objects."""
    identical = {s: compare(s, sim[s], real[s]).as_dict() for s in SNIA_STATISTICS}
    vs_catalogue = {s: compare(s, sim[s], catalogue[s]).as_dict() for s in ("peakmag", "rise", "fade", "duration")}
    agreement = {}
    for s in ("peakmag", "rise", "fade", "duration"):
        both = pd.concat([real[s], catalogue[s]], axis=1, keys=["ours", "bts"]).dropna()
        diff = both["ours"] - both["bts"]
        agreement[s] = {"n": len(both),
                        "median_difference": float(diff.median()) if len(both) else float("nan"),
                        "median_abs_difference": float(diff.abs().median()) if len(both) else float("nan"),
                        "spearman": float(stats.spearmanr(both["ours"], both["bts"]).statistic)
                        if len(both) > 2 else float("nan")}
    return {"identical_measurement": identical, "vs_bts_catalogue": vs_catalogue,
            "measurement_vs_catalogue_on_real": agreement}


def compare_redshifts(truth: pd.DataFrame, catalogue: pd.DataFrame) -> dict | None:
    """KS of the simulated BTS-like sample's true redshifts against ``bts.csv``'s (None without one).

    A diagnostic of the simulated luminosity function and colours under the flux limit (too faint
    or too red SNe sit too close). Real redshifts partly come from SN-template fits with errors of
    a few 0.001, which widen the real distribution a little.
    """
    if "redshift" not in catalogue.columns or "redshift" not in truth.columns:
        return None
    return compare("redshift", truth["redshift"], catalogue["redshift"]).as_dict()


def compare_rrlyrae(sim_objects: pd.DataFrame, sesar: pd.DataFrame) -> dict:
    """KS comparisons of RR Lyrae periods and r/g amplitudes, all and per subtype (ab, c).

    ``sim_objects``: simulator objects rows of RR Lyrae (``truth_period_days``,
    ``truth_amplitude_mag``, ``truth_amplitude_g_mag``, ``truth_subtype`` 0 = ab, 1 = c).
    """
    sub = sim_objects["truth_subtype"].map({0.0: "ab", 1.0: "c"})
    out = {}
    for name, mask_sim, mask_real in (("all", np.ones(len(sim_objects), bool), np.ones(len(sesar), bool)),
                                      ("ab", (sub == "ab").to_numpy(), (sesar["type"] == "ab").to_numpy()),
                                      ("c", (sub == "c").to_numpy(), (sesar["type"] == "c").to_numpy())):
        s, r = sim_objects[mask_sim], sesar[mask_real]
        out[name] = {"period": compare("period", s["truth_period_days"], r["period"]).as_dict(),
                     "amplitude_r": compare("amplitude_r", s["truth_amplitude_mag"], r["amp_r"]).as_dict(),
                     "amplitude_g": compare("amplitude_g", s["truth_amplitude_g_mag"], r["amp_g"]).as_dict()}
    out["fraction_c"] = {"sim": float((sub == "c").mean()), "real": float((sesar["type"] == "c").mean())}
    return out


# --------------------------------------------------------------------------- figure

#: Axis labels (with units) of the compared statistics.
STATISTIC_LABELS = {
    "peakmag": "Peak magnitude (AB)",
    "rise": "Rise time, half flux to peak (days)",
    "fade": "Fade time, peak to half flux (days)",
    "duration": "Duration, rise + fade (days)",
    "n_detections": "Detections, -30 to +100 d",
    "g_minus_r_peak": "g - r at peak (mag)",
    "period": "RR Lyrae period (days)",
    "amplitude_r": "RR Lyrae r amplitude (mag)",
}


def plot_sim_vs_real(panels: list[tuple[str, np.ndarray, np.ndarray, dict]]):
    """Overlaid density histograms, one panel per statistic.

    Parameters
    ----------
    panels : list of (name, sim values, real values, comparison dict with ks_statistic/p_value)

    Returns
    -------
    matplotlib.figure.Figure
    """
    from deeprubin.core.plot_style import OKABE_ITO, figure_style, new_figure

    n = len(panels)
    cols = min(4, n)
    rows = int(np.ceil(n / cols))
    with figure_style():
        fig = new_figure((4.0 * cols, 3.2 * rows))
        axes = np.atleast_1d(fig.subplots(rows, cols)).ravel()
        for ax, (name, sim, real, result) in zip(axes, panels):
            sim = np.asarray(sim, float)[np.isfinite(sim)]
            real = np.asarray(real, float)[np.isfinite(real)]
            both = np.concatenate([sim, real])
            lo, hi = np.percentile(both, [0.5, 99.5]) if len(both) else (0.0, 1.0)
            bins = np.linspace(lo, hi if hi > lo else lo + 1.0, 30)
            ax.hist(sim, bins=bins, density=True, histtype="step", lw=2, color=OKABE_ITO["blue"],
                    label=f"simulated (n={len(sim)})")
            ax.hist(real, bins=bins, density=True, histtype="stepfilled", alpha=0.35,
                    color=OKABE_ITO["vermillion"], label=f"real (n={len(real)})")
            ax.set_xlabel(STATISTIC_LABELS.get(name, name))
            ax.set_ylabel("Density")
            ax.set_title(f"KS = {result['ks_statistic']:.3f}, p = {result['p_value']:.2g}")
            ax.legend(fontsize="small")
        for ax in axes[n:]:
            ax.set_visible(False)
    return fig
