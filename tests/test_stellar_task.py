"""The stellar task through the generic stages, in-process on the tiny config: ingest ->
preprocess -> split -> train -> calibrate -> stellar_sed -> evaluate, then predict on SDSS-format
files. A small Kepler-format catalogue written here stands in for the real one, so the real
block's code runs without ../shared."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from astropy.io import fits

from conftest import compose_under
from deeprubin.core import io, numerics
from deeprubin.core.config import ConfigError

KOI_HEADER = ("kepid,kepoi_name,kepler_name,koi_period,koi_time0bk,duration(days),koi_ldm_coeff2,koi_ldm_coeff1,"
              "koi_tce_plnt_num,koi_steff,koi_steff_err1,koi_steff_err2,koi_slogg,koi_slogg_err1,koi_slogg_err2,"
              "FeH,FeH_err1,FeH_err2,radius,radius_err1,radius_err2,mass,mass_err1,mass_err2,ra,dec,koi_kepmag,"
              "koi_gmag,koi_rmag,koi_imag,koi_zmag,koi_jmag,koi_hmag,koi_kmag")


def write_koi(path: Path, n_stars: int = 150, seed: int = 0) -> Path:
    """A KOI-layout table whose colours follow Teff (cooler: redder), two rows for some stars."""
    rng = np.random.default_rng(seed)
    teff = rng.uniform(4200, 6800, n_stars)
    logg = np.clip(4.9 - (teff - 4200) / 2600 * 0.8 + rng.normal(0, 0.1, n_stars), 3.5, 5.0)
    feh = rng.normal(0.0, 0.2, n_stars)
    x = (6000 - teff) / 1000
    r = rng.uniform(11, 15, n_stars)
    mags = {"g": r + 0.45 + 0.35 * x, "r": r, "i": r - 0.12 - 0.12 * x, "z": r - 0.18 - 0.2 * x,
            "j": r - 1.1 - 0.45 * x, "h": r - 1.4 - 0.6 * x, "k": r - 1.45 - 0.65 * x, "kep": r - 0.05}
    rows = []
    for k in range(n_stars):
        for planet in range(1 + (k % 4 == 0)):
            rows.append(f"{100000 + k},K{k:05d}.0{planet + 1},,3.0,130.0,0.1,0.3,0.4,{planet + 1},{teff[k]:.0f},80,-80,"
                        f"{logg[k]:.3f},0.05,-0.05,{feh[k]:.2f},0.15,-0.15,1,0.1,-0.1,1,0.1,-0.1,290.0,40.0,"
                        f"{mags['kep'][k]:.3f},{mags['g'][k]:.3f},{mags['r'][k]:.3f},{mags['i'][k]:.3f},"
                        f"{mags['z'][k]:.3f},{mags['j'][k]:.3f},{mags['h'][k]:.3f},{mags['k'][k]:.3f}")
    path.write_text("\n".join([KOI_HEADER, *rows]) + "\n")
    return path


@pytest.fixture(scope="module")
def stellar_run(tmp_path_factory):
    """The tiny stellar pipeline under a temporary root; ``(cfg, root, evaluate metrics)``."""
    from deeprubin.stages.calibrate import run_calibrate
    from deeprubin.stages.evaluate import run_evaluate
    from deeprubin.stages.ingest import run_ingest
    from deeprubin.stages.preprocess import run_preprocess
    from deeprubin.stages.split import run_split
    from deeprubin.stages.stellar_sed import run_stellar_sed
    from deeprubin.stages.train import run_train

    root = tmp_path_factory.mktemp("stellar")
    koi = write_koi(root / "koi.csv")
    cfg = compose_under(root, ["experiment=tiny", f"source.kepler.path={koi}"], task="stellar")
    cfg.task_name = "stellar"
    numerics.apply_threads()
    cwd = os.getcwd()
    os.chdir(root)
    try:
        for stage in (run_ingest, run_preprocess, run_split, run_train, run_calibrate, run_stellar_sed):
            stage(cfg)
        metrics = run_evaluate(cfg)
    finally:
        os.chdir(cwd)
    return cfg, root, metrics


def test_pipeline_writes_the_headline_metrics_figures_and_real_block(stellar_run):
    cfg, root, metrics = stellar_run
    written = io.read_json(cfg.paths.metrics)
    for key in ("teff_mae", "logg_mae", "feh_mae", "macro_f1", "coverage_1sigma"):
        assert np.isfinite(written[key]), key
    assert set(written["baseline"]) == {"gbm_spectra_pca", "gbm_sed"}
    real = written["real"]
    assert real["status"] == "evaluated" and real["n_stars"] == 150
    assert real["n_train"] + real["n_val"] + real["n_test"] == 150
    for model in ("gbm", "sednet"):
        assert {"teff", "logg", "feh"} <= set(real[model]["parameters"])
    assert real["reference_training_median"]["teff"] > 0
    assert "domain_shift_sim_to_kepler" in real
    figures = {p.name for p in Path(cfg.paths.reports).rglob("*.png")}
    assert {"stellar_residuals_vs_teff.png", "stellar_mae_vs_snr.png", "stellar_sigma_coverage.png",
            "stellar_confusion_matrix.png", "stellar_kepler_sed_predictions.png",
            "stellar_classical_predictions.png"} <= figures
    assert (Path(cfg.paths.models) / "calibration.json").exists()


def test_a_star_never_straddles_splits_and_its_epochs_stay_together(stellar_run):
    cfg, _, _ = stellar_run
    manifest = io.read_parquet(Path(cfg.paths.splits) / "manifest.parquet")
    objects = io.read_parquet(Path(cfg.paths.raw) / "objects.parquet")
    assert (manifest.groupby("group_id")["split"].nunique() == 1).all()
    table = objects.merge(manifest[["object_id", "split"]], on="object_id")
    assert (table.groupby("star_id")["split"].nunique() == 1).all()
    assert table.groupby("star_id").size().max() > 1          # several epochs of one star exist


def _sdss_file(path: Path, wave, flux, ivar, mask, rv_kms: float) -> Path:
    cols = [fits.Column(name="flux", format="E", array=flux.astype(np.float32)),
            fits.Column(name="loglam", format="E", array=np.log10(wave).astype(np.float32)),
            fits.Column(name="ivar", format="E", array=np.where(mask, 0, ivar).astype(np.float32)),
            fits.Column(name="and_mask", format="J", array=mask.astype(np.int32))]
    spall = fits.BinTableHDU.from_columns([fits.Column(name="Z", format="D", array=np.array([rv_kms / 299792.458])),
                                           fits.Column(name="Z_ERR", format="D", array=np.array([1e-5])),
                                           fits.Column(name="CLASS", format="6A", array=np.array(["STAR"])),
                                           fits.Column(name="SUBCLASS", format="6A", array=np.array(["G2"]))],
                                          name="SPALL")
    header = fits.Header({"PLATEID": 266, "MJD": 51630, "FIBERID": 3, "PLUG_RA": 146.7, "PLUG_DEC": -1.0})
    fits.HDUList([fits.PrimaryHDU(header=header), fits.BinTableHDU.from_columns(cols, name="COADD"),
                  spall]).writeto(path)
    return path


def test_predict_on_sdss_files_matches_the_pipeline_path(stellar_run, tmp_path):
    from deeprubin.stages.predict import run_predict

    cfg, root, _ = stellar_run
    raw = io.read_npz(Path(cfg.paths.raw) / "spectra.npz")
    objects = io.read_parquet(Path(cfg.paths.raw) / "objects.parquet")
    files = [str(_sdss_file(tmp_path / f"spec-{k}.fits", raw["wave"], raw["flux"][k], raw["ivar"][k], raw["mask"][k],
                            float(objects["rv"].iloc[k]))) for k in range(3)]
    sdss = cfg.copy()
    sdss.predict.sdss_spectra = files
    sdss.predict.output = str(tmp_path / "sdss.csv")
    run_predict(sdss)
    from_files = pd.read_csv(tmp_path / "sdss.csv")
    source = cfg.copy()
    source.predict.output = str(tmp_path / "source.csv")
    cwd = os.getcwd()
    os.chdir(root)
    try:
        run_predict(source)
    finally:
        os.chdir(cwd)
    from_source = pd.read_csv(tmp_path / "source.csv").iloc[:3]
    assert len(from_files) == 3 and list(from_files["pred_class"]) == list(from_source["pred_class"])
    # float32 FITS wavelengths and the Z round trip move the grid by < 1e-6 dex
    assert np.allclose(from_files["pred_teff"], from_source["pred_teff"], rtol=1e-3)


def test_errors_name_the_key_or_file(stellar_run, tmp_path):
    from deeprubin.stages.predict import run_predict
    from deeprubin.tasks.stellar.dataset import read_split_tables
    from deeprubin.tasks.stellar.evaluation import checkpoint_scaler
    from deeprubin.tasks.stellar.source import load_kepler
    from deeprubin.tasks.stellar.steps.evaluate import evaluate

    cfg, root, _ = stellar_run
    table, report = load_kepler({"path": str(tmp_path / "absent.csv")}, ["G"], [7000, 3000])
    assert report["status"] == "absent" and len(table) == 0 and "teff" in table.columns
    assert load_kepler({"path": None})[1]["status"] == "disabled"
    bad = cfg.copy()
    bad.evaluate.reference_snr = [1000.0, 2000.0]
    with pytest.raises(ValueError, match="reference_snr"):
        evaluate(bad)
    with pytest.raises(ValueError, match="metadata.target_scaler"):
        checkpoint_scaler({"metadata": {}}, "x.ckpt")
    missing = cfg.copy()
    missing.predict.checkpoint = str(tmp_path / "none.ckpt")
    missing.predict.output = str(tmp_path / "out.csv")
    with pytest.raises(ConfigError, match="predict.checkpoint"):
        run_predict(missing)
    paths = cfg.paths.copy()
    paths.splits = str(tmp_path / "splits")
    io.write_parquet(pd.DataFrame({"object_id": ["nope"], "split": ["train"]}), tmp_path / "splits/manifest.parquet")
    with pytest.raises(ValueError, match="not in the manifest"):
        read_split_tables(paths, ("train",))
