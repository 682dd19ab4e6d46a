"""Filter response curves of the simulated survey, as sncosmo bandpasses.

ZTF's own response curves are not shipped with any offline-installable package,
so the closest bundled curves of ``speclite`` stand in for them (effective
wavelengths, Angstrom):

====== ============ ============================= =====================
band   ZTF (Bellm+) proxy (speclite name)         proxy effective
====== ============ ============================= =====================
g      4746         ``sdss2010-g`` (SDSS g)        4749
r      6366         ``panstarrs-r`` (Pan-STARRS1 r) 6241
====== ============ ============================= =====================

SDSS g is within 3 Angstrom of ZTF g; for r, PS1 r is the closest bundled curve
(SDSS r is at 6206). The residual r-band mismatch (~125 Angstrom blueward) shifts
SN Ia r-band magnitudes by a few hundredths of a magnitude at low redshift,
below the 0.1 mag intrinsic scatter of the population. Both curves include a
standard atmosphere.
"""
from __future__ import annotations

from functools import lru_cache

#: Survey band -> speclite filter used as its response curve.
PROXY_FILTERS = {"g": "sdss2010-g", "r": "panstarrs-r"}


@lru_cache(maxsize=None)
def bandpass(band: str):
    """sncosmo ``Bandpass`` standing in for ZTF ``band`` (``"g"`` or ``"r"``)."""
    import sncosmo
    import speclite.filters

    if band not in PROXY_FILTERS:
        raise ValueError(f"band {band!r}: no response curve; supported {sorted(PROXY_FILTERS)}")
    curve = speclite.filters.load_filter(PROXY_FILTERS[band])
    return sncosmo.Bandpass(curve.wavelength, curve.response, name=f"deeprubin-ztf{band}-proxy")
