"""The transients task."""
