"""Sim-vs-real measurements (deeprubin.tasks.transients.validation.sim_vs_real) and the sim_vs_real stage."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from conftest import REAL_DATA

from deeprubin.core.config import compose_task
from deeprubin.core.schema import SchemaError
from deeprubin.tasks.transients.validation import sim_vs_real as svr


def parabola_curve(rise_half=10.0, fade_half=20.0, step=1.0, colour=-0.2):
    """Noise-free g and r magnitudes: 0.75 mag below the 18.0 peak at -rise_half and +fade_half days."""
    t = np.arange(-40.0, 80.0, step)
    shape = np.where(t < 0, svr.HALF_FLUX_MAG * (t / rise_half) ** 2, svr.HALF_FLUX_MAG * (t / fade_half) ** 2)
    time = np.concatenate([t, t + 0.3])
    mag = np.concatenate([18.0 + shape, 18.0 - colour + np.interp(t + 0.3, t, shape)])
    band = np.array(["g"] * len(t) + ["r"] * len(t))
    return time, mag, band


def test_rise_fade_duration_of_a_known_shape():
    time, mag, band = parabola_curve()
    got = svr.measure_transient(time, mag, band)
    assert got["peakmag"] == pytest.approx(18.0)
    assert got["peak_band"] == "g"
    assert got["peak_time"] == pytest.approx(0.0, abs=0.5)  # at most half-way to a neighbour
    assert got["rise"] == pytest.approx(10.0, abs=0.8)
    assert got["fade"] == pytest.approx(20.0, abs=0.8)
    assert got["duration"] == pytest.approx(got["rise"] + got["fade"])
    assert got["g_minus_r_peak"] == pytest.approx(-0.2, abs=0.02)
    # Detections counted from -30 to +100 d around peak, in both bands.
    in_window = (time >= got["peak_time"] - 30) & (time <= got["peak_time"] + 100)
    assert got["n_detections"] == in_window.sum() < len(time)


def test_undefined_quantities_are_nan():
    t, m, b = parabola_curve()
    after = t >= 0  # the rise was never observed
    got = svr.measure_transient(t[after], m[after], b[after])
    assert np.isnan(got["rise"]) and np.isnan(got["duration"]) and np.isfinite(got["fade"])
    only_g = b == "g"
    assert np.isnan(svr.measure_transient(t[only_g], m[only_g], b[only_g])["g_minus_r_peak"])
    empty = svr.measure_transient(np.array([]), np.array([]), np.array([]))
    assert empty["n_detections"] == 0 and np.isnan(empty["peakmag"])


def test_measure_lightcurves_ignores_non_detections():
    t, m, b = parabola_curve()
    lc = pd.DataFrame({"object_id": "a", "time": t, "mag": m, "band": b, "detected": True})
    lc.loc[lc["mag"] < 18.05, "detected"] = False  # hide the brightest points
    got = svr.measure_lightcurves(lc)
    assert list(got.index) == ["a"] and got.loc["a", "peakmag"] >= 18.05


def test_ks_comparison():
    rng = np.random.default_rng(0)
    same = svr.compare("x", rng.normal(size=500), rng.normal(size=500))
    shifted = svr.compare("x", rng.normal(size=500), rng.normal(1.0, size=500))
    assert same.ks_statistic < 0.1 < shifted.ks_statistic and shifted.p_value < 1e-6
    assert np.isnan(svr.compare("x", [np.nan], [1.0, 2.0]).ks_statistic)


# --------------------------------------------------------------------------- readers

def write_bts(folder, objects=("ZTF1", "ZTF2", "ZTF3")):
    (folder / "light-curves").mkdir(parents=True)
    rows = []
    for k, oid in enumerate(objects):
        t, m, b = parabola_curve(rise_half=9 + k, fade_half=15 + k, step=2.0)
        m = m + 0.1 * k
        pd.DataFrame({"time": 59000 + t, "mag": m, "magerr": 0.05, "band": np.where(b == "r", "R", "g")}
                     ).to_csv(folder / "light-curves" / f"{oid}.csv", index=False)
        rows.append({"ZTFID": oid, "IAUID": f"SN2020a{k}", "RA": "08:29:47.59", "Dec": "+33:54:22.8",
                     "peakmag": 18.0 + 0.1 * k, "peakabs": -19.3, "rise": 9 + k, "fade": "-" if k == 2 else 15 + k,
                     "duration": 24 + 2 * k, "type": "SN Ia", "redshift": "-" if k == 1 else 0.04 + 0.01 * k,
                     "A_V": 0.1})
    pd.DataFrame(rows).to_csv(folder / "bts.csv", index=False)


def write_sesar(path):
    lines = ["Title: Light Curve Templates", "--------"]
    for num, typ, per, ag, ar in ((1, "ab", 0.55, 1.0, 0.7), (2, "ab", 0.62, 0.9, 0.65), (3, "c", 0.33, 0.5, 0.36)):
        vals = [str(num), typ, f"{per}", "1.1", "18.0", "51000.0", "100", f"{ag}", "17.0", "51000.0", "100",
                f"{ar}", "17.0", "51000.0", "100", "0.5", "17.0", "51000.0", "100", "0.4", "17.0", "51000.0", "100"]
        lines.append(" ".join(vals))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")


def bts_cfg(real_dir, *overrides, **extra):
    """What load_real_bts reads: the sim_vs_real BTS source (conf/source/files_bts_snia.yaml under real_dir)."""
    from omegaconf import OmegaConf

    cfg = compose_task("transients", [f"sim_vs_real.real_dir={real_dir}", *overrides,
                                      *(f"{k}={v}" for k, v in extra.items())])
    return OmegaConf.create({"source": cfg.sim_vs_real.snia.source, "task": cfg.task})


def test_bts_is_read_by_the_files_source(tmp_path):
    write_bts(tmp_path / "ztf_bts_snia")
    measured, cat = svr.load_real_bts(bts_cfg(tmp_path))
    assert list(measured.index) == ["ZTF1", "ZTF2", "ZTF3"] and list(cat.index) == ["ZTF1", "ZTF2", "ZTF3"]
    assert np.isnan(cat.loc["ZTF3", "fade"]) and cat.loc["ZTF2", "rise"] == 10          # BTS '-' -> NaN
    assert np.isnan(cat.loc["ZTF2", "redshift"]) and cat.loc["ZTF3", "redshift"] == pytest.approx(0.06)
    assert measured.loc["ZTF1", "peakmag"] == pytest.approx(18.0, abs=0.05)
    bright, _ = svr.load_real_bts(bts_cfg(tmp_path), peak_mag_limit=18.05)
    assert list(bright.index) == ["ZTF1"]                                                  # the BTS cut


@pytest.mark.parametrize("change, match", [
    (lambda d: d.drop(columns="magerr"), r"ZTF1\.csv.*magerr"),
    (lambda d: d.assign(band="V"), r"ZTF1\.csv.*'V'"),
    (lambda d: d.assign(mag=["bright"] + list(d["mag"].iloc[1:])), r"ZTF1\.csv.*mag.*'bright'"),
    (lambda d: d.assign(time=["soon"] + list(d["time"].iloc[1:])), r"ZTF1\.csv.*time.*'soon'"),
])
def test_bad_bts_files_name_file_and_column(tmp_path, change, match):
    write_bts(tmp_path / "ztf_bts_snia")
    path = tmp_path / "ztf_bts_snia" / "light-curves" / "ZTF1.csv"
    change(pd.read_csv(path)).to_csv(path, index=False)
    with pytest.raises(SchemaError, match=match):
        svr.load_real_bts(bts_cfg(tmp_path))


def test_bts_i_band_rows_are_dropped(tmp_path):
    write_bts(tmp_path / "ztf_bts_snia")
    before, _ = svr.load_real_bts(bts_cfg(tmp_path))
    path = tmp_path / "ztf_bts_snia" / "light-curves" / "ZTF1.csv"
    d = pd.read_csv(path)
    d.loc[d.index[len(d) // 2 - 2:len(d) // 2 + 3], "band"] = "i"   # five points near the peak
    d.to_csv(path, index=False)
    after, _ = svr.load_real_bts(bts_cfg(tmp_path))
    assert after.loc["ZTF1", "n_detections"] < before.loc["ZTF1", "n_detections"]
    assert after.loc["ZTF2"].equals(before.loc["ZTF2"])


def test_catalogue_and_sesar_errors(tmp_path):
    write_bts(tmp_path / "ztf_bts_snia")
    pd.read_csv(tmp_path / "ztf_bts_snia" / "bts.csv").drop(columns="rise").to_csv(
        tmp_path / "ztf_bts_snia" / "bts.csv", index=False)
    with pytest.raises(SchemaError, match=r"bts\.csv: missing column 'rise'"):
        svr.load_real_bts(bts_cfg(tmp_path))
    with pytest.raises(SchemaError, match=r"objects have no column\(s\) \['rise_days'\]"):
        svr.load_real_bts(bts_cfg(tmp_path, "~sim_vs_real.snia.source.metadata.columns.rise_days"))
    (tmp_path / "t.txt").write_text("no table here\n")
    with pytest.raises(SchemaError, match=r"t\.txt"):
        svr.parse_sesar_table(tmp_path / "t.txt")
    write_sesar(tmp_path / "s.txt")
    table = svr.parse_sesar_table(tmp_path / "s.txt")
    assert list(table["type"]) == ["ab", "ab", "c"] and table["amp_r"].iloc[2] == 0.36


# --------------------------------------------------------------------------- stage

def stage_cfg(tmp_path, real_dir, **extra):
    overrides = [f"paths.reports={tmp_path / 'reports'}", f"sim_vs_real.real_dir={real_dir}",
                 "sim_vs_real.snia.n_objects=40", "sim_vs_real.rrlyrae.n_objects=30"]
    return compose_task("transients", overrides + [f"{k}={v}" for k, v in extra.items()])


def test_stage_records_skip_when_real_data_absent(tmp_path):
    from deeprubin.stages.sim_vs_real import run_sim_vs_real

    report = run_sim_vs_real(stage_cfg(tmp_path, tmp_path / "nowhere"))
    written = json.loads((tmp_path / "reports" / "sim_vs_real.json").read_text())
    assert written["skipped"] is True and report["skipped"] is True
    assert written["snia"]["skipped"] and "bts.csv" in written["snia"]["reason"]
    assert written["rrlyrae"]["skipped"]
    assert (tmp_path / "reports" / "sim_vs_real").is_dir()


def test_stage_on_tiny_real_folders(tmp_path):
    from deeprubin.stages.sim_vs_real import run_sim_vs_real

    real = tmp_path / "real"
    write_bts(real / "ztf_bts_snia")
    write_sesar(real / "sdss_s82_rrlyrae" / "apj326724t2.txt")
    report = run_sim_vs_real(stage_cfg(tmp_path, real))
    assert not report["skipped"]
    snia = report["snia"]
    assert snia["n_real"] == 3 and snia["n_sim"] > 5
    assert set(snia["identical_measurement"]) == set(svr.SNIA_STATISTICS)
    assert all(0 <= v["ks_statistic"] <= 1 for v in snia["identical_measurement"].values())
    assert snia["redshift_vs_catalogue"]["n_real"] == 2 and snia["redshift_vs_catalogue"]["n_sim"] == snia["n_sim"]
    assert report["rrlyrae"]["n_real"] == 3
    assert (tmp_path / "reports" / "sim_vs_real" / "sim_vs_real.png").stat().st_size > 10_000


def test_stage_rejects_sampler_fainter_limit(tmp_path):
    from deeprubin.core.config import ConfigError
    from deeprubin.stages.sim_vs_real import run_sim_vs_real

    real = tmp_path / "real"
    write_bts(real / "ztf_bts_snia")
    with pytest.raises(ConfigError, match="sim_vs_real.snia.sampler_peak_mag"):
        run_sim_vs_real(stage_cfg(tmp_path, real, **{"sim_vs_real.snia.sampler_peak_mag": 18.0}))


@pytest.mark.skipif(not (REAL_DATA / "ztf_bts_snia").exists(), reason="real data folder absent")
def test_measurement_reproduces_bts_peak_magnitudes():
    got, cat = svr.load_real_bts(bts_cfg(REAL_DATA, **{"sim_vs_real.snia.source.glob": "ZTF18aa*.csv"}))
    assert len(got) > 40
    diff = (got["peakmag"] - cat.loc[got.index, "peakmag"]).abs()
    # BTS peakmag is the brightest detection for most objects (not all: their own photometry).
    assert diff.median() < 0.01


def test_redshift_diagnostic_needs_a_redshift_column():
    truth = pd.DataFrame({"redshift": [0.03, 0.05, 0.07]})
    with_z = pd.DataFrame({"redshift": [0.04, 0.06, np.nan]})
    result = svr.compare_redshifts(truth, with_z)
    assert result["n_sim"] == 3 and result["n_real"] == 2
    assert svr.compare_redshifts(truth, pd.DataFrame({"peakmag": [18.0]})) is None
