"""Log a trained classifier to MLflow as a model with signature and input example, and register it."""
from __future__ import annotations

import mlflow
import numpy as np
import torch
from mlflow.models import infer_signature


class ProbabilityModel(torch.nn.Module):
    """Wraps a logits classifier so the logged MLflow model returns class probabilities."""

    def __init__(self, classifier: torch.nn.Module):
        super().__init__()
        self.classifier = classifier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.classifier(x), dim=-1)


def log_classifier(client, run_id: str, model: torch.nn.Module, example: np.ndarray, registered_name: str,
                   dataset_df=None, dataset_name: str = "train", dataset_digest: str | None = None) -> str:
    """Log ``model`` under ``run_id`` (artifact path ``model``) and register a new version.

    Parameters
    ----------
    model : torch.nn.Module
        Maps ``(n, C_in, T)`` float32 to logits ``(n, n_classes)``.
    example : numpy.ndarray, shape (k, C_in, T)
        A few real inputs: the input example and the source of the signature.
    registered_name : str
        Model Registry name, e.g. ``transients-classifier``; each call adds a version.
    dataset_df : pandas.DataFrame, optional
        Small description of the training set (object ids, labels), logged as the run's input.

    Returns
    -------
    str
        The model URI (``models:/<registered_name>/<version>``).
    """
    wrapped = ProbabilityModel(model).eval()
    with torch.no_grad():
        probabilities = wrapped(torch.from_numpy(example)).numpy()
    signature = infer_signature(example, probabilities)
    with mlflow.start_run(run_id=run_id):
        if dataset_df is not None:
            dataset = mlflow.data.from_pandas(dataset_df, name=dataset_name, digest=dataset_digest)
            mlflow.log_input(dataset, context="training")
        info = mlflow.pytorch.log_model(
            wrapped, name="model", signature=signature, input_example=example,
            registered_model_name=registered_name,
            # Explicit requirements: inferring them would start a subprocess per run.
            pip_requirements=[f"torch=={torch.__version__.split('+')[0]}", f"mlflow=={mlflow.__version__}"],
        )
    return f"models:/{registered_name}/{info.registered_model_version}"
