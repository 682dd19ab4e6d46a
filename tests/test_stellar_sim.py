"""The stellar spectrum simulator: physics trends, truth recovery, determinism, shapes, masks,
photometry and config errors."""
from __future__ import annotations

import copy

import numpy as np
import pytest
from numpy.polynomial import chebyshev

from deeprubin.core.config import ConfigError
from deeprubin.tasks.stellar import simulate as sim
from deeprubin.tasks.stellar.simulate import (PHOTOMETRY_BANDS, draw_stars, equivalent_widths, line_parameters,
                                               line_table, mk_class, parse_config, photosphere, simulate_sample,
                                               synthesize)

CFG = {
    "name": "simulate", "n_stars": 10, "max_epochs": 3,
    "classes": ["B", "A", "F", "G", "K", "M"], "teff_edges": [20000, 10000, 7500, 6000, 5200, 3900, 3200],
    "giant_classes": ["G", "K", "M"], "giant_fraction": 0.35, "giant_logg_range": [1.0, 3.5],
    "dwarf_logg_sigma": 0.15, "feh_mean": -0.3, "feh_sigma": 0.5, "feh_range": [-2.5, 0.5],
    "vmicro_kms": [0.8, 2.0], "vsini_max_hot_kms": 150.0, "vsini_max_cool_kms": 15.0, "rotation_break_teff": 6500.0,
    "ebv_scale": 0.05, "ebv_max": 0.6, "r_v": 3.1, "r_mag_range": [14.0, 19.5],
    "rv_sigma_kms": 60.0, "rv_limit_kms": 500.0, "rv_jitter_kms": 0.5, "rv_error_kms": 5.0,
    "binary_fraction": 0.3, "binary_k_kms": [5.0, 60.0],
    "snr_range": [5.0, 100.0], "snr_window": [6000.0, 7000.0], "resolution_range": [1800.0, 2200.0],
    "sky_fraction": [0.05, 1.0], "cosmic_rays_per_spectrum": 3.0, "cosmic_ray_amplitude": [5.0, 50.0],
    "bad_column_fraction": 0.3, "bad_column_pixels": [5, 40], "reduced_coverage_fraction": 0.3,
    "coverage_blue_limit": [3900.0, 4600.0], "coverage_red_limit": [8000.0, 9000.0],
    "wave_log10_min": 3.5798, "wave_log10_max": 3.9638, "wave_log10_step": 1.0e-4,
    "mag_error_floor": 0.01,
    "mag_limit": {"u": 22.0, "g": 22.2, "r": 22.2, "i": 21.3, "z": 20.5, "J": 17.7, "H": 17.4, "Ks": 17.1,
                  "G": 21.0, "BP": 20.8, "RP": 20.2},
}
WAVE = 10.0 ** (3.5798 + 1e-4 * np.arange(3841))          # 3800-9200 A, the SDSS grid of CFG


def cfg(**changes) -> dict:
    out = copy.deepcopy(CFG)
    out.update(changes)
    return out


@pytest.fixture(scope="module")
def sample():
    return simulate_sample(cfg(n_stars=12), seed=3)


def _line_index(wave_air: float) -> int:
    return int(np.argmin(np.abs(line_table()["wave_air"].to_numpy() - wave_air)))


def _ews(teff, logg, feh, vmicro=1.2):
    phot = photosphere(np.atleast_1d(teff), np.atleast_1d(logg), np.atleast_1d(feh))
    params = line_parameters(phot, np.full(phot["teff"].size, vmicro))
    return np.stack([equivalent_widths(params, i) for i in range(phot["teff"].size)])


# -- mk_class ---------------------------------------------------------------------------------

def test_mk_class_vectorised_with_inclusive_lower_edges():
    classes, edges = CFG["classes"], CFG["teff_edges"]
    teff = np.array([25000, 20000, 10000, 9999.9, 7500, 7499, 6000, 5772, 5200, 4000, 3900, 3899, 3200, 2500])
    want = ["B", "B", "B", "A", "A", "F", "F", "G", "G", "K", "K", "M", "M", "M"]
    assert mk_class(teff, classes, edges).tolist() == want
    # edges in either order: ascending edges pair with classes cool -> hot
    assert mk_class(teff, classes[::-1], edges[::-1]).tolist() == want
    assert mk_class(5772.0, classes, edges).tolist() == "G"
    assert mk_class(np.array([[5000.0, 8000.0]]), classes, edges).shape == (1, 2)


@pytest.mark.parametrize("teff, classes, edges, match", [
    ([np.nan], ["A", "B"], [1e4, 8e3, 6e3], "'teff' must be finite"),
    ([-1.0], ["A", "B"], [1e4, 8e3, 6e3], "'teff' must be finite and > 0"),
    ([5e3], ["A", "B"], [1e4, 6e3], "needs len\\(classes\\) \\+ 1 = 3"),
    ([5e3], ["A", "B"], [1e4, 6e3, 8e3], "strictly monotonic"),
    ([5e3], ["A", "A"], [1e4, 8e3, 6e3], "distinct"),
    ([5e3], ["A", "B"], ["x", 8e3, 6e3], "'teff_edges' must be numbers"),
])
def test_mk_class_errors(teff, classes, edges, match):
    with pytest.raises(ValueError, match=match):
        mk_class(teff, classes, edges)


# -- priors -----------------------------------------------------------------------------------

def test_classes_balanced_and_priors_respected():
    settings = parse_config(cfg(n_stars=6000))
    stars = draw_stars(settings, np.random.default_rng(0))
    counts = stars["label"].value_counts()
    assert set(counts.index) == set(CFG["classes"])
    expected = 6000 / 6
    assert np.all(np.abs(counts - expected) < 5 * np.sqrt(expected))
    assert (stars["label"].to_numpy() == mk_class(stars["truth_teff"], CFG["classes"], CFG["teff_edges"])).all()
    assert stars["truth_teff"].between(3200, 20000).all()
    giants = stars["giant"].to_numpy()
    assert set(stars.loc[giants, "label"]) == {"G", "K", "M"}
    share = giants[stars["label"].isin(["G", "K", "M"])].mean()
    assert abs(share - 0.35) < 0.05
    assert stars.loc[giants, "truth_logg"].between(1.0, 3.5).all()
    assert stars.loc[~giants, "truth_logg"].between(3.6, 5.3).all()
    assert stars["truth_feh"].between(-2.5, 0.5).all()
    assert (stars["truth_ebv"] >= 0).all() and (stars["truth_ebv"] <= 0.6).all()


# -- physics ----------------------------------------------------------------------------------

def test_solar_photosphere_and_equivalent_widths_are_realistic():
    phot = photosphere(np.array([5772.0]), np.array([4.44]), np.array([0.0]))
    assert 4.5 < phot["log_pg"][0] < 5.3            # P_g ~ 1e5 dyn cm^-2 at tau_5000 = 2/3
    assert 0.7 < phot["log_pe"][0] < 1.5            # P_e ~ 10-30 dyn cm^-2
    ew = _ews(5772.0, 4.44, 0.0)[0]
    # solar equivalent widths [A] (Moore et al. 1966), within a factor ~2
    for wave_air, observed in ((5889.95, 0.75), (5183.60, 1.26), (4226.73, 1.48), (8542.09, 3.7), (3933.66, 20.0)):
        assert 0.5 * observed < ew[_line_index(wave_air)] < 2.0 * observed, wave_air


def test_balmer_lines_peak_near_a0_and_neutral_metals_grow_toward_cool_stars():
    teff = np.array([4000, 5000, 6000, 7000, 8000, 9000, 10000, 12000, 15000, 20000.0])
    logg = np.interp(teff, sim.MAIN_SEQUENCE[:, 0], sim.MAIN_SEQUENCE[:, 1])
    ew = _ews(teff, logg, np.zeros_like(teff))
    hgamma = ew[:, _line_index(4340.47)]
    assert 8000 <= teff[np.argmax(hgamma)] <= 10000
    ca_i = ew[:, _line_index(4226.73)]
    assert np.all(np.diff(ca_i[:6]) < 0)              # Ca I 4227 weakens from 4000 K to 9000 K
    he_i = ew[:, _line_index(4471.48)]
    assert he_i[teff < 9000].max() < 0.01 and he_i[-2] > 0.1


def test_curve_of_growth_linear_flat_damping():
    phot = photosphere(np.array([5772.0]), np.array([4.44]), np.array([0.0]))
    params = line_parameters(phot, np.array([1.0]))
    k = _line_index(5269.54)
    growth = []
    for scale in 10.0 ** np.arange(-4, 5):
        p = {key: value[:, k:k + 1].copy() for key, value in params.items()}
        p["strength"] = p["strength"] * scale / params["strength"][0, k]  # eta integral = scale A
        p["window"] = np.full((1, 1), 60.0)
        growth.append(equivalent_widths(p, 0)[0])
    ratio = np.array(growth[1:]) / np.array(growth[:-1])   # EW growth per x10 in abundance
    assert ratio[0] == pytest.approx(10.0, rel=0.05)       # linear
    assert ratio[3:5].min() < 2.5                          # flat (saturated): ~sqrt(ln eta) growth
    assert ratio[-1] == pytest.approx(np.sqrt(10.0), rel=0.15)   # damping: sqrt


def test_gravity_and_metallicity_leave_their_marks():
    ew = _ews(np.array([4500.0, 4500.0, 4500.0]), np.array([4.6, 2.0, 4.6]), np.array([0.0, 0.0, -1.5]))
    mg_b, na_d = _line_index(5183.60), _line_index(5889.95)
    assert ew[0, mg_b] > 1.5 * ew[1, mg_b] and ew[0, na_d] > 1.5 * ew[1, na_d]   # dwarfs: damping wings
    fe = line_table()["element"].eq("Fe").to_numpy()
    assert ew[2, fe].sum() < 0.5 * ew[0, fe].sum()                               # metal-poor: weaker Fe


def test_spectrum_carries_information_on_each_parameter():
    """Cramer-Rao bound of a G dwarf at S/N 50 (per 1e-4 dex pixel) on the continuum-normalised
    spectrum, marginalised over the nuisances vmicro and v sin i: far below the targets a
    network must meet (Teff 100 K, logg 0.15, [Fe/H] 0.10), so the spectrum is not degenerate."""
    theta = np.array([5600.0, 4.4, -0.4, 1.2, 8.0])
    steps = np.array([20.0, 0.05, 0.05, 0.2, 4.0])
    rows = np.repeat(theta[None], 11, axis=0)
    for k in range(5):
        rows[2 * k + 1, k] += steps[k]
        rows[2 * k + 2, k] -= steps[k]
    flux = synthesize(rows[:, 0], rows[:, 1], rows[:, 2], WAVE, vmicro=rows[:, 3], vsini=rows[:, 4])
    x = 2 * (np.log(WAVE) - np.log(WAVE[0])) / np.log(WAVE[-1] / WAVE[0]) - 1
    design = chebyshev.chebvander(x, 10)

    def normalised(f):  # divide by a smooth fit to the (noiseless) upper envelope
        keep = np.ones_like(f, bool)
        for _ in range(6):
            c = np.linalg.lstsq(design[keep], f[keep], rcond=None)[0]
            keep = f >= design @ c * 0.98
        return f / (design @ c)

    norm = np.array([normalised(f) for f in flux])
    jac = np.stack([(norm[2 * k + 1] - norm[2 * k + 2]) / (2 * steps[k]) for k in range(5)], axis=1)
    sigma = 1.0 / 50.0
    crlb = np.sqrt(np.diag(np.linalg.inv(jac.T @ jac / sigma ** 2)))
    assert crlb[0] < 50.0 and crlb[1] < 0.075 and crlb[2] < 0.05


def test_chi2_grid_recovers_truth_at_high_snr():
    """Stars with the parameters of nodes of a small (Teff, logg, [Fe/H]) template grid but other
    nuisances (microturbulence, rotation, RV 80 km/s shifted back, noise at S/N 100) are matched,
    by chi^2 with a free continuum polynomial, to their own node among the 45."""
    tg, gg, fg = [4500.0, 5000.0, 5500.0, 6000.0, 6500.0], [2.0, 3.0, 4.5], [-1.5, -0.75, 0.0]
    grid = np.array([(t, g, f) for t in tg for g in gg for f in fg])
    templates = synthesize(grid[:, 0], grid[:, 1], grid[:, 2], WAVE, vmicro=1.2, vsini=5.0)
    truths = np.array([[5000.0, 4.5, -0.75], [4500.0, 2.0, -1.5], [6000.0, 3.0, 0.0], [5500.0, 4.5, 0.0]])
    rv = 80.0
    stars = synthesize(truths[:, 0], truths[:, 1], truths[:, 2], WAVE, vmicro=1.6, vsini=12.0, rv_kms=rv)
    rest = WAVE * np.sqrt((1 - rv / sim.C_KMS) / (1 + rv / sim.C_KMS))
    rng = np.random.default_rng(5)
    x = 2 * (np.log(WAVE) - np.log(WAVE[0])) / np.log(WAVE[-1] / WAVE[0]) - 1
    design = chebyshev.chebvander(x, 8)
    inner = slice(20, -20)                                   # the ends the RV shift moved out of range
    for truth, star in zip(truths, stars):
        noisy = star + rng.normal(0.0, 1.0, star.size) * star / 100.0
        observed = np.interp(WAVE, rest, noisy)              # back to the rest frame
        sigma = np.interp(WAVE, rest, star) / 100.0
        chi2 = []
        for t in templates:
            a = design[inner] * (t[inner] / sigma[inner])[:, None]
            coef = np.linalg.lstsq(a, observed[inner] / sigma[inner], rcond=None)[0]
            chi2.append(np.sum((observed[inner] / sigma[inner] - a @ coef) ** 2))
        assert grid[int(np.argmin(chi2))].tolist() == truth.tolist()


def test_rv_shifts_lines():
    rv = 200.0
    flux = synthesize([9000.0, 9000.0], 4.2, 0.0, WAVE, vsini=20.0, rv_kms=[0.0, rv])
    inner = slice(100, -100)
    trial = np.arange(150.0, 250.0, 0.5)
    chi2 = [np.sum((flux[1] - np.interp(WAVE, WAVE * np.sqrt((1 + v / sim.C_KMS) / (1 - v / sim.C_KMS)),
                                        flux[0]))[inner] ** 2) for v in trial]
    assert trial[int(np.argmin(chi2))] == pytest.approx(rv, abs=2.0)
    assert np.sum((flux[1] - flux[0])[inner] ** 2) > 100 * min(chi2)


# -- the simulated sample ---------------------------------------------------------------------

def test_shapes_dtypes_and_columns(sample):
    n_spec = len(sample.spectra)
    np.testing.assert_allclose(sample.wave, WAVE)
    assert sample.wave.dtype == np.float64 and 3800 < sample.wave[0] < 3801 and 9199 < sample.wave[-1] < 9201
    assert sample.flux.shape == sample.ivar.shape == sample.mask.shape == (n_spec, sample.wave.size)
    assert sample.flux.dtype == np.float32 and sample.ivar.dtype == np.float32 and sample.mask.dtype == bool
    for column in ("spectrum_id", "star_id", "epoch", "label", "truth_teff", "truth_logg", "truth_feh", "truth_rv",
                   "rv", "truth_ebv", "snr", "resolution"):
        assert column in sample.spectra.columns, column
    for column in ("star_id", "label", "truth_teff", "truth_logg", "truth_feh", "truth_ebv", "distance_mag"):
        assert column in sample.stars.columns, column
    for band in PHOTOMETRY_BANDS:
        assert f"mag_{band}" in sample.stars.columns and f"mag_err_{band}" in sample.stars.columns
    assert sample.stars["star_id"].str.fullmatch(r"sim\d{6}").all()
    assert sample.spectra["spectrum_id"].is_unique
    per_star = sample.spectra.groupby("star_id").size()
    assert per_star.between(1, 3).all() and len(per_star) == len(sample.stars)
    merged = sample.spectra.merge(sample.stars, on="star_id", suffixes=("", "_star"))
    for column in ("label", "truth_teff", "truth_logg", "truth_feh", "truth_ebv"):
        assert (merged[column] == merged[f"{column}_star"]).all()


def test_mask_ivar_consistency_and_noise_level(sample):
    assert np.all(sample.ivar[sample.mask] == 0)
    good = ~sample.mask
    assert np.all(sample.ivar[good] > 0) and np.all(np.isfinite(sample.flux))
    assert sample.mask.any(axis=1).any()
    for j, row in sample.spectra.iterrows():
        cover = (sample.wave >= row["coverage_min"]) & (sample.wave <= row["coverage_max"])
        assert sample.mask[j, ~cover].all()
        window = (sample.wave >= 6000) & (sample.wave <= 7000) & good[j]
        measured = np.median(sample.flux[j, window] * np.sqrt(sample.ivar[j, window]))
        assert measured == pytest.approx(row["snr"], rel=0.15 + 2.0 / row["snr"])
    rv_err = (sample.spectra["rv"] - sample.spectra["truth_rv"]).to_numpy()
    assert 1.0 < np.std(rv_err) < 12.0


def test_no_sky_still_gives_finite_ivar():
    out = simulate_sample(cfg(n_stars=2, max_epochs=1, sky_fraction=[0.0, 0.0]), seed=1)
    assert np.all(np.isfinite(out.ivar)) and np.all(out.ivar[~out.mask] > 0)


def test_same_seed_same_bytes_other_seed_differs():
    a = simulate_sample(cfg(n_stars=3), seed=9)
    b = simulate_sample(cfg(n_stars=3), seed=9)
    c = simulate_sample(cfg(n_stars=3), seed=10)
    assert a.flux.tobytes() == b.flux.tobytes() and a.ivar.tobytes() == b.ivar.tobytes()
    assert np.array_equal(a.mask, b.mask)
    assert a.stars.equals(b.stars) and a.spectra.equals(b.spectra)
    assert not np.array_equal(a.stars["truth_teff"], c.stars["truth_teff"])


def test_photometry_follows_the_sed_and_extinction_reddens():
    clear = simulate_sample(cfg(n_stars=6, max_epochs=1, ebv_scale=0.0), seed=4)
    dusty = simulate_sample(cfg(n_stars=6, max_epochs=1, ebv_scale=0.3, ebv_max=2.0), seed=4)
    assert (clear.stars["truth_ebv"] == 0).all() and (dusty.stars["truth_ebv"] > 0).all()
    np.testing.assert_allclose(clear.stars["truth_teff"], dusty.stars["truth_teff"])
    gr_clear = clear.stars["mag_g"] - clear.stars["mag_r"]
    gr_dusty = dusty.stars["mag_g"] - dusty.stars["mag_r"]
    ratio = (gr_dusty - gr_clear) / dusty.stars["truth_ebv"]
    assert ratio[dusty.stars["truth_ebv"] > 0.05].between(0.8, 1.4).all()   # E(g-r) ~ 1.0-1.1 E(B-V)
    # r equals the drawn dereddened magnitude up to noise, and hotter stars are bluer
    assert np.allclose(clear.stars["mag_r"], clear.stars["mag_r0"], atol=0.06)
    order = np.argsort(clear.stars["truth_teff"].to_numpy())
    assert np.corrcoef(clear.stars["truth_teff"].to_numpy()[order], gr_clear.to_numpy()[order])[0, 1] < -0.7
    # the spectra redden too: blue / red flux ratio drops
    blue, red = (clear.wave > 4200) & (clear.wave < 4600), (clear.wave > 8000) & (clear.wave < 8400)
    ratio_clear = np.median(clear.flux[:, blue], 1) / np.median(clear.flux[:, red], 1)
    ratio_dusty = np.median(dusty.flux[:, blue], 1) / np.median(dusty.flux[:, red], 1)
    assert np.all(ratio_dusty < ratio_clear)


# -- config errors ----------------------------------------------------------------------------

@pytest.mark.parametrize("changes, match", [
    ({"snr_range": None}, "'snr_range' is missing"),
    ({"snr_range": [50.0, 5.0]}, "'snr_range' must be a \\[low, high\\] pair with low <= high"),
    ({"snr_range": [0.0, 5.0]}, "'snr_range' must lie above 0"),
    ({"snr_range": "high"}, "'snr_range' must be a \\[low, high\\] pair"),
    ({"n_stars": 0}, "'n_stars' must be >= 1"),
    ({"n_stars": 2.5}, "'n_stars' must be an integer"),
    ({"max_epochs": "3"}, "'max_epochs' must be a number"),
    ({"giant_fraction": 1.5}, "'giant_fraction' must be <= 1"),
    ({"teff_edges": [20000, 10000]}, "'teff_edges' needs len\\(classes\\) \\+ 1"),
    ({"teff_edges": [40000, 10000, 7500, 6000, 5200, 3900, 3200]}, "'teff_edges' must lie within"),
    ({"classes": "BAFGKM"}, "'classes' must be a list"),
    ({"giant_classes": ["X"]}, "'giant_classes' must be a list of names from 'classes'"),
    ({"mag_limit": {"u": 22.0}}, "'mag_limit.g' is missing"),
    ({"snr_window": [1000.0, 2000.0]}, "'snr_window' must lie at or above"),
    ({"coverage_blue_limit": [3900.0, 8500.0]}, "'coverage_blue_limit' must end below"),
    ({"rv_limit_kms": 0.0}, "'rv_limit_kms' must be > 0"),
])
def test_config_errors_name_the_key(changes, match):
    bad = cfg(**changes)
    if changes.get("snr_range", 0) is None:
        del bad["snr_range"]
    with pytest.raises(ConfigError, match=match):
        simulate_sample(bad, seed=0)


def test_config_must_be_a_mapping_and_seed_valid():
    with pytest.raises(ConfigError, match="must be a mapping"):
        simulate_sample([1, 2], seed=0)
    with pytest.raises(ValueError, match="'seed' must be an integer >= 0"):
        simulate_sample(cfg(n_stars=1), seed=-1)
