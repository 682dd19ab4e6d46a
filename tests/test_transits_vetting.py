"""The transits search (BLS, several candidates) and the candidate vetter: views, diagnostics,
truth matching, the network, the star-level metrics and the two stages' error paths."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from omegaconf import OmegaConf

from deeprubin.core.config import ConfigError, compose_task
from deeprubin.sources.missions import mission_to_bjd
from deeprubin.tasks.transits.search import check_search_config, mask_found, search_lightcurve
from deeprubin.tasks.transits.simulate.transit import eclipse_flux, scaled_semi_major_axis
from deeprubin.tasks.transits.vetting import (DIAGNOSTICS, candidate_inputs, candidate_table, check_vet_config,
                                              folded_views, match_truth, transit_shape)


@pytest.fixture(scope="module")
def cfg():
    return compose_task("transits", [])


def _box(t, period, t0, duration, depth):
    return np.where(np.abs((t - t0 + 0.5 * period) % period - 0.5 * period) < 0.5 * duration, depth, 0.0)


def _lc(seed=1, noise=2e-4, span=60.0, cadence=0.0204):
    rng = np.random.default_rng(seed)
    t = np.arange(0, span, cadence)
    return t, 1 + noise * rng.standard_normal(t.size)


def test_search_recovers_an_injected_box_period_epoch_and_depth(cfg):
    t, flux = _lc()
    flux = flux - _box(t, 4.7, 3.3, 4.0 / 24, 1e-3)            # a 4-h box: on the duration grid
    found = search_lightcurve(t, flux, cfg.search)
    top = found[0]
    assert top["rank"] == 1
    assert top["period"] == pytest.approx(4.7, rel=1e-3)           # refined: the 0.1 % the real planets need
    assert abs((top["t0"] - 3.3 + 2.35) % 4.7 - 2.35) < 0.06      # epoch within half the duration
    assert top["depth"] == pytest.approx(1e-3, rel=0.15)
    assert top["duration"] == pytest.approx(4.0 / 24)
    assert top["depth_snr"] > 20
    t2, noise_only = _lc(seed=2)
    assert top["sde"] > search_lightcurve(t2, noise_only, cfg.search)[0]["sde"] + 3


def test_search_masks_a_found_planet_and_finds_the_second(cfg):
    t, flux = _lc(seed=3)
    flux = flux - _box(t, 4.7, 3.3, 0.125, 1.5e-3) - _box(t, 11.3, 2.0, 0.2, 1e-3)
    found = search_lightcurve(t, flux, cfg.search)
    periods = sorted(round(c["period"], 1) for c in found[:2])
    assert periods == [4.7, 11.3]
    assert [c["rank"] for c in found] == list(range(1, len(found) + 1))
    keep = mask_found(t, found[:1], float(cfg.search.mask_factor))
    assert 0 < (~keep).sum() < 0.15 * t.size                      # only the first planet's transits go


def test_search_keeps_only_the_first_weak_candidate(cfg):
    t, flux = _lc(seed=4)
    found = search_lightcurve(t, flux, cfg.search)
    assert len(found) >= 1                                         # every light curve gets a score
    assert all(c["depth_snr"] >= float(cfg.search.min_snr) for c in found[1:])


def test_folded_views_have_their_shapes_and_the_transit_at_the_centre(cfg):
    t, flux = _lc(noise=1e-4)
    flux = flux - _box(t, 4.7, 3.3, 0.2, 1e-3)
    g, loc = folded_views(t, flux, 4.7, 3.3, 0.2, 1e-3, cfg.vet)
    assert g.shape == (int(cfg.vet.n_global),) and loc.shape == (int(cfg.vet.n_local),)
    assert g.dtype == np.float32
    assert np.argmin(g) in range(len(g) // 2 - 2, len(g) // 2 + 3)
    assert loc[len(loc) // 2] == pytest.approx(-1.0, abs=0.15)    # in units of the found depth
    assert abs(np.median(g[:40])) < 0.2                            # out of transit at 0
    x = candidate_inputs(t, flux, {"period": 4.7, "t0": 3.3, "duration": 0.2, "depth": 1e-3, "depth_snr": 30,
                                   "sde": 10, "n_transits": 12, "depth_odd": 1e-3, "depth_odd_err": 1e-5,
                                   "depth_even": 1e-3, "depth_even_err": 1e-5, "depth_secondary": 0.0,
                                   "depth_secondary_err": 1e-5, "harmonic_dll": -5.0}, cfg.vet)
    assert x.shape == (int(cfg.vet.n_global) + int(cfg.vet.n_local) + len(DIAGNOSTICS),)


def test_odd_even_and_secondary_diagnostics_flag_an_eclipsing_binary(cfg):
    t, flux = _lc(noise=1e-4)
    period = 3.1
    eb = eclipse_flux(t, 1.0, period, 0.01, 0.3, scaled_semi_major_axis(period, 1.5, 1.0), True, 0.0204, 1)
    # BLS at half the binary's period folds primaries and secondaries together: odd != even
    half = search_lightcurve(t, flux * eb, OmegaConf.merge(cfg.search, {"max_candidates": 1}))[0]
    t_p, flux_p = _lc(noise=1e-4, seed=9)
    planet = flux_p - _box(t_p, period, 1.0, 0.12, 0.01)
    clean = search_lightcurve(t_p, planet, OmegaConf.merge(cfg.search, {"max_candidates": 1}))[0]
    names = list(DIAGNOSTICS)

    def diag(time, f, c):
        return candidate_inputs(time, f, c, cfg.vet)[-len(DIAGNOSTICS):]

    d_eb, d_pl = diag(t, flux * eb, half), diag(t_p, planet, clean)
    if abs(half["period"] - period / 2) < 0.01 * period:
        assert d_eb[names.index("odd_even_sigma")] > 3 > d_pl[names.index("odd_even_sigma")]
    else:  # found at the full period: the secondary eclipse at phase 0.5 shows
        assert d_eb[names.index("secondary_sigma")] > 3 > d_pl[names.index("secondary_sigma")]
    # V-shaped eclipse vs flat-bottomed box
    assert transit_shape(t, flux * eb, period, 1.0, 0.25) < transit_shape(t_p, planet, period, 1.0, 0.12) - 0.1


def test_implied_albedo_tells_a_planet_occultation_from_a_binary_secondary():
    from deeprubin.tasks.transits.vetting import implied_albedo

    # HAT-P-7 b as the search finds it in Kepler short cadence: 5.6e-3 deep, 91 ppm at phase 0.5
    hot_jupiter = {"period": 2.2068, "duration": 0.167, "depth": 5.57e-3, "depth_secondary": 9.1e-5}
    binary = {"period": 2.2068, "duration": 0.167, "depth": 5.57e-3, "depth_secondary": 0.3 * 5.57e-3}
    assert 0.1 < implied_albedo(hot_jupiter) < 1.0 < 3.0 < implied_albedo(binary)
    assert implied_albedo({**binary, "depth": 0.0}) == 0.0 and implied_albedo({**binary, "duration": -1}) == 0.0


def test_a_planets_occultation_is_exempted_and_a_binarys_secondary_is_not(cfg):
    from deeprubin.tasks.transits.vetting import diagnostics, planetary_occultation

    names = list(DIAGNOSTICS)
    base = {"period": 2.2068, "duration": 0.167, "depth": 5.57e-3, "depth_snr": 600.0, "sde": 8.0, "n_transits": 4,
            "depth_odd": 5.57e-3, "depth_even": 5.57e-3, "depth_odd_err": 1e-5, "depth_even_err": 1e-5,
            "depth_secondary_err": 1e-5, "harmonic_dll": -10.0}
    # HAT-P-7 b: a 9-sigma occultation found again, once the transits are masked, at half the period
    hot_jupiter = {**base, "depth_secondary": 9.1e-5, "period_twin": 1.0, "twin_phase": 0.01,
                   "twin_log_depth_ratio": -1.6, "twin_period_ratio": 0.5}
    binary = {**base, "depth_secondary": 0.3 * 5.57e-3, "period_twin": 1.0, "twin_phase": 0.5,
              "twin_log_depth_ratio": np.log10(0.3), "twin_period_ratio": 1.0}
    assert planetary_occultation(hot_jupiter, cfg.vet) == (True, True)
    assert planetary_occultation(binary, cfg.vet) == (False, False)
    d_hj, d_eb = diagnostics(hot_jupiter, 1.0, cfg.vet), diagnostics(binary, 1.0, cfg.vet)
    for name in ("secondary_sigma", "secondary_ratio", "implied_albedo", "period_twin", "twin_log_depth_ratio"):
        assert d_hj[names.index(name)] == 0.0 and d_eb[names.index(name)] != 0.0, name
    assert d_hj[names.index("occultation_consistent")] == 1.0 and d_eb[names.index("occultation_consistent")] == 0.0
    # too deep for a planet: no exemption however small the secondary; a twin at the transit's own phase: none
    assert planetary_occultation({**hot_jupiter, "depth": 0.2}, cfg.vet) == (False, False)
    assert planetary_occultation({**hot_jupiter, "twin_period_ratio": 1.0, "twin_phase": 0.0}, cfg.vet)[1] is False


def _truths(kind="planet", period=5.0, t0_mission=2.0, duration=0.2, mission="Kepler"):
    return pd.DataFrame({"object_id": ["A"], "target_id": ["A"], "kind": [kind], "period": [period],
                         "t0_bjd": [float(mission_to_bjd(t0_mission, mission).jd)], "duration": [duration]})


def test_match_truth_names_planet_harmonics_binaries_and_false_alarms(cfg):
    planet = _truths()
    far = 2.0 + 5.0 * 300                                          # 300 orbits later: exact true period
    assert match_truth(5.0, far + 0.05, 0.2, planet, "Kepler", cfg.vet) == "planet"
    assert match_truth(10.0, far + 5.0, 0.2, planet, "Kepler", cfg.vet) == "planet"    # twice the period
    assert match_truth(2.5, far + 2.5, 0.2, planet, "Kepler", cfg.vet) == "planet"     # half
    assert match_truth(5.0, far + 1.0, 0.2, planet, "Kepler", cfg.vet) == "false_alarm"  # wrong epoch
    assert match_truth(7.0, far, 0.2, planet, "Kepler", cfg.vet) == "false_alarm"
    assert match_truth(5.0, 2.0, 0.2, planet.iloc[:0], "Kepler", cfg.vet) == "false_alarm"
    binary = _truths(kind="eb")
    assert match_truth(5.0, far + 2.5, 0.2, binary, "Kepler", cfg.vet) == "eclipsing_binary"  # the secondary


def test_vetter_shapes_and_overfits_one_batch(cfg):
    from deeprubin.core.models import build_model, resolve_model_config

    model_cfg = resolve_model_config(cfg.vet.model, n_global=int(cfg.vet.n_global), n_local=int(cfg.vet.n_local),
                                     n_diagnostics=len(DIAGNOSTICS))
    model = build_model(model_cfg, n_inputs=1, n_classes=1)
    width = int(cfg.vet.n_global) + int(cfg.vet.n_local) + len(DIAGNOSTICS)
    torch.manual_seed(0)
    x = torch.randn(16, 1, width)
    y = (torch.arange(16) % 2).float()
    assert model(x).shape == (16, 1)
    with pytest.raises(ValueError, match="input length"):
        model(torch.randn(2, 1, width - 1))
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(150):
        opt.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(model(x).squeeze(-1), y)
        loss.backward()
        opt.step()
    assert loss.item() < 0.05


def test_search_and_vet_config_errors_name_the_key(cfg):
    bad = OmegaConf.merge(cfg.search, {"max_candidates": 0})
    with pytest.raises(ConfigError, match="max_candidates"):
        check_search_config(bad)
    with pytest.raises(ConfigError, match="durations_hours"):
        check_search_config(OmegaConf.merge(cfg.search, {"durations_hours": [2.0, -1.0]}))
    with pytest.raises(ConfigError, match="max_period_fraction"):
        check_search_config(OmegaConf.merge(cfg.search, {"max_period_fraction": 2.0}))
    with pytest.raises(ConfigError, match="n_local"):
        check_vet_config(OmegaConf.merge(cfg.vet, {"n_local": 2}))
    with pytest.raises(ConfigError, match="occultation.max_albedo"):
        check_vet_config(OmegaConf.merge(cfg.vet, {"occultation": {"max_albedo": 0.0}}))


def _survey():
    """Two stars (one planet, one noise) per split, one light curve each."""
    rows, objects, eph = [], [], []
    for i, split in enumerate(["train", "train", "val", "val", "test", "test"]):
        t, flux = _lc(seed=10 + i, span=30.0)
        oid = f"S{i}-Kepler"
        label = "planet" if i % 2 == 0 else "no_planet"
        if label == "planet":
            flux = flux - _box(t, 3.7, 1.1, 0.15, 2e-3)
            eph.append({"object_id": oid, "target_id": f"S{i}", "kind": "planet", "period": 3.7,
                        "t0_bjd": float(mission_to_bjd(1.1, "Kepler").jd), "duration": 0.15, "snr_total": 50.0})
        rows.append(pd.DataFrame({"object_id": oid, "time": t, "flux": flux}))
        objects.append({"object_id": oid, "target_id": f"S{i}", "mission": "Kepler", "label": label, "split": split})
    return pd.concat(rows, ignore_index=True), pd.DataFrame(objects).set_index("object_id"), pd.DataFrame(eph)


def test_candidate_table_labels_from_truth_and_keeps_each_star_in_its_split(cfg):
    flat, objects, eph = _survey()
    fast = OmegaConf.merge(cfg.search, {"n_periods": 400, "n_jobs": 1})
    table, x = candidate_table(flat, objects, eph, objects["split"].to_dict(), fast, cfg.vet)
    assert len(table) == len(x) and x.dtype == np.float32
    assert table.groupby("target_id")["split"].nunique().max() == 1   # grouped: a star's candidates share a split
    top = table[table["rank"] == 1].set_index("object_id")
    assert (top.loc[objects.index[objects["label"] == "planet"], "truth"] == "planet").all()
    assert (table.loc[table["star_label"] == "no_planet", "truth"] == "false_alarm").all()
    assert set(table["label"]) <= {0, 1} and table["label"].sum() == (table["truth"] == "planet").sum()
    with pytest.raises(ValueError, match="'ghost-Kepler' is not in objects"):
        candidate_table(pd.concat([flat, flat.head(50).assign(object_id="ghost-Kepler")]), objects, eph,
                        objects["split"].to_dict(), fast, cfg.vet, where="flat.parquet")


def test_vetting_metrics_per_star_with_intervals_and_errors():
    from deeprubin.tasks.transits.vet_metrics import comparison_table, vetting_metrics

    rng = np.random.default_rng(0)
    n = 200
    label = rng.integers(0, 2, n)
    stars = pd.DataFrame({"target_id": [f"T{i}" for i in range(n)], "split": np.where(np.arange(n) < 100, "val", "test"),
                          "label": label, "eclipsing_binary": (1 - label) * (rng.random(n) < 0.3),
                          "snr_total": np.where(label == 1, rng.uniform(1, 40, n), np.nan),
                          "vet": label + 0.3 * rng.standard_normal(n), "bls_sde": label + rng.standard_normal(n),
                          "bls_snr": rng.standard_normal(n)})
    m = vetting_metrics(stars, 0.01, 7.1, 50, 0)
    v = m["methods"]["vet"]
    assert v["roc_auc"] > m["methods"]["bls_sde"]["roc_auc"] > m["methods"]["bls_snr"]["roc_auc"] - 0.2
    assert v["roc_auc_ci95"][0] <= v["roc_auc"] <= v["roc_auc_ci95"][1]
    assert m["n_stars"]["test"] == 100 and "segment" not in m["methods"]
    table = comparison_table(m)
    assert table["method"].tolist() == ["vet", "bls_sde", "bls_snr"] and "roc_auc_low" in table
    with pytest.raises(ValueError, match="validation and test splits need stars with and without a planet"):
        vetting_metrics(stars.assign(label=np.where(stars["split"] == "val", 1, stars["label"])), 0.01, 7.1, 5, 0)


def test_fit_vetter_ensemble_saves_and_loads_as_one_predictor(cfg, tmp_path):
    from deeprubin.core.checkpoint import load_checkpoint, write_model_outputs
    from deeprubin.core.models import resolve_model_config
    from deeprubin.core.models.ensemble import DeepEnsemble
    from deeprubin.core.training import SplitArrays
    from deeprubin.tasks.transits.fit import fit_vetter
    from deeprubin.tasks.transits.module import predict_scores

    n_g, n_l = 32, 16
    model_cfg = resolve_model_config(OmegaConf.merge(cfg.vet.model, {"global_channels": [4], "local_channels": [4],
                                                                     "hidden": [8]}),
                                     n_global=n_g, n_local=n_l, n_diagnostics=len(DIAGNOSTICS))
    rng = np.random.default_rng(0)
    x = rng.standard_normal((40, 1, n_g + n_l + len(DIAGNOSTICS))).astype(np.float32)
    y = (np.arange(40) % 2).astype(np.int64)
    x[y == 1, 0, n_g + n_l // 2] -= 3.0                      # a dip in the local view's centre
    part = SplitArrays(np.arange(40), x, y)
    trainer = OmegaConf.merge(cfg.vet.trainer, {"max_epochs": 2, "ensemble_members": 2, "torch_threads": 1})
    result = fit_vetter(trainer, model_cfg, part, part, seed=3, view_sizes=(n_g, n_l))
    assert isinstance(result.model, DeepEnsemble) and set(result.history["member"]) == {0, 1}
    write_model_outputs(tmp_path, result.model, history=result.history, model_config=model_cfg, classes=["planet"],
                        bands=["global_view", "local_view", "diagnostics"], n_inputs=1, config={"seed": 3},
                        metadata={})
    loaded, _ = load_checkpoint(tmp_path / "model.ckpt")
    np.testing.assert_allclose(predict_scores(loaded, x), predict_scores(result.model, x), rtol=1e-6)
    with pytest.raises(ConfigError, match="ensemble_members"):
        fit_vetter(OmegaConf.merge(trainer, {"ensemble_members": 0}), model_cfg, part, part, seed=3)
    with pytest.raises(ValueError, match="the val candidates need planets and non-planets"):
        fit_vetter(trainer, model_cfg, part, SplitArrays(np.arange(4), x[:4], np.zeros(4, np.int64)), seed=3)


def test_view_flip_reverses_the_views_and_keeps_the_diagnostics():
    from deeprubin.tasks.transits.fit import CandidateVetterModule

    captured = {}

    class Probe(torch.nn.Module):
        def forward(self, x):
            captured["x"] = x.clone()
            return x[..., :1].sum(-1)

    module = CandidateVetterModule(Probe(), 1e-3, 0.0, view_sizes=(3, 2))
    module.log = lambda *a, **k: None
    x = torch.arange(8, dtype=torch.float32).repeat(64, 1)[:, None, :]      # views 0 1 2 | 3 4 | diagnostics 5 6 7
    torch.manual_seed(0)
    module.training_step((x, torch.zeros(64)), 0)
    out = captured["x"][:, 0]
    flipped = out[:, 0] == 2
    assert 0 < flipped.sum() < 64
    assert torch.equal(out[flipped][0], torch.tensor([2., 1., 0., 4., 3., 5., 6., 7.]))
    assert torch.equal(out[~flipped][0], torch.arange(8, dtype=torch.float32))


def test_vet_known_planet_reports_rank_period_and_pass():
    from deeprubin.tasks.transits.real import vet_known_planet

    cands = [{"rank": 1, "period": 2.2048, "t0": 1.0, "duration": 0.16, "depth": 6e-3, "depth_snr": 300, "sde": 20},
             {"rank": 2, "period": 7.1, "t0": 2.0, "duration": 0.1, "depth": 1e-4, "depth_snr": 8, "sde": 5}]
    found = vet_known_planet(cands, np.array([0.9, 0.2]), 2.2047, 0.5, 0.001)
    assert found["found"] and found["known_planet_rank"] == 1 and found["passes_vetting"]
    assert found["top_candidate_period_error"] < 1e-4 and len(found["candidates"]) == 2
    missed = vet_known_planet(cands[::-1], np.array([0.2, 0.3]), 2.2047, 0.5, 0.001)
    assert not missed["found"] and missed["known_planet_rank"] == 1 and not missed["passes_vetting"]
    wrong = vet_known_planet(cands, np.array([0.9, 0.2]), 4.5, 0.5, 0.001)
    assert wrong["known_planet_rank"] is None and not wrong["found"]
    none = vet_known_planet([], np.zeros(0), 2.2, 0.5, 0.001)
    assert none["top_candidate_period"] is None and not none["found"]


def test_task_metrics_gathers_the_headline_keys_and_names_missing_ones(tmp_path):
    from deeprubin.core import io
    from deeprubin.stages.transits_report import run_transits_report
    from deeprubin.tasks.transits.report import task_metrics

    def method(name, auc):
        return {"name": name, "roc_auc": auc, "roc_auc_ci95": [auc - 0.1, auc + 0.01], "recall_snr_ge_threshold": auc / 2,
                "eb_false_positive_rate": 0.05, "threshold": 0.5, "val_roc_auc": auc}

    vetting = {"target_fpr": 0.01, "snr_threshold": 7.1, "n_stars": {"test": 10}, "selected_by_validation": "segment",
               "methods": {"vet": method("vet", 0.9), "bls_sde": method("sde", 0.7), "segment": method("seg", 0.8)}}
    real = {"skipped": False, "targets": {
        "A": {"mission": "Kepler", "vetting": {"known_period": 2.0, "top_candidate_period": 2.001,
                                               "top_candidate_period_error": 5e-4, "known_planet_rank": 1,
                                               "vetting_score": 0.9, "passes_vetting": True, "found": True}},
        "B": {"skipped": True, "reason": "no file"}}}
    m = task_metrics({"segment": {"roc_auc": 0.6}}, vetting, real)
    assert m["star"]["method"] == "segment" and m["star"]["roc_auc"] == 0.8 and m["star"]["roc_auc_ci95"] == pytest.approx([0.7, 0.81])
    assert m["vetting"]["recall_snr_ge_7p1_at_1pct_fpr"] == 0.45 and m["bls"]["recall_snr_ge_7p1_at_1pct_fpr"] == 0.35
    assert m["eb_false_positive_rate"] == 0.05 and m["segment"]["segments"]["roc_auc"] == 0.6
    assert m["real"]["A"] == {"mission": "Kepler", "known_period": 2.0, "found_period": 2.001, "period_error": 5e-4,
                              "rank": 1, "vetting_score": 0.9, "passes_vetting": True, "found_top_and_passing": True}
    assert m["real"]["B"] == {"skipped": True, "reason": "no file"}
    with pytest.raises(KeyError, match="'methods.segment'"):
        task_metrics({}, {**vetting, "methods": {k: vetting["methods"][k] for k in ("vet", "bls_sde")}}, real)
    # the stage: a missing report names the file and the stage that writes it; nothing is written
    reports = tmp_path / "reports"
    cfg = OmegaConf.create({"paths": {"reports": str(reports), "metrics": str(reports / "segment/metrics.json")}})
    io.write_json({"segment": {}}, reports / "segment/metrics.json")
    io.write_json(vetting, reports / "vetting/metrics.json")
    with pytest.raises(FileNotFoundError, match="real_report.json: no such file; run transits_real"):
        run_transits_report(cfg)
    assert not (reports / "metrics.json").exists()
    io.write_json(real, reports / "real/real_report.json")
    io.write_json({"selected_by_validation": "vet"}, reports / "vetting/metrics.json")
    with pytest.raises(ValueError, match="vetting/metrics.json: vetting metrics: no 'methods'"):
        run_transits_report(cfg)
    io.write_json(vetting, reports / "vetting/metrics.json")
    assert run_transits_report(cfg)["star"]["method"] == "segment"
    assert io.read_json(reports / "metrics.json")["sources"]["real"].endswith("real_report.json")
