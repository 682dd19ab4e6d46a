"""transits_report: the transits task's headline file, ``reports/transits/metrics.json``.

Gathers (:func:`deeprubin.tasks.transits.report.task_metrics`) the segment CNN's metrics of
``evaluate@transits`` (``paths.metrics``), the star-level comparison of ``transits_vet``
(``vetting/metrics.json``) and the real planet hosts of ``transits_real``
(``real/real_report.json``): the default method's star scores, the vetting, the search
alone and the segment CNN at the same false-positive rate, and the real stars.
"""
from __future__ import annotations

import logging
from pathlib import Path

from omegaconf import DictConfig

from ..core import io
from ..core.entry import hydra_entry
from ..tasks.transits.report import task_metrics

log = logging.getLogger(__name__)


def run_transits_report(cfg: DictConfig) -> dict:
    """Write ``paths.reports/metrics.json`` from the three reports; returns it."""
    reports = Path(cfg.paths.reports)
    sources = {"segment": Path(cfg.paths.metrics), "vetting": reports / "vetting" / "metrics.json",
               "real": reports / "real" / "real_report.json"}
    for name, path in sources.items():
        if not path.exists():
            stage = {"segment": "evaluate@transits", "vetting": "transits_vet", "real": "transits_real"}[name]
            raise FileNotFoundError(f"{path}: no such file; run {stage} first")
    try:
        metrics = task_metrics(*(io.read_json(p) for p in sources.values()))
    except KeyError as err:
        raise ValueError(f"{sources['vetting']}: {err.args[0]}") from None
    metrics["sources"] = {k: str(p) for k, p in sources.items()}
    io.write_json(metrics, reports / "metrics.json")
    star = metrics["star"]
    log.info("transits_report: default %s, star ROC-AUC %.3f, recall(SNR>=%g) %s at 1%% FPR; real: %s",
             star["method"], star["roc_auc"] or float("nan"), metrics["snr_threshold"],
             star["recall_snr_ge_threshold"], {k: v.get("found_top_and_passing") for k, v in metrics["real"].items()
                                               if isinstance(v, dict)})
    return metrics


main = hydra_entry(run_transits_report, task="transits")

if __name__ == "__main__":
    main()
