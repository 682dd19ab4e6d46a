"""Evaluation: metrics, prediction on GP grids, and the report writer."""
