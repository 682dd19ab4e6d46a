"""Feature-based baseline: light-curve variability features and a balanced random forest.

:mod:`.extract` turns the canonical ``lightcurves`` table into one row of named
features per object (the `light-curve` package's extractors, counts, colours);
:mod:`.baseline` trains imbalanced-learn's balanced random forest on the training
split of the manifest and scores it on the test split, the anchor every deep model
is compared against (``deeprubin.tasks.transients.evaluation.compare``).
"""
from .extract import FEATURE_SETS, GROUP_ORDER, FeatureConfig, extract_features, feature_names

__all__ = ["FEATURE_SETS", "GROUP_ORDER", "FeatureConfig", "extract_features", "feature_names"]
