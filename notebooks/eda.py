# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Exploratory data analysis of the transients data set
#
# Reads what `dvc repro` wrote (`data/`, `reports/`) and draws with the package's own
# figure functions; no analysis lives here. Paths come from `params.yaml`.
# Stored as text (jupytext, py:percent); open it in Jupyter with jupytext installed.

# %%
import json

from deeprubin.core import io
from deeprubin.core.plot_style import apply_style
from deeprubin.notebook import project_paths
from deeprubin.tasks.transients.plots import plot_class_distribution, plot_color_evolution, plot_mean_lightcurves
from deeprubin.tasks.transients.preprocess.gp import load_gp_grid

apply_style()
paths = project_paths()
objects = io.read_parquet(paths["raw"] / "objects.parquet")
lightcurves = io.read_parquet(paths["raw"] / "lightcurves.parquet")
manifest = io.read_parquet(paths["splits"] / "manifest.parquet")
classes = sorted(manifest["label"].unique())
print(f"{len(objects)} objects, {len(lightcurves)} observations, classes {classes}")

# %% [markdown]
# ## What the ingest stage reported

# %%
json.loads((paths["raw"] / "ingest_report.json").read_text())

# %% [markdown]
# ## Objects per class and split

# %%
manifest.groupby(["label", "split"]).size().unstack(fill_value=0)

# %%
plot_class_distribution(manifest[["label", "split"]], classes)

# %% [markdown]
# ## Observations per object

# %%
lightcurves.groupby("object_id").size().rename("observations").describe()

# %% [markdown]
# ## Mean light curves and colour evolution (from the GP grid)

# %%
grid = load_gp_grid(paths["processed"] / "gp_grid.npz", paths["processed"] / "gp_fits.parquet")
label_of = dict(zip(manifest["object_id"].astype(str), manifest["label"]))
labels = [label_of.get(str(o), "") for o in grid.object_ids]
bands = [str(b) for b in grid.bands]
plot_mean_lightcurves(grid.grid_time, grid.mean, bands, labels, classes)

# %%
plot_color_evolution(grid.grid_time, grid.mean, grid.flux_scale, bands, labels, classes)
