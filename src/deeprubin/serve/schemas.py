"""Request and response bodies of the service (pydantic), and the request -> canonical tables step.

The rows are those of :mod:`deeprubin.core.schema`: light-curve rows (``object_id``, ``time``,
``band``, ``flux``, ``flux_err``, optional ``mag``, ``mag_err``, ``detected``) and optional object
rows (``object_id``, ``redshift``, ``ra``, ``dec``). Types, presence and finiteness are checked
here (a 422 names the field); the schema's own rules (positive errors, repeated epochs, minimum
points) are applied by the predict path's validation (:mod:`deeprubin.serve.scoring`).
"""
from __future__ import annotations

from typing import Optional

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from ..core.schema import LIGHTCURVE_OPTIONAL, LIGHTCURVE_REQUIRED

_ROW = ConfigDict(extra="forbid", allow_inf_nan=False)
#: Optional object columns a request may give.
OBJECT_OPTIONAL = ("redshift", "ra", "dec")


class LightCurveRow(BaseModel):
    """One observation (canonical ``lightcurves`` row); flux in microjansky, time in days (MJD)."""

    model_config = _ROW
    object_id: str = Field(min_length=1)
    time: float
    band: str = Field(min_length=1)
    flux: float
    flux_err: float
    mag: Optional[float] = None
    mag_err: Optional[float] = None
    detected: Optional[bool] = None


class ObjectRow(BaseModel):
    """Metadata of one object (canonical ``objects`` row); ``redshift`` feeds absolute magnitudes."""

    model_config = _ROW
    object_id: str = Field(min_length=1)
    redshift: Optional[float] = None
    ra: Optional[float] = None
    dec: Optional[float] = None


class PredictRequest(BaseModel):
    """Light curves of one or a few objects, and optionally their metadata."""

    model_config = ConfigDict(extra="forbid")
    lightcurves: list[LightCurveRow] = Field(min_length=1)
    objects: list[ObjectRow] = Field(default_factory=list)


class BatchPathRequest(BaseModel):
    """A batch job over server-side files under ``serve.batch.data_root`` (relative to it)."""

    model_config = ConfigDict(extra="forbid")
    path: str = Field(min_length=1, description="CSV or parquet file of light-curve rows")
    objects_path: Optional[str] = Field(default=None, min_length=1,
                                        description="optional objects table (object_id, redshift, ra, dec)")


class ObjectResult(BaseModel):
    object_id: str
    predicted: Optional[str] = Field(description="the most probable class; null when not classified")
    probabilities: Optional[dict[str, float]] = Field(description="calibrated, per class; null when not classified")
    quality_flags: list[str] = Field(default_factory=list)
    warnings: list[str] = Field(default_factory=list)


class ModelRef(BaseModel):
    name: str
    version: str
    calibration: str


class PredictResponse(BaseModel):
    task: str
    model: ModelRef
    classes: list[str]
    results: list[ObjectResult]


class RequestTablesError(ValueError):
    """Rows that are well typed but cannot form the canonical tables; the message names the field."""


def object_ids(request: PredictRequest) -> list[str]:
    """The request's distinct object ids, in order of first appearance (light curves, then objects)."""
    seen: dict[str, None] = {}
    for row in (*request.lightcurves, *request.objects):
        seen.setdefault(row.object_id, None)
    return list(seen)


def request_tables(request: PredictRequest) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(lightcurves, metadata)``: the canonical light-curve table (an optional column only when some
    row gives it) and one row per object of ``objects`` (``object_id`` and the optional columns given)."""
    rows = [r.model_dump() for r in request.lightcurves]
    lc = pd.DataFrame({c: [r[c] for r in rows] for c in LIGHTCURVE_REQUIRED})
    for column in LIGHTCURVE_OPTIONAL:
        values = [r[column] for r in rows]
        given = [v is not None for v in values]
        if not any(given):
            continue
        if column == "detected":
            if not all(given):
                i = given.index(False)
                raise RequestTablesError(f"field 'lightcurves[{i}].detected' is missing; give 'detected' on "
                                         "every row or on none")
            lc[column] = np.asarray(values, dtype=bool)
        else:
            lc[column] = np.asarray([np.nan if v is None else v for v in values], dtype=np.float64)
    objects = [r.model_dump() for r in request.objects]
    meta = pd.DataFrame({"object_id": [o["object_id"] for o in objects]})
    for column in OBJECT_OPTIONAL:
        if any(o[column] is not None for o in objects):
            meta[column] = np.asarray([np.nan if o[column] is None else o[column] for o in objects],
                                      dtype=np.float64)
    return lc, meta
