"""DVC stage entry points of the transits task (``python -m deeprubin.transits.stages.<x>``)."""

# Before any stage module imports torch/numpy: pin the numerical code paths (core/numerics.py).
from ...core import numerics as _numerics

_numerics.pin()
