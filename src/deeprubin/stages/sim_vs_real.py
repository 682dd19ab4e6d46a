"""Sim-vs-real stage: simulated SN Ia / RR Lyrae populations against real survey samples.

Writes ``paths.reports/sim_vs_real.json`` and ``paths.reports/sim_vs_real/sim_vs_real.png``.
When a real folder is absent, its part is recorded as skipped instead of failing
(the project runs without the real data).
"""
from __future__ import annotations

import logging
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from ..core import io
from ..core.config import ConfigError, require
from ..core.entry import hydra_entry
from ..tasks.transients.validation import sim_vs_real as svr

log = logging.getLogger(__name__)


def _snia_part(cfg: DictConfig, real_dir: Path, panels: list) -> dict:
    node = cfg.sim_vs_real.snia
    source = require(cfg, "sim_vs_real.snia.source")
    catalogue_path = Path(str(require(source, "metadata.path")))
    if not catalogue_path.exists():
        return {"skipped": True, "reason": f"{catalogue_path} not found"}
    limit = float(require(cfg, "sim_vs_real.snia.peak_mag_limit"))
    sampler = node.get("sampler_peak_mag")
    if sampler is not None and float(sampler) < limit:
        raise ConfigError(f"config key 'sim_vs_real.snia.sampler_peak_mag' = {sampler} must be >= "
                          f"sim_vs_real.snia.peak_mag_limit = {limit} (or null)")
    real, catalogue = svr.load_real_bts(OmegaConf.create({"source": source, "task": cfg.task}), limit)
    sim, truth = svr.simulate_bts_snia(
        OmegaConf.to_container(cfg.source, resolve=True), n_objects=int(require(cfg, "sim_vs_real.snia.n_objects",
                                                                                 positive=True)),
        seed=int(cfg.data_seed), bands=list(cfg.task.band_wavelengths),
        survey_overrides=OmegaConf.to_container(node.get("survey") or OmegaConf.create({}), resolve=True),
        sampler_peak_mag=None if sampler is None else float(sampler),
        min_detections=int(require(cfg, "sim_vs_real.snia.min_detections", at_least=1)), peak_mag_limit=limit)
    result = svr.compare_snia(sim, real, catalogue)
    result["redshift_vs_catalogue"] = svr.compare_redshifts(truth, catalogue)
    for name in svr.SNIA_STATISTICS:
        panels.append((name, sim[name].to_numpy(), real[name].to_numpy(), result["identical_measurement"][name]))
    result.update({"skipped": False, "peak_mag_limit": limit, "n_sim": len(sim), "n_real": len(real),
                   "sim_truth_median": {"redshift": float(truth["redshift"].median()),
                                        "x1": float(truth["truth_x1"].median()),
                                        "c": float(truth["truth_c"].median())}})
    return result


def _rrlyrae_part(cfg: DictConfig, real_dir: Path, panels: list) -> dict:
    from ..sources.simulate import simulate_survey

    table = real_dir / str(require(cfg, "sim_vs_real.rrlyrae.folder")) / str(require(cfg, "sim_vs_real.rrlyrae.table"))
    if not table.exists():
        return {"skipped": True, "reason": f"{table} not found"}
    sesar = svr.parse_sesar_table(table)
    src = OmegaConf.to_container(cfg.source, resolve=True)
    config = {"n_objects": int(require(cfg, "sim_vs_real.rrlyrae.n_objects", positive=True)),
              "class_fractions": None, "overlap_fraction": 0.0, "output": "forced",
              "survey": src.get("survey"), "population": src.get("population")}
    _, objects = simulate_survey(config, seed=int(cfg.data_seed), classes=["RRLyrae"],
                                 bands=list(cfg.task.band_wavelengths))
    result = svr.compare_rrlyrae(objects, sesar)
    panels.append(("period", objects["truth_period_days"].to_numpy(), sesar["period"].to_numpy(),
                   result["all"]["period"]))
    panels.append(("amplitude_r", objects["truth_amplitude_mag"].to_numpy(), sesar["amp_r"].to_numpy(),
                   result["all"]["amplitude_r"]))
    result.update({"skipped": False, "n_sim": len(objects), "n_real": len(sesar)})
    return result


def run_sim_vs_real(cfg: DictConfig) -> dict:
    """Compare simulated and real populations; write the json report and the figure.

    The simulated populations use the pipeline's simulator (``source`` config:
    survey and population settings) with ``seed``; the source must be the
    simulator (``source.name == simulate``) for the comparison to mean anything.
    """
    if str(require(cfg, "source.name")) != "simulate":
        report = {"skipped": True, "reason": f"source.name is {cfg.source.name!r}, not the simulator"}
    else:
        real_dir = Path(str(require(cfg, "sim_vs_real.real_dir")))
        target = float(require(cfg, "sim_vs_real.ks_target", positive=True))
        panels: list = []
        report = {"real_dir": str(real_dir), "ks_target": target, "snia": _snia_part(cfg, real_dir, panels),
                  "rrlyrae": _rrlyrae_part(cfg, real_dir, panels)}
        report["skipped"] = report["snia"]["skipped"] and report["rrlyrae"]["skipped"]
        if not report["snia"]["skipped"]:
            ks = {k: v["ks_statistic"] for k, v in report["snia"]["identical_measurement"].items()}
            report["snia"]["meets_target"] = {k: bool(v <= target) for k, v in ks.items()}
        out_dir = Path(cfg.paths.reports) / "sim_vs_real"
        out_dir.mkdir(parents=True, exist_ok=True)
        if panels:
            io.save_figure(svr.plot_sim_vs_real(panels), out_dir / "sim_vs_real.png",
                           caption="Simulated (BTS-selected) SNe Ia against real ZTF BTS SNe Ia, and simulated "
                                   "RR Lyrae against SDSS Stripe 82: overlaid distributions with KS statistics")
    (Path(cfg.paths.reports) / "sim_vs_real").mkdir(parents=True, exist_ok=True)
    io.write_json(report, Path(cfg.paths.reports) / "sim_vs_real.json")
    log.info("sim_vs_real: %s", "skipped" if report["skipped"] else "written")
    return report


main = hydra_entry(run_sim_vs_real, task="transients")

if __name__ == "__main__":
    main()
