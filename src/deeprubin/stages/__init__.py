"""One short entry point per DVC stage: load config -> run_<stage>(cfg) -> write outputs.

Under DVC every stage is called as
``python -m deeprubin.stages.<stage> --config-dir . --config-name params ...``
so it reads the ``params.yaml`` that DVC tracks (and that ``dvc exp run -S`` rewrites).
Run by hand without those arguments, a stage composes ``conf/`` and accepts Hydra
overrides and multirun (``-m``) like any Hydra application.
"""

# Before any stage module imports torch/numpy: pin the math libraries' code paths and
# thread counts so that the same params give the same bytes on any CPU (core/numerics.py).
from ..core import numerics as _numerics

_numerics.pin()
