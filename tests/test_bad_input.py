"""Bad input, table-driven (issue 19, point 7): each case builds its input in a fixture folder,
runs the function a user would reach, and asserts the error text (naming file, object, field or
key) or the flag; and that a file written before the failing call is unchanged.

One row per case: ``(id, make, expected)`` where ``make(tmp_path)`` returns a zero-argument
callable and ``expected`` is a regular expression for the error message, or ``("flag", ...)``
for a call that succeeds and returns data-quality flags.
"""
from __future__ import annotations

import errno
import os
import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import make_tables
from omegaconf import OmegaConf

from deeprubin.core import io
from deeprubin.core.calibration import load_calibrator, make_calibrator, save_calibration
from deeprubin.core.checkpoint import load_checkpoint, save_checkpoint
from deeprubin.core.config import check_output_paths, check_seeds, require
from deeprubin.core.quality import FLAGS, check_quality_config, quality_table
from deeprubin.core.schema import validate_tables
from deeprubin.core.models import build_model
from deeprubin.sources.files import load_files, load_files_report, resolve_options

TCN = {"_target_": "deeprubin.core.models.tcn.TCNClassifier", "name": "tcn", "channels": 4, "kernel_size": 3,
       "n_blocks": 2, "dropout": 0.0}
QUALITY = {"detection_snr": 5.0, "sentinel_mag": 90.0, "jd_min": 2_400_000.0, "mjd_max": 100_000.0,
           "max_abs_flux_ujy": 1e9, "duplicate_conflict_sigma": 5.0, "unusable": list(FLAGS)}
CLASSES = ["SNIa", "QSO"]
BANDS = {"g": 4746.48, "r": 6366.38}


# ----------------------------------------------------------------------------- builders
def ckpt(tmp: Path, name="model.ckpt", **changes) -> Path:
    model = build_model(TCN, n_inputs=4, n_classes=2)
    path = save_checkpoint(tmp / name, model, model_config=TCN, classes=CLASSES, bands=["g", "r"], n_inputs=4,
                           config={}, metadata={})
    if changes:
        payload = torch.load(path, weights_only=True)
        for key, value in changes.items():
            if value is KeyError:
                del payload[key]
            else:
                payload[key] = value
        torch.save(payload, path)
    return path


def truncated(tmp: Path, name: str, writer) -> Path:
    path = tmp / name
    writer(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def calibration(tmp: Path, checkpoint: Path, edit=None) -> Path:
    cal = make_calibrator("temperature", CLASSES)
    cal.temperature = 1.3
    path = save_calibration(tmp / "calibration.json", {"temperature": cal, "none": make_calibrator("none", CLASSES)},
                            default="temperature", fitted_on={}, checkpoint=checkpoint)
    if edit:
        data = io.read_json(path)
        edit(data)
        io.write_json(data, path)
    return path


def validate(lc, obj, **kw):
    return lambda: validate_tables(lc, obj, classes=CLASSES, bands=list(BANDS), min_points=3,
                                   table="lc.parquet", **kw)


def tables(mutate_lc=None, mutate_obj=None):
    lc, obj = make_tables(n_objects=3)
    if mutate_lc:
        lc = mutate_lc(lc)
    if mutate_obj:
        obj = mutate_obj(obj)
    return lc, obj


def set_cell(col, value, row=0):
    def f(df):
        df = df.copy()
        if col in df.columns and df[col].dtype != object and isinstance(value, str):
            df[col] = df[col].astype(object)
        df.loc[row, col] = value
        return df
    return f


def files_cfg(tmp: Path, csv: str, on_invalid="raise", **source):
    folder = tmp / "lc"
    folder.mkdir(exist_ok=True)
    (folder / "ZTF1.csv").write_text(csv)
    node = {"name": "files", "layout": "per_object_csv", "path": str(folder), "label": "SNIa", "progress_bar": False,
            "columns": {"time": "time", "band": "band", "flux": "flux", "flux_err": "fluxerr"},
            "validation": {"on_invalid": on_invalid, "min_points": 3, "min_bands": 1}, **source}
    return OmegaConf.create({"task": {"name": "t", "classes": CLASSES, "band_wavelengths": BANDS}, "source": node})


GOOD_CSV = "time,flux,fluxerr,band\n58000,100,5,g\n58001,120,5,r\n58002,90,5,g\n"


def flags_of(lc, objects=None) -> dict:
    table = quality_table(lc, QUALITY, objects)
    return dict(zip(table["object_id"], table["quality_flags"]))


def dvc_project(tmp: Path) -> Path:
    root = tmp / "repo"
    root.mkdir(exist_ok=True)
    (root / "dvc.yaml").write_text("stages: {}\n")
    return root


def conflicting_duplicates(tmp: Path):
    """Through the files source: obj001 gives the epoch 58001 r twice, 100 and 300 uJy +- 5."""
    folder = tmp / "dup"
    folder.mkdir()
    (folder / "obj000.csv").write_text(GOOD_CSV)
    (folder / "obj001.csv").write_text(GOOD_CSV + "58001,300,5,r\n")
    cfg = files_cfg(tmp, GOOD_CSV, duplicates="mean")
    cfg.source.path = str(folder)
    lc, objects, _ = load_files_report(cfg)
    return lc, objects


def spoil(how, tmp: Path):
    if how == "conflicting_duplicates":
        return conflicting_duplicates(tmp)
    lc, _ = make_tables(n_objects=2)
    one = lc["object_id"] == "obj001"
    if how == "sentinel_mag":
        lc["mag"] = np.where(one, 99.99, 19.0)
    elif how == "no_detection":
        lc.loc[one, "flux"] = -lc.loc[one, "flux"].abs()
    elif how == "mixed_time_system":
        lc.loc[lc.index[one][::2], "time"] += 2_400_000.5
    elif how == "implausible_flux":
        lc.loc[one, "flux"] *= 1e30
    return lc, None


def disk_full(tmp: Path):
    def run():
        real = os.replace

        def full(*args, **kwargs):
            raise OSError(errno.ENOSPC, "No space left on device")
        os.replace = full
        try:
            io.write_json({"new": 1}, tmp / "previous.json")
        finally:
            os.replace = real
    return run


class _Payload:
    def __reduce__(self):
        return os.system, ("touch pwned-by-bad-input-suite",)


# ----------------------------------------------------------------------------- the cases
CASES = [
    # --- files the pipeline reads: named, never a bare library error
    ("truncated parquet", lambda t: lambda: io.read_parquet(truncated(t, "x.parquet", lambda p: io.write_parquet(
        pd.DataFrame({"a": range(100)}), p))), r"x\.parquet: cannot read this parquet file"),
    ("truncated npz", lambda t: lambda: io.read_npz(truncated(t, "g.npz", lambda p: io.write_npz(
        p, a=np.arange(1000)))), r"g\.npz: cannot read this npz file"),
    ("truncated json", lambda t: lambda: io.read_json(truncated(t, "m.json", lambda p: io.write_json(
        {"a": list(range(50))}, p))), r"m\.json: cannot read this JSON file"),
    ("missing parquet", lambda t: lambda: io.read_parquet(t / "none.parquet"), r"none\.parquet: no such file"),
    ("missing checkpoint", lambda t: lambda: load_checkpoint(t / "none.ckpt"), r"none\.ckpt: no such checkpoint"),
    # --- checkpoints: no code runs, every field checked
    ("text file as checkpoint", lambda t: lambda: load_checkpoint(Path(t / "t.ckpt").write_text("hello") and t / "t.ckpt"),
     r"t\.ckpt: cannot read the checkpoint"),
    ("truncated checkpoint", lambda t: lambda: load_checkpoint(truncated(t, "c.ckpt", lambda p: ckpt(t, p.name))),
     r"c\.ckpt: cannot read the checkpoint"),
    ("pickled object in checkpoint", lambda t: lambda: load_checkpoint(_pickled(t)),
     r"cannot read the checkpoint: it holds pickled"),
    ("plain pickle as checkpoint", lambda t: lambda: load_checkpoint(_plain_pickle(t)), r"p\.ckpt: cannot read the checkpoint"),
    ("nested _target_ in model_config", lambda t: lambda: load_checkpoint(ckpt(
        t, model_config={**TCN, "dropout": {"_target_": "os.system", "command": "true"}})),
     r"field 'model_config': model config key 'dropout' is a mapping"),
    ("foreign _target_ in model_config", lambda t: lambda: load_checkpoint(ckpt(
        t, model_config={**TCN, "_target_": "subprocess.call"})), r"'subprocess\.call' is not an allowed model class"),
    ("hydra directive in model_config", lambda t: lambda: load_checkpoint(ckpt(
        t, model_config={**TCN, "_args_": ["x"]})), r"key '_args_' is not an argument name"),
    ("checkpoint without classes", lambda t: lambda: load_checkpoint(ckpt(t, classes=KeyError)),
     r"model\.ckpt: not a DeepRubin checkpoint \(missing field 'classes'\)"),
    ("checkpoint of another version", lambda t: lambda: load_checkpoint(ckpt(t, version=99)),
     r"checkpoint version 99 != supported 1"),
    ("checkpoint n_inputs not an integer", lambda t: lambda: load_checkpoint(ckpt(t, n_inputs="4")),
     r"field 'n_inputs' must be a positive integer, got '4'"),
    ("checkpoint weights of another shape", lambda t: lambda: load_checkpoint(ckpt(
        t, model_config={**TCN, "channels": 8})), r"field 'state_dict' does not fit deeprubin\.core\.models\.tcn"),
    ("checkpoint classes not strings", lambda t: lambda: load_checkpoint(ckpt(t, classes=[1, 2])),
     r"field 'classes' must be a list of class names"),
    # --- calibration files: bound to one checkpoint, values checked, file named
    ("calibration json without calibrators", lambda t: lambda: load_calibrator(
        Path(io.write_json({"default": "none"}, t / "c.json"))), r"c\.json: not a calibration file"),
    ("non-positive temperature", lambda t: lambda: load_calibrator(calibration(
        t, ckpt(t), lambda d: d["calibrators"]["temperature"].update(temperature=-1.0))),
     r"calibration\.json: calibrator 'temperature' is invalid: temperature must be a positive"),
    ("truncated calibration json", lambda t: lambda: load_calibrator(truncated(
        t, "cal.json", lambda p: io.write_json({"default": "none", "calibrators": {}, "pad": "x" * 100}, p))),
     r"cal\.json: cannot read this JSON file"),
    ("calibrator of another checkpoint", lambda t: lambda: load_calibrator(
        calibration(t, ckpt(t)), checkpoint=ckpt(t, "other.ckpt", metadata={"n": 1})),
     r"calibration\.json: fitted for another checkpoint .* than .*other\.ckpt"),
    ("calibration file without checkpoint binding", lambda t: lambda: load_calibrator(
        calibration(t, ckpt(t), lambda d: d.pop("checkpoint")), checkpoint=t / "model.ckpt"),
     r"field 'checkpoint' is missing"),
    ("unknown calibration method", lambda t: lambda: load_calibrator(calibration(t, ckpt(t)), method="platt"),
     r"calibration\.json: no 'platt' calibrator"),
    # --- configuration values: the key is named
    ("seed=abc", lambda t: lambda: check_seeds({"seed": "abc"}), r"config key 'seed' must be an integer >= 0, got 'abc'"),
    ("seed=-1", lambda t: lambda: check_seeds({"seed": -1}), r"config key 'seed' must be an integer >= 0"),
    ("data_seed=1.5", lambda t: lambda: check_seeds({"seed": 1, "data_seed": 1.5}), r"config key 'data_seed'"),
    ("on_invalid=ignore", lambda t: lambda: require({"source": {"validation": {"on_invalid": "ignore"}}},
                                                    "source.validation.on_invalid", choices=("raise", "drop")),
     r"config key 'source\.validation\.on_invalid' must be one of \['raise', 'drop'\], got 'ignore'"),
    ("string where a number is due", lambda t: lambda: require({"preprocess": {"n_iter": "many"}}, "preprocess.n_iter",
                                                               positive=True),
     r"config key 'preprocess\.n_iter' must be a number, got 'many'"),
    ("unknown quality flag", lambda t: lambda: check_quality_config({**QUALITY, "unusable": ["noisy"]}),
     r"config key 'quality\.unusable' has unknown flag\(s\) \['noisy'\]"),
    ("quality mjd_max above jd_min", lambda t: lambda: check_quality_config({**QUALITY, "mjd_max": 3e6}),
     r"'quality\.mjd_max' .* must be below 'quality\.jd_min'"),
    ("typo'd key in a files source", lambda t: lambda: resolve_options({"name": "files", "path": "x", "lable": "SNIa",
                                                                        "columns": {"time": "t"}}),
     r"source\.lable"),
    ("bad incomplete_rows policy", lambda t: lambda: resolve_options({"name": "files", "path": "x",
                                                                      "incomplete_rows": "ignore"}),
     r"config key 'source\.incomplete_rows' must be one of"),
    # --- canonical tables: object and column named
    ("NaN flux with on_invalid raise", lambda t: validate(*tables(set_cell("flux", np.nan))),
     r"lc\.parquet: object 'obj000': non_finite: column 'flux'"),
    ("non-positive flux_err", lambda t: validate(*tables(set_cell("flux_err", -1.0))),
     r"object 'obj000': non_positive_error: column 'flux_err' <= 0"),
    ("unknown band", lambda t: validate(*tables(set_cell("band", "z"))), r"object 'obj000': unknown_band"),
    ("repeated (band, time)", lambda t: validate(*tables(lambda lc: pd.concat([lc, lc.iloc[[0]]], ignore_index=True))),
     r"object 'obj000': duplicate_time"),
    ("unknown label", lambda t: validate(*tables(mutate_obj=set_cell("label", "TDE"))),
     r"objects table for lc\.parquet: object 'obj000': column 'label' has unknown value 'TDE'"),
    ("light curve without objects row", lambda t: validate(*tables(mutate_obj=lambda o: o.iloc[1:])),
     r"object 'obj000': column 'object_id' has no row in the objects table"),
    ("non-numeric time", lambda t: validate(*tables(set_cell("time", "yesterday"))),
     r"object 'obj000': column 'time' has non-numeric value 'yesterday'"),
    ("missing flux_err column", lambda t: validate(*tables(lambda lc: lc.drop(columns="flux_err"))), r"flux_err"),
    ("duplicated object_id", lambda t: validate(*tables(mutate_obj=lambda o: pd.concat([o, o.iloc[[0]]]))),
     r"object 'obj000': column 'object_id' is duplicated"),
    # --- a files source: NaN rows follow validation.on_invalid
    ("NaN flux row in a CSV, on_invalid raise", lambda t: lambda: load_files(files_cfg(
        t, GOOD_CSV + "58003,,5,r\n")), r"ZTF1\.csv: column 'flux', .*: empty value"),
    # --- writers: the path is named, the previous file survives
    ("disk full while writing", disk_full, r"previous\.json: cannot write \(No space left on device\)"),
    ("output folder under a file", lambda t: lambda: io.check_writable(
        Path((t / "afile").write_text("x") and t / "afile") / "out", "models folder"),
     r"afile/out: the models folder is not writable"),
    # --- output paths: inside the repository, checked before any work
    ("output path above the repository", lambda t: lambda: check_output_paths(
        {"paths": {"raw": "data/raw", "reports": "../elsewhere/reports"}}, root=dvc_project(t)),
     r"config key 'paths\.reports' = .*/elsewhere/reports is outside the repository"),
    ("absolute transits output path", lambda t: lambda: check_output_paths(
        {"tasks": {"transits": {"paths": {"models": "/var/tmp/models"}}}}, root=dvc_project(t)),
     r"config key 'tasks\.transits\.paths\.models' = /var/tmp/models is outside the repository"),
    # --- data quality: flagged, with the flag named
    *[(f"quality flag {f}", (lambda f: lambda t: lambda: flags_of(*spoil(f, t)))(f), ("flag", f)) for f in FLAGS],
]


def _pickled(t: Path) -> Path:
    path = ckpt(t)
    payload = torch.load(path, weights_only=True)
    payload["metadata"] = {"x": _Payload()}
    torch.save(payload, path)
    return path


def _plain_pickle(t: Path) -> Path:
    path = t / "p.ckpt"
    path.write_bytes(pickle.dumps(_Payload()))
    return path


def test_there_are_at_least_forty_cases():
    assert len(CASES) >= 40


@pytest.mark.parametrize("make,expected", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input(make, expected, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    previous = tmp_path / "previous.json"
    io.write_json({"kept": True}, previous)
    before = previous.read_bytes()
    call = make(tmp_path)
    if isinstance(expected, tuple):  # a flag, not an error
        flags = call()
        assert flags["obj001"] == expected[1] and flags["obj000"] == ""
    else:
        with pytest.raises(Exception, match=expected):
            call()
    assert previous.read_bytes() == before, "a file written before the bad input changed"
    assert not (tmp_path / "pwned-by-bad-input-suite").exists(), "a payload ran"
    assert not list(tmp_path.glob(".*.tmp")), "a temporary file was left behind"


def test_output_paths_inside_the_repository_or_allowed_outside(tmp_path):
    root = dvc_project(tmp_path)
    got = check_output_paths({"paths": {"raw": "data/raw", "figures": "reports/../reports/figures"}}, root=root)
    assert got == {"paths.raw": root / "data/raw", "paths.figures": root / "reports/figures"}
    outside = {"paths": {"raw": str(tmp_path / "scratch")}, "outputs_outside_repo": True}
    assert check_output_paths(outside, root=root)["paths.raw"] == tmp_path / "scratch"
    # outside a DVC project (an installed package run from anywhere) nothing is refused
    assert check_output_paths({"paths": {"raw": "/var/tmp/raw"}}, root=tmp_path)["paths.raw"] == Path("/var/tmp/raw")


def test_stage_process_refuses_an_output_outside_the_repository(tmp_path):
    """Through the real entry point, from a DVC project: exit non-zero naming the key; nothing written."""
    import subprocess
    import sys

    root = dvc_project(tmp_path)
    out = subprocess.run([sys.executable, "-m", "deeprubin.stages.split", "task_name=transits",
                          f"paths.splits={tmp_path / 'splits'}",  # a short key: tasks.transits.paths.splits
                          "hydra.run.dir=.", "hydra.output_subdir=null"], cwd=root, capture_output=True, text=True)
    assert out.returncode != 0
    assert ("config key 'tasks.transits.paths.splits'" in out.stdout + out.stderr
            and "is outside the repository" in out.stderr)
    assert not (tmp_path / "splits").exists()


def test_nan_flux_row_is_dropped_and_counted_with_on_invalid_drop(tmp_path):
    lc, _ = load_files(files_cfg(tmp_path, GOOD_CSV + "58003,,5,r\n", on_invalid="drop"))
    assert len(lc) == 3


# ----------------------------------------------------------------------------- structured config schema
@pytest.mark.parametrize("node,key,value,match", [
    ("tasks.transients.preprocess", "n_gird", 30, r"config key 'tasks\.transients\.preprocess\.n_gird' is not a known key of 'tasks.transients.preprocess' \(a typo\?\)"),
    ("tasks.transients.trainer", "max_epochs", "ten", r"config key 'tasks\.transients\.trainer\.max_epochs': Value 'ten' of type 'str' could not be "
                                     r"converted to Integer"),
    ("tasks.transients.split", "fractions", {"train": "most"}, r"config key 'tasks\.transients\.split\.fractions\.train'"),
    ("tasks.transients.quality", "detection_snr", [5], r"config key 'tasks\.transients\.quality\.detection_snr'"),
    ("tasks.transients.predict", "outptu", "x.csv", r"config key 'tasks\.transients\.predict\.outptu' is not a known key"),
    ("tasks.transients.task", "clases", ["SNIa"], r"config key 'tasks\.transients\.task\.clases' is not a known key of 'tasks.transients.task'"),
    ("tasks.transients.baseline", "n_estimator", 100, r"config key 'tasks\.transients\.baseline\.n_estimator' is not a known key"),
    ("tasks.transients.augment", "copies", {"SNIa": "four"}, r"config key 'tasks\.transients\.augment\.copies\.SNIa'"),
    ("tasks.transients.evaluate", "bootstrap", {"n_boot": "many"}, r"config key 'tasks\.transients\.evaluate\.bootstrap\.n_boot'"),
    ("tasks.transients.evaluate", "bootstrap", {"n_bot": 10}, r"config key 'tasks\.transients\.evaluate\.bootstrap\.n_bot' is not a known key"),
    ("results", "outptu", "x.md", r"config key 'results\.outptu' is not a known key"),
    ("tasks.transits", "trainer", {"max_epoch": 3}, r"config key 'tasks\.transits\.trainer\.max_epoch' is not a known key"),
    ("tasks.transits", "source", {"name": "simulate", "n_stars": "many"}, r"config key 'tasks\.transits\.source\.n_stars'"),
])
def test_typo_or_mistyped_key_in_yaml_fails_naming_it(node, key, value, match):
    from deeprubin.core.config import ConfigError, compose_params
    from deeprubin.core.config_schema import check_schema

    cfg = compose_params([])
    check_schema(cfg)  # the shipped config passes
    OmegaConf.set_struct(cfg, False)
    OmegaConf.select(cfg, node)[key] = value
    with pytest.raises(ConfigError, match=match):
        check_schema(cfg)


def test_stage_process_rejects_a_typo_before_any_work(tmp_path):
    """Through the real entry point: the stage exits non-zero naming the key, and writes nothing."""
    import subprocess
    import sys


    out = subprocess.run([sys.executable, "-m", "deeprubin.stages.split", "task_name=transients",
                          f"paths.splits={tmp_path / 'splits'}", "+preprocess.n_gird=30", "hydra.run.dir=.", "hydra.output_subdir=null"],
                         cwd=tmp_path, capture_output=True, text=True)
    assert out.returncode != 0
    assert "config key 'tasks.transients.preprocess.n_gird' is not a known key" in out.stderr + out.stdout
    assert not (tmp_path / "splits").exists()
