"""The stellar task's multi-task networks, their loss, Lightning module, fit and checkpoint round trip."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from deeprubin.core.checkpoint import load_checkpoint, save_checkpoint
from deeprubin.core.config import ConfigError
from deeprubin.core.models import build_model
from deeprubin.tasks.stellar.fit import (StellarArrays, TargetScaler, check_arrays, check_trainer_config,
                                         fit_stellar, make_loader, predict_outputs)
from deeprubin.tasks.stellar.model import LOG_VAR_MAX, LOG_VAR_MIN, MODELS, soft_clamp, split_outputs
from deeprubin.tasks.stellar.module import gaussian_nll, history_columns

TARGETS = ["teff", "logg", "feh"]
N_CLASSES = 6
N_GRID = 96
SMALL = {
    "SpectralCNN": {"channels": [8, 16], "kernel_sizes": [5, 3], "pooled_length": 4, "hidden": [32]},
    "SpectralTransformer": {"patch_size": 10, "d_model": 16, "n_heads": 2, "n_layers": 1, "dim_feedforward": 32,
                            "hidden": [16]},
    "SEDNet": {"hidden": [32, 32]},
}


def target(name: str) -> str:
    return f"deeprubin.tasks.stellar.model.{name}"


def small_model(name: str, n_inputs: int = 3, n_classes: int = N_CLASSES, **extra) -> torch.nn.Module:
    return build_model({"_target_": target(name), **SMALL[name], **extra}, n_inputs=n_inputs, n_classes=n_classes)


def synthetic_spectra(n: int, seed: int = 0, n_grid: int = N_GRID) -> StellarArrays:
    """Continuum-normalised spectra with one absorption line: its position sets the class, its depth,
    width and the continuum slope the three (standardised) targets."""
    rng = np.random.default_rng(seed)
    y = (np.arange(n) % N_CLASSES).astype(np.int64)
    z = rng.standard_normal((n, 3)).clip(-2, 2)
    pix = np.arange(n_grid)[None, :]
    centre = (y[:, None] + 0.5) / N_CLASSES * n_grid
    depth, width, slope = 0.4 + 0.15 * z[:, :1], 2.5 + 0.8 * z[:, 1:2], 0.1 * z[:, 2:3]
    flux = 1 + slope * (pix / n_grid - 0.5) - depth * np.exp(-0.5 * ((pix - centre) / width) ** 2)
    flux = flux + rng.normal(0, 0.01, flux.shape)
    x = np.stack([flux, np.full_like(flux, 0.01), np.zeros_like(flux)], axis=1).astype(np.float32)
    return StellarArrays(np.arange(n), x, y, z.astype(np.float32), np.ones((n, 3), bool))


def trainer_cfg(**overrides):
    base = {"max_epochs": 2, "batch_size": 16, "learning_rate": 3e-3, "weight_decay": 1e-4,
            "early_stopping_patience": 3, "num_workers": 0, "monitor": "val_loss", "accelerator": "cpu",
            "deterministic": True, "progress_bar": False, "torch_threads": 1, "target_weight": 1.0,
            "label_smoothing": 0.0}
    return OmegaConf.create({**base, **overrides})


@pytest.mark.parametrize("name", MODELS)
def test_models_build_through_the_allow_list_with_the_output_layout(name):
    torch.manual_seed(0)
    n_inputs = 7 if name == "SEDNet" else 3
    model = small_model(name, n_inputs=n_inputs).eval()
    x = torch.randn(5, 7) if name == "SEDNet" else torch.randn(5, 3, N_GRID + 3)   # not a multiple of a patch
    out = model(x)
    assert out.shape == (5, N_CLASSES + 2 * 3)
    logits, mean, log_var = split_outputs(out, N_CLASSES, 3)
    assert logits.shape == (5, N_CLASSES) and mean.shape == log_var.shape == (5, 3)
    assert ((log_var > LOG_VAR_MIN) & (log_var < LOG_VAR_MAX)).all()
    assert model.n_classes == N_CLASSES and model.n_targets == 3


def test_sednet_handles_missing_features_and_a_trailing_axis():
    torch.manual_seed(0)
    model = small_model("SEDNet", n_inputs=5).eval()
    x = torch.randn(4, 5)
    x[0, 1], x[2, :] = float("nan"), float("nan")
    x[3, 4] = float("inf")
    out = model(x)
    assert torch.isfinite(out).all()
    assert torch.equal(out, model(x[..., None]))
    with pytest.raises(ValueError, match="SEDNet"):
        model(torch.randn(4, 6))


def test_transformer_variants_and_regression_only_heads():
    torch.manual_seed(0)
    model = small_model("SpectralTransformer", positional="learned", token_pooling="cls", max_patches=10).eval()
    assert model(torch.randn(2, 3, N_GRID)).shape == (2, 12)
    with pytest.raises(ValueError, match="max_patches"):
        model(torch.randn(2, 3, 11 * 10))
    sed = small_model("SEDNet", n_inputs=4, n_classes=0)
    assert sed(torch.randn(3, 4)).shape == (3, 6)


def test_split_outputs_and_the_log_variance_range():
    with pytest.raises(ValueError, match="n_classes \\+ 2 \\* n_targets"):
        split_outputs(torch.zeros(2, 11), N_CLASSES, 3)
    v = torch.tensor([-1e4, -20.0, 0.0, 20.0, 1e4])
    clamped = soft_clamp(v)
    assert (clamped >= LOG_VAR_MIN).all() and (clamped <= LOG_VAR_MAX).all()
    assert abs(float(soft_clamp(torch.tensor(-1.5))) + 1.5) < 1e-6         # identity at the middle
    _, _, log_var = split_outputs(torch.tensor([[0.0, 0.0, -50.0, 50.0]]), 0, 2)
    assert log_var.tolist() == [[LOG_VAR_MIN, LOG_VAR_MAX]]


@pytest.mark.parametrize("name, args, key", [
    ("SpectralCNN", {"kernel_sizes": [4, 3]}, "kernel_sizes"),
    ("SpectralCNN", {"kernel_sizes": [5, 3, 3]}, "kernel_sizes"),
    ("SpectralCNN", {"channels": []}, "channels"),
    ("SpectralCNN", {"dropout": 1.0}, "dropout"),
    ("SpectralCNN", {"pooling": "median"}, "pooling"),
    ("SpectralCNN", {"pool_size": 0}, "pool_size"),
    ("SpectralCNN", {"activation": "tanh"}, "activation"),
    ("SpectralCNN", {"n_targets": -1}, "n_targets"),
    ("SpectralTransformer", {"n_heads": 3}, "n_heads"),
    ("SpectralTransformer", {"patch_size": 0}, "patch_size"),
    ("SpectralTransformer", {"positional": "rotary"}, "positional"),
    ("SpectralTransformer", {"token_pooling": "max"}, "token_pooling"),
    ("SEDNet", {"hidden": []}, "hidden"),
    ("SEDNet", {"dropout": -0.1}, "dropout"),
])
def test_bad_constructor_arguments_name_the_model_and_argument(name, args, key):
    with pytest.raises(ValueError, match=f"{name}.*{key}"):
        small_model(name, n_inputs=3, **args)


def test_a_spectral_cnn_overfits_one_batch():
    torch.manual_seed(0)
    data = synthetic_spectra(32)
    x, y, t = torch.from_numpy(data.x), torch.from_numpy(data.y), torch.from_numpy(data.targets)
    mask = torch.from_numpy(data.target_mask)
    model = small_model("SpectralCNN", dropout=0.0)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    model.train()
    for _ in range(250):
        opt.zero_grad()
        logits, mean, log_var = split_outputs(model(x), N_CLASSES, 3)
        loss = torch.nn.functional.cross_entropy(logits, y) + gaussian_nll(mean, log_var, t, mask)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    logits, mean, _ = split_outputs(model(x), N_CLASSES, 3)
    assert (logits.argmax(1) == y).all()
    assert losses[-1] < losses[0] - 2.0           # the NLL goes negative once the sigmas shrink
    assert float((mean.detach() - t).abs().mean()) < 0.15  # standardised units


def test_the_gaussian_nll_is_minimised_at_the_squared_residual_and_masks_unknown_targets():
    mean = torch.tensor([[0.0, 1.0]])
    target = torch.tensor([[0.5, -1.0]])                       # residuals 0.5 and 2
    log_var = torch.zeros(1, 2, requires_grad=True)
    opt = torch.optim.SGD([log_var], lr=0.5)
    for _ in range(300):
        opt.zero_grad()
        gaussian_nll(mean, log_var, target, torch.ones(1, 2, dtype=torch.bool)).backward()
        opt.step()
    assert torch.allclose(log_var.detach(), torch.log(torch.tensor([[0.25, 4.0]])), atol=1e-3)

    # unknown targets (NaN or any value) do not count: same loss as the known ones alone, no gradient
    mu = torch.tensor([[0.2, 0.0, 1.0], [0.0, -0.3, 0.5]], requires_grad=True)
    lv = torch.tensor([[0.1, -0.2, 0.3], [0.0, 0.4, -0.1]], requires_grad=True)
    y = torch.tensor([[1.0, float("nan"), 2.0], [0.5, 7.0, float("nan")]])
    mask = torch.tensor([[True, False, True], [True, False, True]])
    loss = gaussian_nll(mu, lv, y, mask)
    loss.backward()
    known = torch.tensor([[True, False, True], [True, False, False]])
    per = 0.5 * (lv + (y - mu) ** 2 * torch.exp(-lv))
    assert torch.isclose(loss, per[known].mean())
    assert torch.isfinite(mu.grad).all() and (mu.grad[~known] == 0).all() and (lv.grad[~known] == 0).all()
    assert gaussian_nll(mu, lv, y, torch.zeros_like(mask)).item() == 0.0


def test_fit_stellar_runs_and_predicts_deterministically():
    train, val = synthetic_spectra(48, seed=1), synthetic_spectra(24, seed=2)
    val.target_mask[::3, 1] = False                            # a target unknown for some stars
    val.targets[::3, 1] = np.nan
    model_cfg = {"_target_": target("SpectralCNN"), **SMALL["SpectralCNN"]}
    result = fit_stellar(trainer_cfg(scheduler="onecycle", class_weighted_loss=True), model_cfg, train, val, seed=0,
                         n_classes=N_CLASSES, target_names=TARGETS)
    assert list(result.history.columns) == history_columns(TARGETS)
    assert len(result.history) == 2 and result.history[["train_loss", "val_loss", "val_mae_logg"]].notna().all().all()
    assert 0 <= result.history["val_macro_f1"].iloc[-1] <= 1 and np.isfinite(result.best_score)
    probs, mean, sigma = predict_outputs(result.model, val.x, batch_size=10)
    assert probs.shape == (24, N_CLASSES) and mean.shape == sigma.shape == (24, 3)
    assert np.allclose(probs.sum(1), 1, atol=1e-5) and (sigma > 0).all()
    assert all(np.array_equal(a, b) for a, b in zip((probs, mean, sigma),
                                                    predict_outputs(result.model, val.x, batch_size=10)))
    other = predict_outputs(result.model, val.x, batch_size=24)   # another batching: the last bits may differ
    assert all(np.allclose(a, b, rtol=1e-5, atol=1e-6) for a, b in zip((probs, mean, sigma), other))


def test_fit_stellar_regression_only_on_seds_with_missing_values():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((40, 5)).astype(np.float32)
    targets = np.column_stack([x[:, 0] + x[:, 1], x[:, 2], -x[:, 3]]).astype(np.float32)
    x[::4, 1] = np.nan                                         # a band not observed
    mask = np.ones((40, 3), bool)
    mask[::5, 2] = False
    parts = [StellarArrays(np.arange(20), x[:20], np.zeros(20, np.int64), targets[:20], mask[:20]),
             StellarArrays(np.arange(20), x[20:], np.zeros(20, np.int64), targets[20:], mask[20:])]
    result = fit_stellar(trainer_cfg(classification_weight=0.0, scheduler="cosine", monitor="val_target_nll"),
                         {"_target_": target("SEDNet"), **SMALL["SEDNet"]}, *parts, seed=1, n_classes=0,
                         target_names=TARGETS)
    assert result.history["val_accuracy"].isna().all() and result.history["val_mae_feh"].notna().all()
    probs, mean, sigma = predict_outputs(result.model, x)
    assert probs.shape == (40, 0) and np.isfinite(mean).all() and (sigma > 0).all()


def test_trainer_config_and_arrays_errors_name_the_key():
    check_trainer_config(trainer_cfg(monitor="val_mae_teff"), TARGETS)
    for key, value in [("batch_size", 0), ("monitor", "val_mae_vsini"), ("weight_decay", -1),
                       ("scheduler", "step"), ("target_weight", -1.0), ("label_smoothing", 1.0)]:
        with pytest.raises(ConfigError, match=key):
            check_trainer_config(trainer_cfg(**{key: value}), TARGETS)
    data = synthetic_spectra(6)
    data.y[0] = N_CLASSES
    with pytest.raises(ValueError, match="train arrays.*'y'"):
        check_arrays(data, "train", N_CLASSES, 3)
    data = synthetic_spectra(6)
    data.targets[0, 0] = np.nan
    with pytest.raises(ValueError, match="'targets'"):
        check_arrays(data, "val", N_CLASSES, 3)
    with pytest.raises(ValueError, match="'targets' has shape"):
        check_arrays(synthetic_spectra(6), "val", N_CLASSES, 2)
    data = synthetic_spectra(6)
    data.target_mask = data.target_mask.astype(np.int64)
    with pytest.raises(ValueError, match="'target_mask' bool"):
        check_arrays(data, "val", N_CLASSES, 3)
    loader = make_loader(synthetic_spectra(10), 4, shuffle=True, seed=3)
    first = [b[0] for b in make_loader(synthetic_spectra(10), 4, shuffle=True, seed=3)]
    assert all(torch.equal(a[0], b) for a, b in zip(loader, first)) and len(next(iter(loader))) == 4


def test_target_scaler_round_trips_and_names_bad_targets():
    rng = np.random.default_rng(0)
    raw = np.column_stack([rng.normal(5800, 600, 50), rng.normal(4.3, 0.4, 50), rng.normal(-0.1, 0.3, 50)])
    raw[3, 2] = np.nan
    mask = np.ones(raw.shape, bool)
    mask[4, 0] = False
    raw[4, 0] = 1e9                                          # unknown: must not enter the statistics
    scaler = TargetScaler.fit(raw, TARGETS, mask)
    z = scaler.transform(raw)
    known = mask & np.isfinite(raw)
    assert np.isnan(z[3, 2]) and abs(np.nanmean(z[known[:, 0], 0])) < 1e-5
    assert np.allclose(scaler.inverse_mean(z)[known], raw[known], rtol=1e-5)
    assert np.allclose(scaler.inverse_sigma(np.ones((1, 3))), scaler.std)
    assert TargetScaler.from_dict(scaler.to_dict()) == scaler
    with pytest.raises(ValueError, match="'logg'"):
        TargetScaler.fit(np.column_stack([raw[:, 0], np.full(50, 4.0), raw[:, 2]]), TARGETS)
    with pytest.raises(ValueError, match="'std'"):
        TargetScaler.from_dict({**scaler.to_dict(), "std": [1.0, 0.0, 1.0]})
    with pytest.raises(ValueError, match="'mean'"):
        TargetScaler.from_dict({"names": TARGETS, "std": [1.0] * 3})


def test_checkpoint_round_trip_rebuilds_an_identical_spectral_cnn(tmp_path):
    torch.manual_seed(0)
    model_cfg = {"_target_": target("SpectralCNN"), **SMALL["SpectralCNN"]}
    model = build_model(model_cfg, n_inputs=3, n_classes=N_CLASSES).eval()
    with torch.no_grad():                                     # non-trivial batch-norm statistics
        model.features[1].running_mean.uniform_(-0.5, 0.5)
    scaler = TargetScaler(TARGETS, [5800.0, 4.3, -0.1], [600.0, 0.4, 0.3])
    path = save_checkpoint(tmp_path / "model.ckpt", model, model_config=model_cfg,
                           classes=["B", "A", "F", "G", "K", "M"], bands=["flux", "error", "mask"], n_inputs=3,
                           config={"seed": 0}, metadata={"target_scaler": scaler.to_dict(), "targets": TARGETS})
    loaded, meta = load_checkpoint(path)
    x = torch.from_numpy(synthetic_spectra(8).x)
    with torch.no_grad():
        assert torch.equal(model(x), loaded(x))
    assert TargetScaler.from_dict(meta["metadata"]["target_scaler"]) == scaler


def test_target_scaler_log10_round_trip_and_delta_method_sigma():
    from deeprubin.tasks.stellar.fit import TargetScaler

    teff = np.array([[3500.0, 4.5], [6000.0, 4.0], [15000.0, 3.9], [9000.0, 4.2]])
    scaler = TargetScaler.fit(teff, ["teff", "logg"], log10=["teff"])
    z = scaler.transform(teff)
    assert np.allclose(scaler.inverse_mean(z), teff, rtol=1e-5)
    # a sigma of 0.01 dex in log10 Teff is ln(10) x Teff x 0.01 K
    sigma_z = np.full_like(z, 0.01 / scaler.std[0])
    sigma = scaler.inverse_sigma(sigma_z, z)
    assert np.allclose(sigma[:, 0], np.log(10) * teff[:, 0] * 0.01, rtol=1e-4)
    assert TargetScaler.from_dict(scaler.to_dict()) == scaler
    with pytest.raises(ValueError, match="pass the standardised mean"):
        scaler.inverse_sigma(sigma_z)
    with pytest.raises(ValueError, match="value <= 0"):
        TargetScaler.fit(-teff, ["teff", "logg"], log10=["teff"])
    with pytest.raises(ValueError, match="not among"):
        TargetScaler.fit(teff, ["teff", "logg"], log10=["feh"])
