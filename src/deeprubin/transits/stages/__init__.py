"""DVC stage entry points of the transits task (``python -m deeprubin.transits.stages.<x>``)."""
