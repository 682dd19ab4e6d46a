"""The real-sky check and the simulated test scores over several seeds, for one or more variants.

Usage (from the repository root, after `make setup`; ~4.5 min per seed and variant on 2 cores)::

    .venv/bin/python benchmarks/real_sky_seeds.py                              # seeds 42 7 11, the config as is
    .venv/bin/python benchmarks/real_sky_seeds.py --variant tol3=preprocess.tol=1e-3
    .venv/bin/python benchmarks/real_sky_seeds.py --seeds 42 7 --variant none=augment=none \\
        --variant gru=model=gru,trainer.max_epochs=20
    .venv/bin/python benchmarks/real_sky_seeds.py --seeds 1 --base experiment=tiny --out /tmp/tiny.json  # ~1.5 min

Why: the `real_sky` stage's figure (the share of real ZTF BTS SNe Ia the simulation-trained
network classifies SN Ia) is one training run at one seed, and small changes to the training
inputs (GP fits changed at the rounding level for a handful of objects) moved it by 8-16
points (README, "Tried in the fourth session of 2026-11-22"). A change should be judged on
several seeds, paired: the same seeds for every variant.

For every seed and every variant (``NAME=override[,override...]``, Hydra overrides of
``conf/``, after the ``--base`` overrides every variant shares; the config as is, named
``default``, always comes first) this runs the stages that lead to the real-sky check, ``ingest split preprocess augment train calibrate evaluate
real_sky``, with ``seed=<seed>`` and every ``paths.*`` under ``<workdir>/<seed>/<variant>``
(the repository's own data, models and reports are not touched; `dvc.lock` is not involved).
``ingest`` and ``split`` depend only on the seed unless a variant overrides ``source``,
``task``, ``split`` or ``seed``, so their outputs are shared by the variants of a seed.
A run whose ``real_sky.json`` and ``metrics.json`` exist, made from the same overrides and the
same ``src/`` and ``conf/`` files (a hash of them, ``fingerprint.txt`` in the run's directory),
is not run again (``--rerun`` forces it), so an interrupted scan resumes and a code change
reruns everything.

Writes ``<out>`` (default ``reports/benchmarks/real_sky_seeds.json``): per variant and seed
the BTS SN Ia fraction, the ALeRCE 30-SNe accuracy and the simulated test accuracy and
macro-F1; per variant their mean, standard deviation, minimum and the number of seeds that
pass the real-sky target; per variant after the first the differences from it, seed by seed.
Without ``../shared/data/real`` the real-sky figures are null (the stage records ``skipped``).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

from omegaconf import OmegaConf

from deeprubin import io
from deeprubin.config import compose_params

REPO_ROOT = Path(__file__).resolve().parents[1]
#: The stages that lead to the real-sky check, in DAG order (dvc.yaml).
STAGES = ("ingest", "split", "preprocess", "augment", "train", "calibrate", "evaluate", "real_sky")
#: Stages whose outputs depend on the seed and these config groups only (shared by variants).
SEED_ONLY_STAGES = ("ingest", "split")
SEED_ONLY_PARAMS = ("source", "task", "split", "seed")
#: Path keys written by :data:`SEED_ONLY_STAGES`.
SEED_ONLY_PATHS = ("raw", "splits")
#: Hydra arguments of every stage, as in dvc.yaml's ``hydra_args``.
HYDRA_ARGS = ("hydra.run.dir=.", "hydra.output_subdir=null", "hydra/job_logging=stdout",
              "hydra/hydra_logging=disabled")
#: Figures collected per run: name -> (file under paths.reports, dotted key).
FIGURES = {
    "bts_snia_fraction": ("real_sky.json", "target.fraction"),
    "alerce_accuracy": ("real_sky.json", "datasets.alerce_30sne.accuracy"),
    "test_accuracy": ("metrics.json", "accuracy"),
    "test_macro_f1": ("metrics.json", "macro_f1"),
}


class StageFailed(RuntimeError):
    """A pipeline stage exited non-zero in one run of the scan."""


def parse_variant(text: str) -> tuple[str, list[str]]:
    """``NAME=override[,override...]`` -> (NAME, [override, ...]).

    Raises
    ------
    argparse.ArgumentTypeError
        If there is no ``=``, the name is empty or ``default``, or an override has no ``=``.
    """
    name, sep, rest = text.partition("=")
    overrides = [o for o in rest.split(",") if o] if sep else []
    if not sep or not name or not overrides:
        raise argparse.ArgumentTypeError(f"variant {text!r}: expected NAME=override[,override...], "
                                         f"e.g. tol3=preprocess.tol=1e-3")
    if name == "default":
        raise argparse.ArgumentTypeError(f"variant {text!r}: 'default' is the config as is; choose another name")
    bad = [o for o in overrides if "=" not in o]
    if bad:
        raise argparse.ArgumentTypeError(f"variant {name!r}: override(s) {bad} lack '=' (key=value)")
    return name, overrides


def shares_seed_stages(overrides: list[str]) -> bool:
    """Whether a variant leaves the outputs of :data:`SEED_ONLY_STAGES` as the default's."""
    keys = [o.lstrip("+~").split("=", 1)[0] for o in overrides]
    return not any(k == p or k.startswith(p + ".") or k.startswith(p + "/") for k in keys for p in SEED_ONLY_PARAMS)


def run_paths(paths, run_dir: Path, seed_dir: Path, shared: bool) -> dict[str, Path]:
    """Every ``paths.*`` of one run under ``run_dir`` (those of :data:`SEED_ONLY_PATHS` under
    ``<seed_dir>/shared`` when ``shared``); ``paths`` is the composed ``paths`` node."""
    return {key: (seed_dir / "shared" if shared and key in SEED_ONLY_PATHS else run_dir) / value
            for key, value in paths.items()}


def run_overrides(seed: int, overrides: list[str], moved: dict[str, Path], run_dir: Path) -> list[str]:
    """Hydra overrides of one run: the seed, the variant's, its paths and its own MLflow store."""
    return [f"seed={seed}", *overrides, *(f"paths.{key}={path}" for key, path in moved.items()),
            f"mlflow.tracking_uri=sqlite:///{run_dir / 'mlruns.db'}"]


def tree_hash(*roots: Path) -> str:
    """sha256 over the relative paths and bytes of every ``.py`` and ``.yaml`` file under ``roots``."""
    digest = hashlib.sha256()
    for root in roots:
        for path in sorted(p for p in root.rglob("*") if p.suffix in (".py", ".yaml") and p.is_file()):
            digest.update(str(path.relative_to(root.parent)).encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


def run_fingerprint(overrides: list[str], code: str) -> str:
    """What a finished run was made from: its Hydra overrides and the code and config hash."""
    return hashlib.sha256(json.dumps([overrides, code]).encode()).hexdigest()


def run_stage(stage: str, config_dir: Path, log: Path) -> float:
    """Run one stage with the params in ``config_dir``; its output goes to ``log``. Returns seconds.

    Raises
    ------
    StageFailed
        Naming the stage, the config and the log, with the log's last lines.
    """
    start = time.perf_counter()
    with open(log, "a") as out:
        proc = subprocess.run([sys.executable, "-m", f"deeprubin.stages.{stage}", "--config-dir", str(config_dir),
                               "--config-name", "params", *HYDRA_ARGS], cwd=REPO_ROOT, stdout=out,
                              stderr=subprocess.STDOUT)
    if proc.returncode != 0:
        tail = "\n".join(log.read_text().splitlines()[-15:])
        raise StageFailed(f"stage {stage} failed (exit {proc.returncode}) with {config_dir / 'params.yaml'}; "
                          f"log {log}:\n{tail}")
    return time.perf_counter() - start


def collect(reports: Path) -> dict:
    """The :data:`FIGURES` of one finished run (None where absent, e.g. real-sky data missing)."""
    figures = {}
    for name, (file, key) in FIGURES.items():
        node = io.read_json(reports / file)
        for part in key.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        figures[name] = node if isinstance(node, (int, float)) and not isinstance(node, bool) else None
    return figures


def summarise(values: list[float | None]) -> dict:
    """Mean, standard deviation (n - 1), minimum and maximum of the non-null values."""
    v = [x for x in values if x is not None]
    if not v:
        return {"n": 0, "mean": None, "std": None, "min": None, "max": None}
    return {"n": len(v), "mean": statistics.fmean(v), "std": statistics.stdev(v) if len(v) > 1 else None,
            "min": min(v), "max": max(v)}


def scan(seeds: list[int], variants: dict[str, list[str]], workdir: Path, base: list[str] = (),
         rerun: bool = False, progress=print) -> dict:
    """Run every (seed, variant) and return the results (see the module docstring).

    ``variants`` maps a name to its Hydra overrides (applied after ``base``); the first is the
    reference of the paired differences.
    """
    base = list(base)
    runs: dict[str, dict[str, dict]] = {name: {} for name in variants}
    # Composing takes ~0.3 s: the paths once per variant, the whole config only for a run that runs.
    paths = {name: compose_params([*base, *overrides]).paths for name, overrides in variants.items()}
    code = tree_hash(REPO_ROOT / "src", REPO_ROOT / "conf")
    for seed in seeds:
        seed_dir = workdir / str(seed)
        shared_done = False
        for name, overrides in variants.items():
            run_dir = seed_dir / name
            shared = shares_seed_stages(overrides)
            moved = run_paths(paths[name], run_dir, seed_dir, shared)
            reports = moved["reports"]
            cfg_overrides = run_overrides(seed, [*base, *overrides], moved, run_dir)
            fingerprint = run_fingerprint(cfg_overrides, code)
            stamp = run_dir / "fingerprint.txt"
            finished = (all((reports / f).exists() for f, _ in FIGURES.values()) and stamp.exists()
                        and stamp.read_text().strip() == fingerprint)
            if rerun or not finished:
                stamp.unlink(missing_ok=True)  # a run stopped half-way must not look finished
                io.write_text(OmegaConf.to_yaml(compose_params(cfg_overrides)), run_dir / "params.yaml")
                seconds = {}
                for stage in STAGES:
                    if shared and shared_done and stage in SEED_ONLY_STAGES:
                        continue
                    seconds[stage] = run_stage(stage, run_dir, run_dir / "stages.log")
                    progress(f"seed {seed} {name}: {stage} {seconds[stage]:.0f} s")
                io.write_json(seconds, run_dir / "stage_seconds.json")
                io.write_text(fingerprint + "\n", stamp)
            shared_done = shared_done or shared
            runs[name][str(seed)] = collect(reports)
            progress(f"seed {seed} {name}: {runs[name][str(seed)]}")
    target = compose_params(base).real_sky.get("target", {})
    summary = {}
    first = next(iter(variants))
    for name in variants:
        per_figure = {fig: summarise([runs[name][str(s)][fig] for s in seeds]) for fig in FIGURES}
        fractions = [runs[name][str(s)]["bts_snia_fraction"] for s in seeds]
        min_fraction = target.get("min_fraction")
        per_figure["bts_snia_seeds_passing"] = (None if min_fraction is None or None in fractions
                                                else sum(f >= min_fraction for f in fractions))
        if name != first:
            per_figure["difference_from_" + first] = {
                fig: [None if runs[name][str(s)][fig] is None or runs[first][str(s)][fig] is None
                      else runs[name][str(s)][fig] - runs[first][str(s)][fig] for s in seeds] for fig in FIGURES}
        summary[name] = per_figure
    return {"seeds": seeds, "base": base, "variants": variants, "code_hash": code, "runs": runs, "summary": summary,
            "real_sky_target": dict(target)}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[42, 7, 11])
    parser.add_argument("--variant", type=parse_variant, action="append", default=[],
                        help="NAME=override[,override...] (repeatable); the config as is runs as 'default'")
    parser.add_argument("--base", nargs="+", default=[],
                        help="Hydra overrides applied to every variant (e.g. experiment=tiny)")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/deeprubin_real_sky_seeds"),
                        help="where the runs' data, models and reports go")
    parser.add_argument("--rerun", action="store_true", help="rerun runs that already finished")
    parser.add_argument("--out", type=Path, default=Path("reports/benchmarks/real_sky_seeds.json"))
    args = parser.parse_args(argv)
    variants = {"default": []}
    for name, overrides in args.variant:
        if name in variants:
            parser.error(f"variant name {name!r} given twice")
        variants[name] = overrides
    results = scan(args.seeds, variants, args.workdir.resolve(), args.base, args.rerun,
                   progress=lambda line: print(line, flush=True))
    io.write_json(results, args.out)
    print(f"\n{'variant':12s} {'BTS SNe Ia as SN Ia':>28s} {'ALeRCE accuracy':>18s} {'test accuracy':>16s}")
    for name, s in results["summary"].items():
        def cell(fig):
            f = s[fig]
            return "-" if f["mean"] is None else f"{f['mean']:.3f} ± {f['std'] or 0:.3f} (min {f['min']:.3f})"
        print(f"{name:12s} {cell('bts_snia_fraction'):>28s} {cell('alerce_accuracy'):>18s} "
              f"{cell('test_accuracy'):>16s}  passing seeds: {s['bts_snia_seeds_passing']}")
    print(f"wrote {args.out}")
    return results


if __name__ == "__main__":
    main()
