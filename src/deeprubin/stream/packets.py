"""Alert packets: Rubin (``lsst-alert-packet`` schemas) and ZTF layouts -> observations.

An alert packet carries one new difference-image source and the object's history. What the
stream needs from it is an :class:`Alert`: the alert id, the object id, the time of the new
source and the packet's photometry as *observations*, one per epoch, in the units of the
canonical ``lightcurves`` table (:mod:`deeprubin.core.schema`: flux density in microjansky).

Layouts read
------------
**Rubin** (``survey="rubin"``): the ``lsst.vM_m.alert`` schema shipped by the
``lsst-alert-packet`` package (GPLv3; used as a dependency, never copied), whose sample packets
the tests read. Fields used: ``diaSourceId`` (the alert id), ``diaObject.diaObjectId`` (else
``diaSource.diaObjectId``: the object id), ``diaSource`` and ``prvDiaSources`` (detections),
``prvDiaForcedSources`` (forced photometry at the object's position), each with ``visit``,
``midpointMjdTai`` [MJD, TAI], ``band``, ``psfFlux`` and ``psfFluxErr`` [nJy].

**ZTF** (``survey="ztf"``): the ZTF alert schema (github.com/ZwickyTransientFacility/ztf-avro-alert,
v4.02): ``candid`` (alert id), ``objectId``, ``candidate`` and ``prv_candidates`` (detections
carry ``magpsf``/``sigmapsf``/``isdiffpos``; entries with a null ``magpsf`` are upper limits and
give no flux), ``fp_hists`` (forced photometry: ``forcediffimflux``/``forcediffimfluxunc`` in DN
with zero point ``magzpsci``; ZTF's null value -99999 is skipped), each with ``pid`` (the image),
``jd`` and ``fid`` (1 = g, 2 = r, 3 = i). :data:`ZTF_SCHEMA` is the subset of that schema this
project writes (simulated streams); a real ZTF packet, whose Avro container embeds its own
schema, reads the same way.

Observations and epochs
-----------------------
Each observation is keyed by its *epoch*: the image it was measured on (Rubin ``visit``, ZTF
``pid``). A detection and a forced measurement of the same image are one observation: the
forced flux is kept (forced photometry measures every epoch at one fixed position, as the
training light curves do) and ``detected`` is True. Keys make history idempotent: the same epoch
seen again in a later packet's history is the same observation.

Wire formats
------------
* Avro object container files (``.avro``): what the replay reads and the simulator writes;
  :func:`read_avro_file`, :func:`write_avro_file`.
* Kafka / Redis message bodies, :func:`encode_message` / :func:`decode_message`: ZTF sends each
  packet as a one-record Avro container (schema embedded); Rubin uses the Confluent wire format
  (magic byte 0, 4-byte big-endian schema id, schemaless Avro body), the schema id being
  ``lsst.alert.packet.Schema.get_schema_id()`` (1101 for v11.1).
"""
from __future__ import annotations

import io
import math
import os
import struct
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import fastavro

from ..core.io import atomic_path
from ..core.schema import AB_ZEROPOINT_UJY

SURVEYS = ("ztf", "rubin")
#: ZTF filter id -> band name (as in :mod:`deeprubin.sources.ztf_alerts`).
ZTF_FID_BANDS = {1: "g", 2: "r", 3: "i"}
ZTF_BAND_FIDS = {b: f for f, b in ZTF_FID_BANDS.items()}
#: MJD = JD - this.
JD_TO_MJD = 2400000.5
#: ZTF's "no measurement" value in ``fp_hists.forcediffimflux``.
ZTF_FP_NULL = -99999.0
#: Rubin fluxes are in nJy; the canonical tables in microjansky.
NJY_PER_UJY = 1000.0
#: The Rubin schema version used when none is configured (``lsst-alert-packet``'s latest).
RUBIN_DEFAULT_VERSION = "latest"
_CONFLUENT_MAGIC = 0


class PacketError(ValueError):
    """A malformed packet; the message names the packet (file#index, topic/offset) and the field."""


@dataclass(frozen=True)
class Observation:
    """One epoch of an object's photometry, in the canonical units."""

    epoch: int          # the image: Rubin visit, ZTF pid
    time: float         # MJD
    band: str
    flux: float         # microjansky (difference flux)
    flux_err: float     # microjansky, > 0
    detected: bool      # a difference-image detection at this epoch


@dataclass(frozen=True)
class Alert:
    """What the stream keeps of a packet."""

    alert_id: str
    object_id: str
    survey: str
    time: float                       # MJD of the new source
    observations: tuple[Observation, ...]
    ra: float = math.nan
    dec: float = math.nan


# ---------------------------------------------------------------------------------------------
# Rubin


def rubin_schema_dir(version: str = RUBIN_DEFAULT_VERSION) -> Path:
    """Directory of the ``lsst-alert-packet`` schema ``version`` ("11.1", or "latest")."""
    import lsst.alert.packet as lap

    if str(version) == "latest":
        major, minor = lap.get_latest_schema_version()
    else:
        try:
            major, minor = (int(x) for x in str(version).split("."))
        except ValueError as err:
            raise PacketError(f"Rubin schema version must look like '11.1' or be 'latest', got {version!r}") from err
    path = Path(lap.get_schema_path(major, minor))
    if not path.is_dir():
        raise PacketError(f"Rubin schema version {major}.{minor} is not shipped by lsst-alert-packet "
                          f"(looked in {path})")
    return path


@lru_cache(maxsize=8)
def rubin_schema(version: str = RUBIN_DEFAULT_VERSION):
    """The ``lsst.alert.packet.Schema`` of alert packets of ``version``."""
    import lsst.alert.packet as lap

    path = rubin_schema_dir(version)
    major, minor = path.parent.name, path.name
    return lap.Schema.from_file(str(path / f"lsst.v{major}_{minor}.alert.avsc"))


def rubin_sample_packets(version: str = RUBIN_DEFAULT_VERSION) -> Path:
    """The sample packet file ``lsst-alert-packet`` ships with schema ``version``."""
    return rubin_schema_dir(version) / "sample_data" / "fakeAlert.avro"


def _field(record: Mapping, name: str, where: str, *, kind=None, required: bool = True):
    if not isinstance(record, Mapping):
        raise PacketError(f"{where}: expected a record, got {type(record).__name__}")
    value = record.get(name)
    if value is None:
        if required:
            raise PacketError(f"{where}: field '{name}' is missing or null")
        return None
    if kind is float:
        try:
            value = float(value)
        except (TypeError, ValueError) as err:
            raise PacketError(f"{where}: field '{name}' is not a number ({value!r})") from err
        if not math.isfinite(value):
            if required:
                raise PacketError(f"{where}: field '{name}' is not finite ({value!r})")
            return None
    return value


def _coordinate(record: Mapping, name: str, where: str) -> float:
    value = _field(record, name, where, kind=float, required=False)
    return math.nan if value is None else value


def _rubin_observation(src: Mapping, where: str, *, detected: bool) -> Observation | None:
    flux = _field(src, "psfFlux", where, kind=float, required=False)
    err = _field(src, "psfFluxErr", where, kind=float, required=False)
    if flux is None or err is None or not err > 0:
        return None  # a source without a PSF flux (flagged measurement) gives no photometry
    band = _field(src, "band", where)
    return Observation(int(_field(src, "visit", where)), float(_field(src, "midpointMjdTai", where, kind=float)),
                       str(band), flux / NJY_PER_UJY, err / NJY_PER_UJY, detected)


def rubin_alert(packet: Mapping, where: str = "Rubin packet") -> Alert:
    """A Rubin alert packet (a deserialised ``lsst.vM_m.alert`` record) -> :class:`Alert`."""
    source = _field(packet, "diaSource", where)
    alert_id = _field(packet, "diaSourceId", where)
    obj = packet.get("diaObject") if isinstance(packet, Mapping) else None
    object_id = (obj or {}).get("diaObjectId") if isinstance(obj, Mapping) else None
    if object_id is None:
        object_id = _field(source, "diaObjectId", f"{where}: diaSource", required=False)
    if object_id is None:
        raise PacketError(f"{where}: alert {alert_id}: no object id (diaObject.diaObjectId and "
                          f"diaSource.diaObjectId are null; a solar-system source is not classified here)")
    # the new source last: it wins an epoch its history also lists
    detections = [(s, f"{where}: prvDiaSources[{k}]") for k, s in enumerate(packet.get("prvDiaSources") or [])]
    detections.append((source, f"{where}: diaSource"))
    forced = [(s, f"{where}: prvDiaForcedSources[{k}]") for k, s in enumerate(packet.get("prvDiaForcedSources") or [])]
    new = _rubin_observation(source, f"{where}: diaSource", detected=True)
    if new is None:
        raise PacketError(f"{where}: alert {alert_id}: field 'diaSource.psfFlux'/'psfFluxErr' is null or the "
                          f"error is not positive")
    observations = merge_observations(
        [o for s, w in detections if (o := _rubin_observation(s, w, detected=True)) is not None],
        [o for s, w in forced if (o := _rubin_observation(s, w, detected=False)) is not None])
    return Alert(str(alert_id), str(object_id), "rubin", new.time, observations,
                 _coordinate(source, "ra", where), _coordinate(source, "dec", where))


# ---------------------------------------------------------------------------------------------
# ZTF

def _nullable(kind: str) -> list:
    return ["null", kind]


#: The subset of the ZTF alert schema (v4.02) written for simulated ZTF streams: field names,
#: types and meanings as in ZTF's schema, only the fields the classifier reads (and the ids).
ZTF_SCHEMA = {
    "namespace": "ztf", "type": "record", "name": "alert", "doc": "ZTF alert (subset of ztf-avro-alert v4.02)",
    "fields": [
        {"name": "schemavsn", "type": "string"},
        {"name": "publisher", "type": "string"},
        {"name": "objectId", "type": "string"},
        {"name": "candid", "type": "long"},
        {"name": "candidate", "type": {"type": "record", "name": "candidate", "namespace": "ztf.alert", "fields": [
            {"name": "jd", "type": "double"}, {"name": "fid", "type": "int"}, {"name": "pid", "type": "long"},
            {"name": "diffmaglim", "type": _nullable("float"), "default": None},
            {"name": "programid", "type": "int"}, {"name": "candid", "type": "long"},
            {"name": "isdiffpos", "type": "string"}, {"name": "ra", "type": "double"}, {"name": "dec", "type": "double"},
            {"name": "magpsf", "type": "float"}, {"name": "sigmapsf", "type": "float"},
            {"name": "rb", "type": _nullable("float"), "default": None}]}},
        {"name": "prv_candidates", "type": _nullable({"type": "array", "items": {
            "type": "record", "name": "prv_candidate", "namespace": "ztf.alert", "fields": [
                {"name": "jd", "type": "double"}, {"name": "fid", "type": "int"}, {"name": "pid", "type": "long"},
                {"name": "diffmaglim", "type": _nullable("float"), "default": None},
                {"name": "programid", "type": "int"},
                {"name": "candid", "type": _nullable("long"), "default": None},
                {"name": "isdiffpos", "type": _nullable("string"), "default": None},
                {"name": "magpsf", "type": _nullable("float"), "default": None},
                {"name": "sigmapsf", "type": _nullable("float"), "default": None}]}}), "default": None},
        {"name": "fp_hists", "type": _nullable({"type": "array", "items": {
            "type": "record", "name": "fp_hist", "namespace": "ztf.alert", "fields": [
                {"name": "fid", "type": "int"}, {"name": "pid", "type": "long"},
                {"name": "magzpsci", "type": _nullable("float"), "default": None},
                {"name": "diffmaglim", "type": _nullable("float"), "default": None},
                {"name": "programid", "type": "int"}, {"name": "jd", "type": "double"},
                {"name": "forcediffimflux", "type": _nullable("float"), "default": None},
                {"name": "forcediffimfluxunc", "type": _nullable("float"), "default": None}]}}), "default": None},
    ],
}


def _ztf_band(record: Mapping, where: str) -> str:
    fid = _field(record, "fid", where)
    if fid not in ZTF_FID_BANDS:
        raise PacketError(f"{where}: field 'fid' has unknown filter id {fid!r}; known: {ZTF_FID_BANDS}")
    return ZTF_FID_BANDS[fid]


def _ztf_detection(record: Mapping, where: str) -> Observation | None:
    mag = _field(record, "magpsf", where, kind=float, required=False)
    if mag is None:
        return None  # an upper limit (non-detection): no flux
    sigma = _field(record, "sigmapsf", where, kind=float)
    sign = str(_field(record, "isdiffpos", where)).strip().lower()
    if sign not in ("t", "1", "f", "0", "-1"):
        raise PacketError(f"{where}: field 'isdiffpos' must be t/f (or 1/0/-1), got {sign!r}")
    flux = 10.0 ** (-0.4 * (mag - AB_ZEROPOINT_UJY)) * (1.0 if sign in ("t", "1") else -1.0)
    err = abs(flux) * math.log(10.0) / 2.5 * sigma
    if not err > 0:
        raise PacketError(f"{where}: field 'sigmapsf' must be > 0, got {sigma!r}")
    return Observation(int(_field(record, "pid", where)), float(_field(record, "jd", where, kind=float)) - JD_TO_MJD,
                       _ztf_band(record, where), flux, err, True)


def _ztf_forced(record: Mapping, where: str) -> Observation | None:
    flux = _field(record, "forcediffimflux", where, kind=float, required=False)
    err = _field(record, "forcediffimfluxunc", where, kind=float, required=False)
    zp = _field(record, "magzpsci", where, kind=float, required=False)
    if flux is None or err is None or zp is None or flux == ZTF_FP_NULL or err == ZTF_FP_NULL or not err > 0:
        return None
    scale = 10.0 ** (-0.4 * (zp - AB_ZEROPOINT_UJY))  # DN -> microjansky
    return Observation(int(_field(record, "pid", where)), float(_field(record, "jd", where, kind=float)) - JD_TO_MJD,
                       _ztf_band(record, where), flux * scale, err * scale, False)


def ztf_alert(packet: Mapping, where: str = "ZTF packet") -> Alert:
    """A ZTF alert packet (deserialised) -> :class:`Alert`."""
    candid = _field(packet, "candid", where)
    object_id = _field(packet, "objectId", where)
    candidate = _field(packet, "candidate", where)
    new = _ztf_detection(candidate, f"{where}: candidate")
    if new is None:
        raise PacketError(f"{where}: alert {candid}: field 'candidate.magpsf' is null")
    detections = [o for k, r in enumerate(packet.get("prv_candidates") or [])
                  if (o := _ztf_detection(r, f"{where}: prv_candidates[{k}]")) is not None] + [new]
    forced = [o for k, r in enumerate(packet.get("fp_hists") or [])
              if (o := _ztf_forced(r, f"{where}: fp_hists[{k}]")) is not None]
    return Alert(str(candid), str(object_id), "ztf", new.time, merge_observations(detections, forced),
                 _coordinate(candidate, "ra", where), _coordinate(candidate, "dec", where))


def ztf_packet(object_id: str, candid: int, new: Observation, history: Sequence[Observation], *,
               ra: float = 0.0, dec: float = 0.0, zero_point: float = 26.3, programid: int = 1) -> dict:
    """A ZTF packet (:data:`ZTF_SCHEMA`) for a new detection ``new`` and its ``history``.

    History detections become ``prv_candidates`` with magnitudes; every history epoch (and the
    new one) also becomes an ``fp_hists`` entry with flux in DN at ``zero_point``, as ZTF's forced
    photometry history; history non-detections are ``prv_candidates`` upper limits.
    """
    def mag(o: Observation) -> tuple[float, float, str]:
        m = AB_ZEROPOINT_UJY - 2.5 * math.log10(abs(o.flux))
        return m, 2.5 / math.log(10.0) * o.flux_err / abs(o.flux), "t" if o.flux > 0 else "f"

    def jd(o: Observation) -> float:
        return o.time + JD_TO_MJD

    scale = 10.0 ** (-0.4 * (zero_point - AB_ZEROPOINT_UJY))
    m, s, sign = mag(new)
    prv = []
    for o in history:
        entry = {"jd": jd(o), "fid": ZTF_BAND_FIDS[o.band], "pid": o.epoch, "programid": programid,
                 "diffmaglim": AB_ZEROPOINT_UJY - 2.5 * math.log10(5.0 * o.flux_err)}
        if o.detected and o.flux != 0:
            hm, hs, hsign = mag(o)
            entry.update(candid=o.epoch * 10 + 1, isdiffpos=hsign, magpsf=hm, sigmapsf=hs)
        prv.append(entry)
    fp = [{"jd": jd(o), "fid": ZTF_BAND_FIDS[o.band], "pid": o.epoch, "programid": programid,
           "magzpsci": zero_point, "diffmaglim": AB_ZEROPOINT_UJY - 2.5 * math.log10(5.0 * o.flux_err),
           "forcediffimflux": o.flux / scale, "forcediffimfluxunc": o.flux_err / scale}
          for o in [*history, new]]
    return {"schemavsn": "4.02", "publisher": "deeprubin simulate", "objectId": str(object_id), "candid": int(candid),
            "candidate": {"jd": jd(new), "fid": ZTF_BAND_FIDS[new.band], "pid": new.epoch,
                          "diffmaglim": AB_ZEROPOINT_UJY - 2.5 * math.log10(5.0 * new.flux_err),
                          "programid": programid, "candid": int(candid), "isdiffpos": sign, "ra": float(ra),
                          "dec": float(dec), "magpsf": m, "sigmapsf": s, "rb": None},
            "prv_candidates": prv or None, "fp_hists": fp}


# ---------------------------------------------------------------------------------------------
# shared


def merge_observations(detections: Iterable[Observation], forced: Iterable[Observation]) -> tuple[Observation, ...]:
    """One observation per epoch, sorted by time: the forced flux where there is one, ``detected``
    where any detection was on that epoch."""
    detected = {o.epoch: o for o in detections}   # a later entry of the same epoch wins
    by_epoch = dict(detected)
    for o in forced:
        by_epoch[o.epoch] = Observation(o.epoch, o.time, o.band, o.flux, o.flux_err, o.epoch in detected)
    return tuple(sorted(by_epoch.values(), key=lambda o: (o.time, o.epoch)))


def parse_alert(packet: Mapping, survey: str, where: str) -> Alert:
    """``packet`` of ``survey`` ("ztf" | "rubin") -> :class:`Alert`; :class:`PacketError` names ``where``."""
    if survey == "ztf":
        return ztf_alert(packet, where)
    if survey == "rubin":
        return rubin_alert(packet, where)
    raise PacketError(f"{where}: unknown survey {survey!r}; known: {list(SURVEYS)}")


def writer_schema(survey: str, rubin_version: str = RUBIN_DEFAULT_VERSION) -> dict:
    """The Avro schema packets of ``survey`` are written with."""
    if survey == "ztf":
        return ZTF_SCHEMA
    if survey == "rubin":
        return rubin_schema(rubin_version).definition
    raise PacketError(f"unknown survey {survey!r}; known: {list(SURVEYS)}")


def read_avro_file(path: str | os.PathLike) -> Iterator[dict]:
    """The packets of an Avro object container file, in order (the file's own writer schema)."""
    try:
        with open(path, "rb") as fh:
            yield from fastavro.reader(fh)
    except (ValueError, EOFError, TypeError, KeyError, IndexError, struct.error) as err:
        raise PacketError(f"{path}: not a readable Avro container file ({type(err).__name__}: {err})") from err


def write_avro_file(path: str | os.PathLike, packets: Iterable[Mapping], survey: str, *,
                    rubin_version: str = RUBIN_DEFAULT_VERSION, codec: str = "deflate") -> Path:
    """Write ``packets`` to an Avro container file atomically (temporary file, then rename)."""
    schema = fastavro.parse_schema(writer_schema(survey, rubin_version))
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        fastavro.writer(fh, schema, packets, codec=codec)
    return Path(path)


def encode_message(packet: Mapping, survey: str, *, rubin_version: str = RUBIN_DEFAULT_VERSION) -> bytes:
    """A packet as a broker message body (see the module docstring for each survey's framing)."""
    if survey == "rubin":
        schema = rubin_schema(rubin_version)
        return struct.pack(">bI", _CONFLUENT_MAGIC, schema.get_schema_id()) + schema.serialize(dict(packet))
    buffer = io.BytesIO()
    fastavro.writer(buffer, fastavro.parse_schema(writer_schema(survey)), [packet])
    return buffer.getvalue()


def decode_message(body: bytes, survey: str, where: str, *, rubin_version: str = RUBIN_DEFAULT_VERSION) -> dict:
    """A broker message body -> the packet; :class:`PacketError` naming ``where`` when malformed."""
    if not isinstance(body, (bytes, bytearray, memoryview)) or len(body) == 0:
        raise PacketError(f"{where}: empty message body")
    body = bytes(body)
    try:
        if survey == "rubin":
            if len(body) < 5 or body[0] != _CONFLUENT_MAGIC:
                raise PacketError(f"{where}: not in the Confluent wire format (magic byte {body[:1]!r}, expected 0)")
            schema = rubin_schema(rubin_version)
            (schema_id,) = struct.unpack(">I", body[1:5])
            if schema_id != schema.get_schema_id():
                raise PacketError(f"{where}: schema id {schema_id} != {schema.get_schema_id()} (the configured Rubin "
                                  f"schema {rubin_version}); set stream.rubin_schema to the producer's version")
            return schema.deserialize(body[5:])
        records = list(fastavro.reader(io.BytesIO(body)))
    except PacketError:
        raise
    except Exception as err:  # fastavro raises many types on corrupt bytes
        raise PacketError(f"{where}: undecodable Avro ({type(err).__name__}: {err})") from err
    if len(records) != 1:
        raise PacketError(f"{where}: expected one packet per message, found {len(records)}")
    return records[0]
