"""A time-ordered alert stream from light-curve tables (the built-in simulator's, or any source's).

Every *detection* (``detected``, else ``flux / flux_err >= 5``) of an object becomes one packet,
as survey alert streams emit one alert per new difference-image detection. The packet carries the
object's history as the real packets do: for ZTF (:func:`deeprubin.stream.packets.ztf_packet`)
the detections and upper limits of the previous ``history_days`` in ``prv_candidates`` and their
forced photometry in ``fp_hists``. Packets are sorted by time (then object), so a replay is the
night as the survey would send it; they are written to Avro container files of at most
``packets_per_file`` packets (``alerts_00000.avro``, ...), which the replay transport reads in
name order. A ``truth.csv`` (object_id, label) beside them lets the stream's output be scored.

Epoch ids (ZTF ``pid``) are the row's position in the input table sorted by object and time, and
alert ids (``candid``) ``epoch * 10 + 1``; both are therefore the same for the same table.
"""
from __future__ import annotations

import bisect
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..core.io import write_table
from ..core.schema import SchemaError
from .packets import ZTF_BAND_FIDS, Observation, PacketError, write_avro_file, ztf_packet

log = logging.getLogger(__name__)

#: Detection threshold when a table has no ``detected`` column (the schema's definition).
DETECTION_SNR = 5.0


@dataclass(frozen=True)
class StreamFiles:
    """What :func:`write_stream` wrote."""

    files: list[Path]
    truth: Path
    n_alerts: int
    n_objects: int
    median_history: float   # median number of observations per packet


def _observations(lightcurves: pd.DataFrame) -> pd.DataFrame:
    missing = [c for c in ("object_id", "time", "band", "flux", "flux_err") if c not in lightcurves.columns]
    if missing:
        raise SchemaError(f"lightcurves: missing required column(s) {missing}")
    table = lightcurves.assign(object_id=lightcurves["object_id"].astype(str)).sort_values(
        ["object_id", "time", "band"], kind="mergesort").reset_index(drop=True)
    if "detected" in table.columns:
        detected = table["detected"].fillna(False).astype(bool)
    else:
        detected = table["flux"] / table["flux_err"] >= DETECTION_SNR
    return table.assign(detected=detected.to_numpy(), epoch=np.arange(1, len(table) + 1, dtype=np.int64))


def iter_ztf_packets(lightcurves: pd.DataFrame, objects: pd.DataFrame | None = None, *,
                     history_days: float = 30.0) -> Iterator[dict]:
    """ZTF packets of every detection of ``lightcurves``, sorted by time (then object id)."""
    if not history_days > 0:
        raise ValueError(f"history_days must be > 0, got {history_days!r}")
    table = _observations(lightcurves)
    unknown = sorted(set(table["band"].astype(str)) - set(ZTF_BAND_FIDS))
    if unknown:
        raise PacketError(f"lightcurves: column 'band' has {unknown}, which ZTF packets cannot carry "
                          f"(ZTF filters: {sorted(ZTF_BAND_FIDS)})")
    coords = {}
    if objects is not None and {"ra", "dec"} <= set(objects.columns):
        coords = dict(zip(objects["object_id"].astype(str), zip(objects["ra"], objects["dec"])))
    alerts = table.loc[table["detected"], ["time", "object_id", "epoch"]].sort_values(
        ["time", "object_id"], kind="mergesort")
    per_object = {}
    for oid, rows in table.groupby("object_id", sort=False):
        obs = [Observation(int(e), float(t), str(b), float(f), float(s), bool(d)) for e, t, b, f, s, d in zip(
            rows["epoch"], rows["time"], rows["band"], rows["flux"], rows["flux_err"], rows["detected"])]
        per_object[oid] = (obs, [o.time for o in obs], {o.epoch: k for k, o in enumerate(obs)})
    for _, oid, epoch in alerts.itertuples(index=False):
        obs, times, index = per_object[oid]
        k = index[int(epoch)]
        new = obs[k]
        start = bisect.bisect_left(times, new.time - history_days)
        ra, dec = coords.get(oid, (0.0, 0.0))
        ra = 0.0 if not np.isfinite(ra) else float(ra)
        dec = 0.0 if not np.isfinite(dec) else float(dec)
        yield ztf_packet(oid, int(epoch) * 10 + 1, new, obs[start:k], ra=ra, dec=dec)


def write_stream(lightcurves: pd.DataFrame, objects: pd.DataFrame, out_dir: str | Path, *, survey: str = "ztf",
                 history_days: float = 30.0, packets_per_file: int = 10_000) -> StreamFiles:
    """Write the stream of ``lightcurves`` to ``out_dir`` (Avro files + ``truth.csv``)."""
    if survey != "ztf":
        raise ValueError(f"write_stream: survey {survey!r} is not simulated yet; only 'ztf' (the transients "
                         "model's g/r bands)")
    if not int(packets_per_file) > 0:
        raise ValueError(f"packets_per_file must be > 0, got {packets_per_file!r}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("alerts_*.avro"):
        old.unlink()   # a previous stream's files would be replayed after this one's
    files, chunk, n, history = [], [], 0, []
    for packet in iter_ztf_packets(lightcurves, objects, history_days=history_days):
        chunk.append(packet)
        history.append(len(packet["fp_hists"]))
        if len(chunk) == packets_per_file:
            files.append(write_avro_file(out / f"alerts_{len(files):05d}.avro", chunk, survey))
            n += len(chunk)
            chunk = []
    if chunk:
        files.append(write_avro_file(out / f"alerts_{len(files):05d}.avro", chunk, survey))
        n += len(chunk)
    labels = objects[["object_id", "label"]].assign(object_id=objects["object_id"].astype(str))
    truth = write_table(labels, out / "truth.csv")
    log.info("stream: %d alerts of %d objects -> %d file(s) in %s", n, labels.shape[0], len(files), out)
    return StreamFiles(files, truth, n, int(labels.shape[0]), float(np.median(history)) if history else 0.0)
