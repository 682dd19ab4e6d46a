"""The stellar task's spectrum preprocessing: rest frame, flux-conserving resampling,
continuum normalisation and the network input tensor."""
from __future__ import annotations

import numpy as np
import pytest

from deeprubin.core.config import ConfigError
from deeprubin.tasks.stellar.preprocess import (C_KMS, continuum_normalise, doppler_to_rest, grid_from_cfg,
                                                 pixel_edges, resample_flux, spectra_to_inputs)

WAVE = 10.0 ** np.arange(3.5798, 3.9638, 1e-4)           # SDSS-like observed grid
GRID = {"log10_min": 3.5850, "log10_max": 3.9580, "log10_step": 4e-4}
CONT = {"order": 8, "n_iter": 8, "clip_low": 1.5, "clip_high": 3.0}


def _gaussian(wave, centre, sigma, depth):
    return depth * np.exp(-0.5 * ((wave - centre) / sigma) ** 2)


def _centroid(wave, absorption):
    return float(np.sum(wave * absorption) / np.sum(absorption))


# -- Doppler ----------------------------------------------------------------------------------

def test_rest_frame_recovers_a_shifted_line_within_a_fraction_of_a_pixel():
    rest_line, rv = 6564.6, 300.0
    beta = rv / C_KMS
    observed = rest_line * np.sqrt((1 + beta) / (1 - beta))
    flux = 1.0 - _gaussian(WAVE, observed, 1.5, 0.5)
    rest = doppler_to_rest(WAVE, rv)
    grid = 10.0 ** np.arange(3.80, 3.83, 1e-4)
    f, _, m = resample_flux(rest, flux, np.ones_like(flux), np.zeros(flux.shape, bool), grid)
    centre = _centroid(grid, 1.0 - f[0])
    pixel = rest_line * (10 ** 1e-4 - 1)
    assert abs(centre - rest_line) < 0.1 * pixel
    assert not m.any()


def test_doppler_shapes_and_first_order_agreement():
    rv = np.array([-100.0, 0.0, 250.0])
    rest = doppler_to_rest(WAVE, rv)
    assert rest.shape == (3, WAVE.size)
    np.testing.assert_allclose(rest[1], WAVE)
    np.testing.assert_allclose(rest[2], WAVE * (1 - 250.0 / C_KMS), rtol=1e-6)   # beta^2 ~ 7e-7
    assert doppler_to_rest(WAVE, 10.0).shape == WAVE.shape


@pytest.mark.parametrize("wave, rv, match", [
    (WAVE[::-1], 0.0, "'wave' must be strictly increasing"),
    (np.array([1.0, np.nan]), 0.0, "'wave' must hold finite"),
    (WAVE, np.inf, "'rv_kms' must be finite"),
    (WAVE, 4e5, "'rv_kms' must be finite"),
    (WAVE, np.zeros((2, 2)), "'rv_kms' must be a scalar or 1-D"),
    (np.tile(WAVE, (2, 1)), np.zeros(3), "'wave' has 2 rows but 'rv_kms' 3"),
])
def test_doppler_bad_input(wave, rv, match):
    with pytest.raises(ValueError, match=match):
        doppler_to_rest(wave, rv)


# -- resampling -------------------------------------------------------------------------------

def test_resampling_conserves_integrated_flux_and_propagates_variance():
    rng = np.random.default_rng(0)
    flux = rng.uniform(0.5, 2.0, (3, WAVE.size))
    ivar = np.full_like(flux, 4.0)
    out = 10.0 ** np.arange(3.60, 3.94, 4e-4)
    f, iv, m = resample_flux(WAVE, flux, ivar, np.zeros(flux.shape, bool), out)
    e_in, e_out = pixel_edges(WAVE), pixel_edges(out)
    inside = (e_in[:-1] >= e_out[0]) & (e_in[1:] <= e_out[-1])
    # the input pixels strictly inside the output range: their integral equals the output's,
    # up to the two partial pixels at the ends
    lo, hi = np.argmax(inside), len(inside) - np.argmax(inside[::-1])
    total_in = (flux[:, lo:hi] * np.diff(e_in)[lo:hi]).sum(axis=1)
    total_out = (f * np.diff(e_out)).sum(axis=1)
    ends = 2 * flux.max() * np.diff(e_in).max()
    assert np.all(np.abs(total_out - total_in) < ends)
    assert not m.any()
    # ~4 input pixels per output pixel: variance down ~4x, so ivar ~ 16
    assert 12 < np.median(iv) < 20
    # a constant spectrum stays constant
    c, _, _ = resample_flux(WAVE, np.full(WAVE.size, 3.0), np.ones(WAVE.size), np.zeros(WAVE.size, bool), out)
    np.testing.assert_allclose(c, 3.0, rtol=1e-12)


def test_resampling_masks_bad_and_uncovered_pixels():
    flux = np.ones((2, WAVE.size))
    ivar = np.ones_like(flux)
    mask = np.zeros(flux.shape, bool)
    mask[0, 2000] = True
    ivar[1, 3000] = 0.0
    out = 10.0 ** np.arange(3.575, 3.97, 4e-4)               # wider than the data on both sides
    f, iv, m = resample_flux(WAVE, flux, ivar, mask, out)
    hit0 = (out > WAVE[1998]) & (out < WAVE[2002])
    hit1 = (out > WAVE[2998]) & (out < WAVE[3002])
    assert m[0, hit0].any() and not m[1, hit0].any()
    assert m[1, hit1].any() and not m[0, hit1].any()
    assert np.all(iv[m] == 0)
    outside = (out < WAVE[0]) | (out > WAVE[-1])
    assert m[:, outside].all()
    np.testing.assert_allclose(f[~m], 1.0)


@pytest.mark.parametrize("args, match", [
    ((WAVE, np.ones((2, 5)), np.ones((2, 5)), np.zeros((2, 5), bool), WAVE[:100]), "'flux' has shape"),
    ((WAVE, np.ones(WAVE.size), np.ones(7), np.zeros(WAVE.size, bool), WAVE[:100]), "'ivar' has shape"),
    ((WAVE, np.ones(WAVE.size), np.ones(WAVE.size), np.zeros(3, bool), WAVE[:100]), "'mask' has shape"),
    ((WAVE[::-1], np.ones(WAVE.size), np.ones(WAVE.size), np.zeros(WAVE.size, bool), WAVE[:100]), "'wave_in'"),
    ((WAVE, np.ones(WAVE.size), np.ones(WAVE.size), np.zeros(WAVE.size, bool), WAVE[100:0:-1]), "'wave_out'"),
    ((WAVE, np.ones(WAVE.size), np.ones(WAVE.size), np.zeros(WAVE.size, bool), np.array([1e5, 1.1e5])),
     "'wave_out' .* does not overlap"),
    ((np.tile(WAVE, (3, 1)), np.ones((2, WAVE.size)), np.ones((2, WAVE.size)), np.zeros((2, WAVE.size), bool),
      WAVE[:100]), "'wave_in' has 3 rows"),
])
def test_resampling_bad_input(args, match):
    with pytest.raises(ValueError, match=match):
        resample_flux(*args)


# -- continuum --------------------------------------------------------------------------------

def test_continuum_normalisation_of_a_known_continuum():
    grid = grid_from_cfg(GRID)
    x = (grid - 6500.0) / 2600.0
    continuum = 50.0 * (1.0 + 0.3 * x - 0.2 * x ** 2 + 0.1 * x ** 3)
    lines = np.ones_like(grid)
    for centre, width, depth in ((3934.8, 6.0, 0.8), (4862.7, 8.0, 0.5), (5175.0, 3.0, 0.4), (5891.6, 2.0, 0.5),
                                 (6564.6, 6.0, 0.5), (8544.4, 3.0, 0.5)):
        lines -= _gaussian(grid, centre, width, depth)
    rng = np.random.default_rng(1)
    snr = 200.0
    flux = continuum * lines + rng.normal(0.0, 1.0, grid.size) * continuum / snr
    ivar = (snr / continuum) ** 2
    nf, niv, cont = continuum_normalise(grid, flux, ivar, np.zeros(grid.size, bool), CONT)
    away = lines > 0.999
    assert abs(np.median(nf[0, away]) - 1.0) < 3.0 / snr
    assert np.max(np.abs(cont[0, away] / continuum[away] - 1.0)) < 0.02
    np.testing.assert_allclose(niv[0], ivar * cont[0] ** 2)
    # masked pixels (here garbage) do not pull the fit
    bad = np.zeros(grid.size, bool)
    bad[400:430] = True
    flux_bad = np.where(bad, 1e4, flux)
    _, _, cont_bad = continuum_normalise(grid, flux_bad, ivar, bad, CONT)
    assert np.max(np.abs(cont_bad[0, away] / continuum[away] - 1.0)) < 0.02


def test_continuum_with_too_few_good_pixels_is_a_constant():
    grid = grid_from_cfg(GRID)
    flux = np.full(grid.size, 5.0)
    mask = np.ones(grid.size, bool)
    mask[:5] = False
    nf, _, cont = continuum_normalise(grid, flux, np.ones(grid.size), mask, CONT)
    np.testing.assert_allclose(cont, 5.0)
    np.testing.assert_allclose(nf, 1.0)


@pytest.mark.parametrize("cfg, match", [
    ({"n_iter": 3, "clip_low": 1.0, "clip_high": 3.0}, "'continuum.order' is missing"),
    ({"order": 2.5, "n_iter": 3, "clip_low": 1.0, "clip_high": 3.0}, "'continuum.order' must be an integer"),
    ({"order": 5, "n_iter": 0, "clip_low": 1.0, "clip_high": 3.0}, "'continuum.n_iter' must be >= 1"),
    ({"order": 5, "n_iter": 3, "clip_low": 0.0, "clip_high": 3.0}, "'continuum.clip_low'"),
    ({"order": 5, "n_iter": 3, "clip_low": 1.0, "clip_high": "x"}, "'continuum.clip_high' must be a number"),
])
def test_continuum_config_errors(cfg, match):
    grid = grid_from_cfg(GRID)
    with pytest.raises(ConfigError, match=match):
        continuum_normalise(grid, np.ones(grid.size), np.ones(grid.size), np.zeros(grid.size, bool), cfg)


def test_continuum_shape_errors():
    grid = grid_from_cfg(GRID)
    with pytest.raises(ValueError, match="'ivar' has shape"):
        continuum_normalise(grid, np.ones((2, grid.size)), np.ones((3, grid.size)), np.zeros((2, grid.size), bool), CONT)


# -- network inputs ---------------------------------------------------------------------------

def test_spectra_to_inputs_contract():
    rng = np.random.default_rng(2)
    n = 4
    continuum = 10.0 * (WAVE / 6000.0) ** -1.0
    flux = np.tile(continuum * (1.0 - _gaussian(WAVE, 6564.6, 4.0, 0.5)), (n, 1))
    flux += rng.normal(0.0, 1.0, flux.shape) * continuum / 50.0
    ivar = np.tile((50.0 / continuum) ** 2, (n, 1))
    mask = np.zeros(flux.shape, bool)
    mask[1, 1000:1040] = True
    ivar[mask] = 0.0
    x, grid = spectra_to_inputs(WAVE, flux.astype(np.float32), ivar.astype(np.float32), mask, np.zeros(n),
                                GRID, CONT, error_clip=0.5)
    assert x.shape == (n, 3, grid.size) and x.dtype == np.float32
    np.testing.assert_allclose(grid, grid_from_cfg(GRID))
    bad = x[:, 2] > 0
    assert bad[1].any() and not bad[0].any()
    assert np.all(x[:, 0][bad] == 1.0) and np.all(x[:, 1][bad] == 0.5)
    assert np.all(x[:, 1] <= 0.5) and np.all(x[:, 1] > 0)
    away = np.abs(grid - 6564.6) > 40
    assert abs(np.median(x[0, 0, away]) - 1.0) < 0.01
    assert np.median(x[0, 1, away]) == pytest.approx(1 / 50 / 2, rel=0.25)   # 4 pixels binned: S/N ~ 100
    assert x[0, 0, np.argmin(np.abs(grid - 6564.6))] < 0.7


@pytest.mark.parametrize("kwargs, match", [
    ({"grid_cfg": {"log10_min": 3.55, "log10_max": 3.95, "log10_step": 4e-4}}, "'grid_cfg' grid .* outside"),
    ({"grid_cfg": {"log10_min": 3.60, "log10_step": 4e-4}}, "'grid.log10_max' is missing"),
    ({"grid_cfg": {"log10_min": 3.70, "log10_max": 3.60, "log10_step": 4e-4}}, "grid.log10_min"),
    ({"error_clip": 0.0}, "'error_clip' must be a number > 0"),
    ({"rv_kms": np.zeros(5)}, "'rv_kms' has 5 values but 'flux' 2"),
    ({"wave_obs": WAVE[::-1]}, "'wave_obs' must be strictly increasing"),
])
def test_spectra_to_inputs_bad_input(kwargs, match):
    args = {"wave_obs": WAVE, "flux": np.ones((2, WAVE.size)), "ivar": np.ones((2, WAVE.size)),
            "mask": np.zeros((2, WAVE.size), bool), "rv_kms": np.zeros(2), "grid_cfg": GRID,
            "continuum_cfg": CONT, "error_clip": 1.0}
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        spectra_to_inputs(**args)
