"""EDA stage: the exploratory figures of the seed (class balance, mean light curves, colour)."""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from omegaconf import DictConfig

from ..core import io
from ..core.entry import hydra_entry
from ..tasks.transients.plots import plot_class_distribution, plot_color_evolution, plot_mean_lightcurves
from ..tasks.transients.preprocess.gp import load_gp_grid

log = logging.getLogger(__name__)


def run_eda(cfg: DictConfig) -> list[Path]:
    """Write the EDA figures to ``paths.reports/eda`` and return their paths."""
    classes = list(cfg.task.classes)
    processed = Path(cfg.paths.processed)
    grid = load_gp_grid(processed / "gp_grid.npz", processed / "gp_fits.parquet")
    manifest = io.read_parquet(Path(cfg.paths.splits) / "manifest.parquet")
    label_of = dict(zip(manifest["object_id"].astype(str), manifest["label"]))
    labels = np.array([label_of.get(str(o), "") for o in grid.object_ids])
    bands = [str(b) for b in grid.bands]
    out = Path(cfg.paths.reports) / "eda"
    written = [
        io.save_figure(plot_class_distribution(manifest[["label", "split"]], classes), out / "class_distribution.png",
                       caption="Number of objects per class in the train, validation and test splits."),
        io.save_figure(plot_mean_lightcurves(grid.grid_time, grid.mean, bands, labels, classes),
                       out / "mean_lightcurves.png",
                       caption="Mean GP-interpolated light curve per class (normalised flux) in each band."),
        io.save_figure(plot_color_evolution(grid.grid_time, grid.mean, grid.flux_scale, bands, labels, classes),
                       out / "color_evolution.png",
                       caption="Evolution of the g-r colour with time relative to peak, per class (GP means)."),
    ]
    log.info("eda: %d figures -> %s", len(written), out)
    return written


main = hydra_entry(run_eda, task="transients")

if __name__ == "__main__":
    main()
