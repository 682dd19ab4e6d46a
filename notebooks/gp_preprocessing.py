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
# # The GP preprocessing
#
# Reads the preprocess stage's outputs (`gp_grid.npz`, `gp_fits.parquet`,
# `preprocess_report.json`) and the raw light curves, and draws them with the package's
# figure functions. The fit itself is `deeprubin.tasks.transients.preprocess.gp.fit_gp_grid`, run by
# `dvc repro`; nothing is fitted here.

# %%
import json

from deeprubin.core import io
from deeprubin.core.plot_style import apply_style
from deeprubin.notebook import project_paths
from deeprubin.tasks.transients.plots.gp import plot_gp_diagnostics, plot_gp_fits
from deeprubin.tasks.transients.preprocess.gp import load_gp_grid

apply_style()
paths = project_paths()
grid = load_gp_grid(paths["processed"] / "gp_grid.npz", paths["processed"] / "gp_fits.parquet")
lightcurves = io.read_parquet(paths["raw"] / "lightcurves.parquet")
manifest = io.read_parquet(paths["splits"] / "manifest.parquet")
print(f"{len(grid.object_ids)} objects on a {len(grid.grid_time)}-point grid "
      f"from {grid.grid_time.min():g} to {grid.grid_time.max():g} days, bands {list(grid.bands)}")

# %% [markdown]
# ## The stage's report

# %%
json.loads((paths["processed"] / "preprocess_report.json").read_text())

# %% [markdown]
# ## Fit diagnostics

# %%
grid.diagnostics.describe()

# %%
plot_gp_diagnostics(grid.diagnostics)

# %% [markdown]
# ## One example per class: observations and the GP posterior

# %%
examples = manifest[manifest["object_id"].isin(grid.object_ids)].groupby("label").head(1)
plot_gp_fits(lightcurves, grid, examples["object_id"].tolist(), examples["label"].tolist())
