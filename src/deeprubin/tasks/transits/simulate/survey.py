"""Assemble a simulated survey: stars, their light curves, truth ephemerides and SNRs.

Star kinds: ``planet`` (a transiting planet), ``eclipsing_binary`` (hard negative: primary
and secondary eclipses, U- or V-shaped) and ``no_planet`` (noise only, some with single
deep outliers as hard negatives). A star is observed by Kepler, by TESS, or by both (then
its two light curves share ``target_id``, the split's group).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..ephemeris import in_transit, transit_epochs
from ....sources.missions import MISSION_OFFSETS, MISSION_SYSTEMS, bjd_to_mission
from . import noise
from .cadence import kepler_times, tess_times
from .catalog import host_table
from .transit import (R_EARTH_PER_R_SUN, eclipse_duration, eclipse_flux, geometry_from_duration,
                      occultation_flux, scaled_semi_major_axis, transit_flux)

LABELS = ("planet", "eclipsing_binary", "no_planet")
QUALITY_FLAGGED = 1024  # an arbitrary non-zero Kepler/TESS quality bit (here: "corrupted cadence")


@dataclass
class Survey:
    """Simulated tables (see :func:`simulate_survey`)."""

    lightcurves: pd.DataFrame
    objects: pd.DataFrame
    ephemerides: pd.DataFrame
    report: dict


def _log_uniform(rng, lo_hi, size=None):
    lo, hi = (float(v) for v in lo_hi)
    return np.exp(rng.uniform(np.log(lo), np.log(hi), size))


def cdpp(noise_flux: np.ndarray, n_points: int) -> float:
    """Robust scatter of ``n_points``-cadence running means: the noise on the transit timescale."""
    n_points = max(int(n_points), 1)
    if noise_flux.size <= n_points:
        return float(np.std(noise_flux) / np.sqrt(n_points))
    means = np.convolve(noise_flux, np.ones(n_points) / n_points, mode="valid")
    return float(1.4826 * np.median(np.abs(means - np.median(means))))


def _mission_times(mission: str, cfg, rng) -> np.ndarray:
    if mission == "Kepler":
        return kepler_times(cfg.kepler)
    return tess_times(cfg.tess, int(rng.integers(1, int(cfg.tess.n_sectors_available) + 1)))


def _span(mission: str, cfg) -> float:
    if mission == "Kepler":
        k = cfg.kepler
        return float(k.n_quarters) * float(k.quarter_days) + (float(k.n_quarters) - 1) * float(k.quarter_gap_days)
    return float(cfg.tess.sector_days)


def _pick_missions(rng, cfg) -> list[str]:
    if rng.random() < float(cfg.both_missions_fraction):
        return ["Kepler", "TESS"]
    return ["TESS"] if rng.random() < float(cfg.tess_fraction) else ["Kepler"]


def simulate_survey(cfg, seed: int) -> Survey:
    """Simulate ``cfg.n_stars`` stars (``cfg`` is the ``transits.simulate`` node).

    Returns
    -------
    Survey
        ``lightcurves``: object_id, time (BKJD or BTJD, d), flux (relative), flux_err, quality.
        ``objects``: object_id, target_id, group_id, mission, time_system, label, kepmag,
        cadence_days, sigma_ppm (per cadence), n_points.
        ``ephemerides``: object_id, target_id, mission, kind (planet | eb), period (d),
        t0_bjd, duration (d), depth (mean in-transit, relative), rp_rs, b, a_rs,
        occultation_depth (the eclipse at phase 0.5: a planet's occultation, ``A_g (R_p/a)^2``
        with ``A_g`` log-uniform in ``planet_albedo``; a binary's secondary), snr_transit (one
        transit), n_transits (observed), snr_total.
    """
    rng = np.random.default_rng(seed)
    # The planets' albedos come from a stream of their own: every other draw of the survey stays
    # the one it was before occultations were simulated.
    albedo_rng = np.random.default_rng([int(seed), 1])
    n = int(cfg.n_stars)
    hosts, host_report = host_table(cfg, n * 20, rng)  # a pool: planets redraw until >= min_transits fit
    pool = iter(range(len(hosts)))
    kinds = rng.choice(LABELS, size=n, p=[float(cfg.planet_fraction), float(cfg.eb_fraction),
                                          1.0 - float(cfg.planet_fraction) - float(cfg.eb_fraction)])
    lc_rows, obj_rows, eph_rows = [], [], []
    redraws = 0
    for i in range(n):
        target_id = f"SIM{i:05d}"
        missions = _pick_missions(rng, cfg)
        span = min(_span(m, cfg) for m in missions)
        host = hosts.iloc[next(pool)]
        kind = str(kinds[i])
        planet = eb = None
        if kind == "planet":
            while host["period"] > span / float(cfg.min_transits):
                host = hosts.iloc[next(pool)]
                redraws += 1
            k = min(_log_uniform(rng, cfg.planet_radius_earth) * R_EARTH_PER_R_SUN / host["stellar_radius"], 0.25)
            a_rs0 = scaled_semi_major_axis(host["period"], host["stellar_mass"], host["stellar_radius"])
            a_rs, b = geometry_from_duration(host["period"], host["duration"], k, a_rs0)
            planet = {"period": float(host["period"]), "duration": float(host["duration"]), "rp_rs": float(k),
                      "a_rs": a_rs, "b": b, "u": (float(host["u1"]), float(host["u2"])),
                      "fp": float(_log_uniform(albedo_rng, cfg.planet_albedo)) * (float(k) / a_rs) ** 2,
                      "t0_bjd": MISSION_OFFSETS["Kepler"] + float(cfg.kepler.start_bkjd)
                      + rng.uniform(0, host["period"])}
        elif kind == "eclipsing_binary":
            period = float(_log_uniform(rng, cfg.eb.period_days))
            a_rs = scaled_semi_major_axis(period, 1.5, 1.0)  # two Sun-like stars, total ~1.5 M_sun
            eb = {"period": period, "a_rs": a_rs, "depth": float(_log_uniform(rng, cfg.eb.depth)),
                  "ratio": float(rng.uniform(*cfg.eb.secondary_ratio)),
                  "v": bool(rng.random() < float(cfg.eb.v_shape_fraction)),
                  "duration": eclipse_duration(period, a_rs),
                  "t0_bjd": MISSION_OFFSETS["Kepler"] + float(cfg.kepler.start_bkjd) + rng.uniform(0, period)}
        outlier_star = kind == "no_planet" and rng.random() < float(cfg.outlier_star_fraction)
        gran_sigma = float(rng.uniform(*cfg.noise.granulation_ppm)) * 1e-6
        gran_tau = float(rng.uniform(*cfg.noise.granulation_tau_days))
        rot_amp = float(_log_uniform(rng, cfg.noise.rotation_amp))
        rot_period = float(rng.uniform(*cfg.noise.rotation_period_days))

        for mission in missions:
            object_id = f"{target_id}-{mission}"
            time = _mission_times(mission, cfg, rng)
            if mission == "Kepler":
                cadence_min, mag, factor = float(cfg.kepler.cadence_minutes), float(host["kepmag"]), 1.0
            else:
                cadence_min = float(cfg.tess.cadence_minutes)
                mag, factor = float(host["kepmag"]) + float(cfg.tess.mag_offset), float(cfg.tess.noise_factor)
            cadence = cadence_min / 1440.0
            supersample = max(int(round(cadence_min / 2.0)), 1)  # ~2-min sub-exposures
            sigma = noise.white_noise_ppm(mag, float(cfg.noise.floor_ppm)) * factor \
                * np.sqrt(30.0 / cadence_min) * 1e-6
            white = sigma * rng.standard_normal(time.size)
            gran = noise.ar1_noise(time, gran_sigma * factor, gran_tau, rng)
            trend = noise.rotation_signal(time, rot_amp, rot_period, rng) + gran \
                + noise.jumps(time, float(cfg.noise.jump_rate_per_day), rng)
            signal = np.ones_like(time)
            if planet is not None:
                t0 = float(bjd_to_mission(planet["t0_bjd"], mission))
                signal = transit_flux(time, t0, planet["period"], planet["rp_rs"], planet["a_rs"], planet["b"],
                                      planet["u"], cadence, supersample) \
                    + occultation_flux(time, t0, planet["period"], planet["rp_rs"], planet["a_rs"], planet["b"],
                                       planet["fp"], cadence, supersample)
                n_dur = planet["duration"] / cadence
                fine = np.linspace(t0 - 0.5 * planet["duration"], t0 + 0.5 * planet["duration"], 201)
                depth = float(np.mean(1.0 - transit_flux(fine, t0, planet["period"], planet["rp_rs"],
                                                         planet["a_rs"], planet["b"], planet["u"], 0.0, 1)))
                snr_transit = depth / cdpp(white + gran, int(round(n_dur)))
                mask = in_transit(time, planet["period"], planet["t0_bjd"], planet["duration"], mission)
                epochs = transit_epochs(time.min() - planet["duration"], time.max() + planet["duration"],
                                        planet["period"], t0)
                n_obs = int(sum(np.any(np.abs(time[mask] - e) < 0.5 * planet["duration"]) for e in epochs))
                eph_rows.append({"object_id": object_id, "target_id": target_id, "mission": mission, "kind": "planet",
                                 "period": planet["period"], "t0_bjd": planet["t0_bjd"],
                                 "duration": planet["duration"], "depth": depth, "rp_rs": planet["rp_rs"],
                                 "b": planet["b"], "a_rs": planet["a_rs"], "occultation_depth": planet["fp"],
                                 "snr_transit": snr_transit, "n_transits": n_obs,
                                 "snr_total": snr_transit * np.sqrt(n_obs)})
            if eb is not None:
                t0 = float(bjd_to_mission(eb["t0_bjd"], mission))
                signal = eclipse_flux(time, t0, eb["period"], eb["depth"], eb["ratio"], eb["a_rs"], eb["v"],
                                      cadence, supersample)
                eph_rows.append({"object_id": object_id, "target_id": target_id, "mission": mission, "kind": "eb",
                                 "period": eb["period"], "t0_bjd": eb["t0_bjd"], "duration": eb["duration"],
                                 "depth": eb["depth"], "rp_rs": np.nan, "b": np.nan, "a_rs": eb["a_rs"],
                                 "occultation_depth": eb["depth"] * eb["ratio"], "snr_transit": np.nan, "n_transits": 0, "snr_total": np.nan})
            flux = signal * (1.0 + trend) + white \
                + noise.flares(time, float(cfg.noise.flare_rate_per_day), rng) \
                + noise.single_outliers(time.size, float(cfg.noise.outlier_rate), sigma, rng)
            if outlier_star:  # a few isolated deep single-cadence dips: a transit-like hard negative
                hits = rng.choice(time.size, size=int(rng.integers(1, 4)), replace=False)
                flux[hits] -= sigma * rng.uniform(8, 40, hits.size)
            quality = np.where(rng.random(time.size) < float(cfg.noise.quality_flag_rate), QUALITY_FLAGGED, 0)
            flux = np.where(quality > 0, flux * (1.0 - rng.uniform(0.001, 0.02, time.size)), flux)
            lc_rows.append(pd.DataFrame({"object_id": object_id, "time": time, "flux": flux,
                                         "flux_err": np.full(time.size, sigma), "quality": quality.astype(np.int32)}))
            label = kind
            if planet is not None and eph_rows[-1]["n_transits"] == 0:
                label = "no_planet"  # no transit fell in this window (gaps); not a positive light curve
            obj_rows.append({"object_id": object_id, "target_id": target_id, "group_id": target_id,
                             "mission": mission, "time_system": MISSION_SYSTEMS[mission], "label": label,
                             "kepmag": float(host["kepmag"]), "cadence_days": cadence,
                             "sigma_ppm": sigma * 1e6, "n_points": int(time.size)})
    objects = pd.DataFrame(obj_rows)
    ephemerides = pd.DataFrame(eph_rows, columns=["object_id", "target_id", "mission", "kind", "period", "t0_bjd",
                                                  "duration", "depth", "rp_rs", "b", "a_rs", "occultation_depth", "snr_transit",
                                                  "n_transits", "snr_total"])
    report = {"hosts": host_report, "n_stars": n, "n_lightcurves": int(len(objects)),
              "per_label": {k: int(v) for k, v in objects["label"].value_counts().sort_index().items()},
              "per_mission": {k: int(v) for k, v in objects["mission"].value_counts().sort_index().items()},
              "stars_in_two_missions": int((objects.groupby("target_id").size() > 1).sum()),
              "planet_redraws_for_min_transits": redraws}
    planets = ephemerides[ephemerides["kind"] == "planet"]
    if len(planets):
        report["planet_snr_total_quantiles"] = {str(q): float(planets["snr_total"].quantile(q))
                                                for q in (0.1, 0.25, 0.5, 0.75, 0.9)}
    return Survey(pd.concat(lc_rows, ignore_index=True), objects, ephemerides, report)
