"""Training: data assembly, the LightningModule, and MLflow tracking."""
