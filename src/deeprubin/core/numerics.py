"""Pin the numerical code paths, so that the same params give the same bytes on any CPU.

Why: torch's CPU math dispatches at run time to kernels chosen for the processor (MKL's
code branches for AVX2 or AVX-512, ATen's vectorised kernels, oneDNN's convolutions), and
their results differ in the last bits. A GP grid that differs at 1e-12 retrains into a
different network, so without pinning a fresh clone on another CPU regenerated different
headline numbers (issue 17). :func:`pin` fixes every setting that was measured to matter
(``tests/test_numerics.py`` emulates other CPUs by selecting other kernels here; the
decision record is ``docs/decisions/numerics-pinning.md``):

* ``MKL_CBWR=COMPATIBLE``: MKL's conditional numerical reproducibility, its
  processor-independent code branch. Besides the CPU, it also removes the dependence of
  MKL's results on the memory alignment of a matrix (without it, the same GP fitted at
  another offset in a batch rounds differently).
* ``ATEN_CPU_CAPABILITY``: ATen's vectorised kernels (``avx2``, the widest that every
  machine of this kind has; an AVX-512 machine would otherwise take other kernels).
* ``ONEDNN_MAX_CPU_ISA``: the widest instruction set oneDNN's convolutions may use.
* The OpenBLAS under numpy and scipy: its kernel (``OPENBLAS_CORETYPE=Haswell``, the AVX2
  kernels; an AVX-512 CPU would take SkylakeX ones) and its threads.
* numpy's own SIMD loops: its AVX-512 loops (``X86_V4`` and up, numpy 2.4's names) are
  disabled, so an AVX-512 CPU runs the AVX2 loops every machine of this kind has (they
  compute float64 ``exp``/``log``/``sin``... with other roundings).
* A fixed number of threads (:data:`THREADS`) for OpenMP, MKL, OpenBLAS and torch:
  reductions split over threads round differently with another count.

The environment variables are read when the libraries load (numpy, OpenBLAS) or at their
first call (MKL, ATen), so :func:`pin` must run before the first ``import numpy`` and before
torch does any math. Every stage starts
through ``deeprubin.stages`` (whose ``__init__`` calls :func:`pin`), and so do the predict
path, the benchmarks and the tests' pipelines. :func:`status` reads back what the loaded
libraries actually use; where they cannot honour the pinning (torch imported earlier,
another BLAS), :func:`pin` says so once, in one line, and the run goes on.
"""
from __future__ import annotations

import ctypes
import logging
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

#: Threads of OpenMP, MKL and torch's intra-op pool in every pinned process. Results of
#: reductions depend on it, so it is part of "the same params"; 2 is what the project's
#: reference machines have.
THREADS = 2

#: Environment every pinned process gets, set before torch/numpy load their libraries.
PINNED_ENV: dict[str, str] = {
    "MKL_CBWR": "COMPATIBLE",
    "ATEN_CPU_CAPABILITY": "avx2",
    "ONEDNN_MAX_CPU_ISA": "AVX2",
    "OMP_NUM_THREADS": str(THREADS),
    "MKL_NUM_THREADS": str(THREADS),
    "OPENBLAS_CORETYPE": "Haswell",
    "OPENBLAS_NUM_THREADS": str(THREADS),
    "NPY_DISABLE_CPU_FEATURES": "X86_V4 AVX512_ICL AVX512_SPR",
}

#: Set to "0" to turn the pinning off (faster on some CPUs; results then depend on the CPU).
SWITCH = "DEEPRUBIN_PIN_NUMERICS"

#: MKL's ``mkl_cbwr_get`` answer for ``COMPATIBLE`` (mkl_cbwr.h), the low 16 bits.
_MKL_CBWR_COMPATIBLE = 3
_MKL_CBWR_ALL = -1

_warned = False


@dataclass
class NumericsStatus:
    """What the process's math libraries use, read back from them (see :func:`status`)."""

    enabled: bool
    mkl_cbwr: str
    cpu_capability: str
    threads: int
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.enabled and not self.problems

    def summary(self) -> str:
        """One line for the stage log, e.g. ``MKL CNR COMPATIBLE, ATen AVX2, 2 threads (pinned)``."""
        state = "pinned" if self.ok else ("NOT pinned: " + "; ".join(self.problems) if self.enabled
                                          else f"pinning off ({SWITCH}=0)")
        return f"MKL CNR {self.mkl_cbwr}, ATen {self.cpu_capability}, {self.threads} threads ({state})"

    def as_dict(self) -> dict:
        return {"enabled": self.enabled, "mkl_cbwr": self.mkl_cbwr, "cpu_capability": self.cpu_capability,
                "threads": self.threads, "ok": self.ok, "problems": list(self.problems)}


def enabled() -> bool:
    """Whether pinning is on (``DEEPRUBIN_PIN_NUMERICS`` unset or not "0")."""
    return os.environ.get(SWITCH, "1") != "0"


def pin() -> None:
    """Set :data:`PINNED_ENV` in this process's environment (and so its children's).

    Call before the first ``import torch``; afterwards, the thread count is applied to torch
    (:func:`apply_threads`) and :func:`status` checks what the libraries took. Overrides a
    different value a user's environment had (reproducibility is the contract), saying so
    once. Does nothing with ``DEEPRUBIN_PIN_NUMERICS=0``.
    """
    if not enabled():
        return
    changed = [f"{k}={os.environ[k]}" for k, v in PINNED_ENV.items() if k in os.environ and os.environ[k] != v]
    os.environ.update(PINNED_ENV)
    if "numpy" in sys.modules or "torch" in sys.modules:  # MKL and ATen read them at first use
        apply_threads()
        st = status()
        if st.problems:
            _warn_once(f"numpy or torch was used before deeprubin pinned its numerics; "
                       f"results may differ on other CPUs ({describe_problems(st)})")
    elif changed:
        log.info("numerics pinned for reproducibility: replaced %s", ", ".join(changed))


def apply_threads() -> None:
    """Fix torch's intra-op threads at :data:`THREADS` (after torch is imported)."""
    if not enabled():
        return
    import torch

    if torch.get_num_threads() != THREADS:
        torch.set_num_threads(THREADS)


def _mkl_cbwr() -> int | None:
    """MKL's current CNR branch as reported by the MKL inside torch, or None without MKL."""
    import torch

    lib = Path(torch.__file__).parent / "lib" / "libtorch_cpu.so"
    try:
        handle = ctypes.CDLL(str(lib))
        get = handle.mkl_serv_cbwr_get
    except (OSError, AttributeError):
        return None
    get.restype = ctypes.c_int
    return int(get(ctypes.c_int(_MKL_CBWR_ALL)))


def status() -> NumericsStatus:
    """Read back what torch's libraries use and list every way it differs from the pinning."""
    import torch

    problems = []
    cbwr = _mkl_cbwr()
    if cbwr is None:
        cbwr_text = "unavailable"
        if torch.backends.mkl.is_available():
            problems.append("cannot read MKL's CNR mode from torch's library")
        else:
            problems.append("torch is not built with MKL (another BLAS): MKL_CBWR has no effect")
    else:
        cbwr_text = "COMPATIBLE" if cbwr & 0xFFFF == _MKL_CBWR_COMPATIBLE else f"code {cbwr}"
        if cbwr & 0xFFFF != _MKL_CBWR_COMPATIBLE:
            problems.append(f"MKL CNR mode is {cbwr_text}, not COMPATIBLE (MKL loaded before MKL_CBWR was set)")
    capability = str(torch.backends.cpu.get_cpu_capability())
    wanted = PINNED_ENV["ATEN_CPU_CAPABILITY"].upper()
    if capability.upper() != wanted:
        problems.append(f"ATen CPU capability is {capability}, not {wanted}")
    threads = torch.get_num_threads()
    if threads != THREADS:
        problems.append(f"torch uses {threads} threads, not {THREADS}")
    problems.extend(_numpy_problems())
    return NumericsStatus(enabled(), cbwr_text, capability, threads, problems)


def _numpy_problems() -> list[str]:
    """How numpy's OpenBLAS and SIMD loops differ from the pinning (read back through threadpoolctl)."""
    import numpy as np
    from threadpoolctl import threadpool_info

    problems = []
    for lib in threadpool_info():
        if lib.get("internal_api") == "openblas":
            arch = str(lib.get("architecture"))
            if arch.lower() != PINNED_ENV["OPENBLAS_CORETYPE"].lower():
                problems.append(f"OpenBLAS ({lib.get('prefix')}) uses the {arch} kernels, not "
                                f"{PINNED_ENV['OPENBLAS_CORETYPE']} (numpy loaded before OPENBLAS_CORETYPE was set)")
            if lib.get("num_threads") != THREADS:
                problems.append(f"OpenBLAS ({lib.get('prefix')}) uses {lib.get('num_threads')} threads, not {THREADS}")
    features = getattr(getattr(np, "_core", None), "_multiarray_umath", None)
    enabled_features = getattr(features, "__cpu_features__", {}) or {}
    on = [f for f in PINNED_ENV["NPY_DISABLE_CPU_FEATURES"].split() if enabled_features.get(f)]
    if on:
        problems.append(f"numpy uses its {'/'.join(on)} loops (numpy loaded before NPY_DISABLE_CPU_FEATURES was set)")
    return problems


def describe_problems(st: NumericsStatus) -> str:
    return "; ".join(st.problems) if st.problems else "pinned"


def check() -> NumericsStatus:
    """:func:`apply_threads`, then :func:`status`; one warning line if the pinning did not hold."""
    apply_threads()
    st = status()
    if st.enabled and st.problems:
        _warn_once(f"numerics not pinned as configured, results may differ on other CPUs: "
                   f"{describe_problems(st)}")
    return st


def _warn_once(message: str) -> None:
    global _warned
    if not _warned:
        _warned = True
        log.warning(message)
