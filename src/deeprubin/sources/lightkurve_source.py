"""``source=lightkurve``: Kepler, K2 and TESS light curves from MAST through ``lightkurve``.

Targets
    * ``targets``: ids such as ``"KIC 10666592"``, ``"EPIC 201367065"``, ``"TIC 25155310"`` (the
      prefix picks the mission unless ``mission`` is set; bare integers need ``mission``);
    * or ``catalog``: a CSV with ephemerides (e.g. ``kepler_confirmed_planets.csv``: ``kepid``,
      ``koi_period``, ``koi_time0bk`` ...); its targets get ``catalog.label`` (e.g.
      ``planet_host``) and their ephemeris (first planet by period) in ``objects``;
    * or ``local.paths``: FITS files/folders read offline with ``lightkurve.read`` (the same
      reader ``download_all`` uses after a download), see :func:`read_local`.

Per object
    ``lightkurve.search_lightcurve(target, mission=, author=, exptime=, quarter/campaign/sector=)``
    then ``SearchResult.download_all(quality_bitmask=, flux_column=, download_dir=)``: flagged
    cadences are removed by lightkurve's ``quality_bitmask`` (``"default"`` unless configured)
    and PDCSAP flux is read by default (``flux_column``). Each quarter/campaign/sector has its
    NaN cadences removed and is normalised by its own median, then the segments are stitched
    (``LightCurveCollection.stitch``); non-finite or non-positive errors are dropped. Downloads
    run through :class:`deeprubin.sources.fetch.Fetcher` (retries, rate limit, failure registry,
    resumable, manifest); the processed light curve is cached per object as parquet.

Units -- an exception to the canonical schema
    ``deeprubin.core.schema`` defines ``flux`` in microjansky for ZTF-like photometry. Kepler/K2/TESS
    fluxes here are **relative**: each segment divided by its median (so ``flux`` ~ 1 and a
    1 % transit is a dip to 0.99), and ``flux_err`` is divided by the same median. Absolute
    e-/s fluxes of different quarters/sectors are not comparable (apertures and detectors
    change), which is why each segment is normalised. ``mag``/``mag_err``/``detected`` are not
    written. ``band`` is the mission name in lower case (``kepler``, ``k2``, ``tess``).

Time
    ``time_format: native`` (default) keeps each mission's own barycentric day count (all objects
    in one system; ``per_mission`` allows several, for tasks that never put two objects on one time
    axis, such as transits): BKJD =
    BJD_TDB - 2454833 (Kepler, K2), BTJD = BJD_TDB - 2457000 (TESS). ``bjd`` / ``mjd`` convert
    with astropy to BJD_TDB / BJD_TDB - 2400000.5 (needed to mix missions). ``objects`` records
    ``time_system`` (BKJD | BTJD | BJD_TDB | BMJD_TDB) and ``bjd_offset`` (BJD_TDB = time +
    bjd_offset); catalogue epochs are converted into the same system.

Labels
    ``labels.table`` (user table, ``label_source=user_table``) wins over the catalogue label
    (``catalog:<file name>``), which wins over ``labels.label`` (one label for every object,
    ``config``). ``group_id`` is the star (the target id), so no star straddles splits.
"""
from __future__ import annotations

import hashlib
import json
import logging
import random
import re
import shutil
import time as _time
import warnings
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import pandas as pd
from omegaconf import DictConfig, OmegaConf

from ..core.config import ConfigError
from ..core.schema import SchemaError
from .fetch import EmptyResult, Fetcher, FetchError, FetchPolicy, safe_name
from .missions import MISSIONS as MISSION_TABLE
from .missions import PREFIX_MISSION, read_koi_catalog

log = logging.getLogger(__name__)

#: Mission -> (id prefix, native time system, BJD offset of that system): from the one table.
MISSIONS: dict[str, tuple[str, str, float]] = {key: (m.id_prefix, m.time_system, m.bjd_offset)
                                               for key, m in MISSION_TABLE.items()}
MISSION_NAMES = {key: m.name for key, m in MISSION_TABLE.items()}   # lightkurve's spelling
TIME_FORMATS = ("native", "per_mission", "bjd", "mjd")
FLUX_UNIT = "relative: segment flux / segment median"


class LightCurveFileError(ValueError):
    """A FITS file that lightkurve cannot read as a Kepler/K2/TESS light curve (names the file)."""


# --------------------------------------------------------------------------- ids


def normalise_target(target: Any, mission: str | None = None) -> tuple[str, str]:
    """``"kic10666592"``, ``"KIC 10666592"`` or ``10666592`` (+ mission) -> ("KIC 10666592", "kepler")."""
    text = str(target).strip()
    m = re.fullmatch(r"(?i)(kic|kplr|epic|ktwo|tic)[\s_-]*0*(\d+)", text)
    if m:
        prefix_mission = PREFIX_MISSION[m.group(1).upper()]
        mission = (mission or prefix_mission).lower()
        if mission != prefix_mission:
            raise ConfigError(f"target '{text}' is a {MISSION_NAMES[prefix_mission]} id but "
                              f"'source.mission' is {MISSION_NAMES.get(mission, mission)}")
        return f"{MISSIONS[mission][0]} {int(m.group(2))}", mission
    if re.fullmatch(r"\d+", text):
        if not mission:
            raise ConfigError(f"target '{text}' has no KIC/EPIC/TIC prefix and 'source.mission' is null")
        mission = mission.lower()
        if mission not in MISSIONS:
            raise ConfigError(f"config key 'source.mission' must be one of {list(MISSION_NAMES.values())}, "
                              f"got {mission!r}")
        return f"{MISSIONS[mission][0]} {int(text)}", mission
    raise ConfigError(f"target '{text}' is not a KIC/EPIC/TIC id (e.g. 'KIC 10666592', 'TIC 25155310')")


def _meta_mission(meta: Mapping[str, Any], path: str) -> str:
    mission = str(meta.get("MISSION") or meta.get("TELESCOP") or "").strip().lower()
    if mission not in MISSIONS:
        raise LightCurveFileError(f"{path}: unknown mission {mission!r} in the FITS header")
    return mission


def object_id_of(lc, path: str = "<light curve>") -> str:
    """Canonical id (``KIC n`` / ``EPIC n`` / ``TIC n``) from a lightkurve LightCurve's header."""
    meta = lc.meta
    mission = _meta_mission(meta, path)
    number = meta.get("TICID") if mission == "tess" else meta.get("KEPLERID")
    number = number if number is not None else meta.get("TARGETID")
    if number is None:
        raise LightCurveFileError(f"{path}: no target id (KEPLERID/TICID/TARGETID) in the FITS header")
    return f"{MISSIONS[mission][0]} {int(number)}"


# --------------------------------------------------------------------------- reading


def _fits_diagnosis(path: Path) -> str:
    """Why astropy finds a FITS file broken (truncated header/data), for the error message."""
    from astropy.io import fits

    caught: list = []
    error = None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            with fits.open(path, memmap=False) as hdul:
                hdul.verify("exception")
                for hdu in hdul:
                    _ = hdu.data
        except Exception as exc:  # noqa: BLE001 - turned into the message
            error = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    problems = list(dict.fromkeys(" ".join(str(w.message).split())[:240] for w in caught))
    if error:
        problems.append(error)
    return "; ".join(problems) if problems else "no FITS-level error"


def read_local(paths: str | Path | Sequence[str | Path], *, quality_bitmask: str | int = "default",
               flux_column: str = "pdcsap_flux", pattern: str = "*.fits") -> list:
    """Read Kepler/K2/TESS light-curve FITS files with ``lightkurve.read`` (flagged cadences removed).

    ``paths``: files and/or folders (searched for ``pattern``). A file lightkurve cannot read
    (truncated or corrupt) raises :class:`LightCurveFileError` naming it and saying what is wrong.
    """
    import lightkurve as lk

    if isinstance(paths, (str, Path)):
        paths = [paths]
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            files.extend(sorted(p.glob(pattern)))
        elif p.exists():
            files.append(p)
        else:
            raise FileNotFoundError(f"{p}: no such light-curve file or folder")
    if not files:
        raise FileNotFoundError(f"no '{pattern}' files in {[str(p) for p in paths]}")
    out = []
    for f in files:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                lc = lk.read(str(f), quality_bitmask=quality_bitmask, flux_column=flux_column)
        except Exception as exc:  # noqa: BLE001 - re-raised with the file name and diagnosis
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise LightCurveFileError(
                f"{f}: cannot be read as a Kepler/K2/TESS light curve ({first}); FITS check: "
                f"{_fits_diagnosis(f)}. A truncated file usually comes from an interrupted "
                "download: delete it and fetch it again") from exc
        if not hasattr(lc, "flux") or not hasattr(lc, "time"):
            raise LightCurveFileError(f"{f}: is a {type(lc).__name__}, not a light curve file")
        lc.meta["FILENAME"] = str(f)
        out.append(lc)
    return out


# --------------------------------------------------------------------------- processing


def _values(column) -> np.ndarray:
    """Plain float array from a (possibly masked) astropy Quantity column; masked -> NaN."""
    mask = getattr(column, "mask", None)
    raw = getattr(column, "unmasked", column)
    values = np.asarray(getattr(raw, "value", raw), dtype=float)
    if mask is not None and np.any(mask):
        values = np.where(mask, np.nan, values)
    return values


def _segment_label(meta: Mapping[str, Any], mission: str) -> str:
    for key, letter in (("QUARTER", "Q"), ("CAMPAIGN", "C"), ("SECTOR", "S")):
        if meta.get(key) is not None:
            return f"{letter}{int(meta[key])}"
    return "?"


def process_segments(segments: Sequence, object_id: str) -> tuple[pd.DataFrame, dict]:
    """NaN removal, per-segment median normalisation and stitching of one object's segments.

    Returns a table (time in the mission's native system, flux, flux_err, band) and metadata
    (mission, time_system, bjd_offset, segments, author, exptime_s, ra, dec ...).
    """
    import lightkurve as lk

    if not segments:
        raise EmptyResult(f"empty: no light curve segments for {object_id}")
    missions = {_meta_mission(s.meta, object_id) for s in segments}
    if len(missions) > 1:
        raise SchemaError(f"lightkurve: object '{object_id}': column 'band' mixes missions {sorted(missions)}")
    mission = missions.pop()
    prefix, time_system, offset = MISSIONS[mission]
    refs = {float(s.meta.get("BJDREFI", offset)) + float(s.meta.get("BJDREFF", 0.0)) for s in segments}
    if refs != {offset}:
        raise SchemaError(f"lightkurve: object '{object_id}': column 'time': BJD reference {sorted(refs)} "
                          f"is not the {time_system} reference {offset}")
    kept, labels, n_nan = [], [], 0
    for seg in segments:
        n0 = len(seg)
        seg = seg.remove_nans()
        good = np.isfinite(_values(seg.flux)) & np.isfinite(_values(seg.flux_err)) & (_values(seg.flux_err) > 0) \
            & np.isfinite(np.asarray(seg.time.value, dtype=float))
        seg = seg[good]
        n_nan += n0 - len(seg)
        if len(seg) == 0:
            continue
        kept.append(seg)
        labels.append(_segment_label(seg.meta, mission))
    if not kept:
        raise EmptyResult(f"empty: every cadence of {object_id} is NaN or flagged")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            stitched = lk.LightCurveCollection(kept).stitch(corrector_func=lambda x: x.normalize())
        except ValueError as exc:   # normalize() refuses a median <= 0 (e.g. background-dominated SAP)
            raise SchemaError(f"lightkurve: object '{object_id}': column 'flux' cannot be normalised "
                              f"by its segment median ({exc})") from exc
    t = np.asarray(stitched.time.value, dtype=float)
    flux, err = _values(stitched.flux), _values(stitched.flux_err)
    ok = np.isfinite(t) & np.isfinite(flux) & np.isfinite(err) & (err > 0)
    order = np.argsort(t[ok], kind="mergesort")
    table = pd.DataFrame({"time": t[ok][order], "flux": flux[ok][order], "flux_err": err[ok][order]})
    table = table.drop_duplicates("time", keep="first").reset_index(drop=True)
    m0 = kept[0].meta
    exptime = m0.get("TIMEDEL")
    meta = {
        "object_id": object_id, "mission": mission, "band": mission, "time_system": time_system,
        "bjd_offset": offset, "time_scale": str(stitched.time.scale),
        "segments": ",".join(labels), "n_segments": len(kept), "n_removed_nan": int(n_nan),
        "author": m0.get("AUTHOR"), "flux_origin": m0.get("FLUX_ORIGIN"),
        "quality_bitmask": str(m0.get("QUALITY_BITMASK")),
        "exptime_s": float(exptime) * 86400.0 if exptime is not None else None,
        "ra": m0.get("RA_OBJ"), "dec": m0.get("DEC_OBJ"), "flux_unit": FLUX_UNIT,
    }
    return table, meta


def convert_time(t: np.ndarray, time_system: str, bjd_offset: float, time_format: str) -> tuple[np.ndarray, str, float]:
    """Native BKJD/BTJD -> ``time_format`` via astropy; returns (time, time_system, bjd_offset)."""
    if time_format in ("native", "per_mission"):
        return np.asarray(t, dtype=float), time_system, bjd_offset
    from astropy.time import Time

    # jd1/jd2 split keeps full double precision in the conversion.
    bjd = Time(np.full(len(t), bjd_offset), np.asarray(t, dtype=float), format="jd", scale="tdb")
    if time_format == "bjd":
        return np.asarray(bjd.jd, dtype=float), "BJD_TDB", 0.0
    if time_format == "mjd":
        return np.asarray(bjd.mjd, dtype=float), "BMJD_TDB", 2400000.5
    raise ConfigError(f"config key 'source.time_format' must be one of {list(TIME_FORMATS)}, got {time_format!r}")


def to_canonical(processed: Mapping[str, tuple[pd.DataFrame, dict]], labels: Mapping[str, tuple[str, str]],
                 *, time_format: str = "native", extra: Mapping[str, Mapping[str, Any]] | None = None,
                 source: str = "lightkurve") -> tuple[pd.DataFrame, pd.DataFrame]:
    """Processed objects + labels (object id -> (label, label_source)) -> (lightcurves, objects)."""
    if time_format not in TIME_FORMATS:
        raise ConfigError(f"config key 'source.time_format' must be one of {list(TIME_FORMATS)}, got {time_format!r}")
    systems = {meta["time_system"] for _, meta in processed.values()}
    if time_format == "native" and len(systems) > 1:
        raise ConfigError(f"objects come in several time systems {sorted(systems)}: set "
                          "'source.time_format' to 'bjd' or 'mjd' to put them on one axis")
    rows, objects = [], []
    for oid, (table, meta) in processed.items():
        if oid not in labels:
            raise SchemaError(f"lightkurve: object '{oid}': column 'label': no label from the label "
                              "table, the catalogue or 'source.labels.label'")
        t, system, offset = convert_time(table["time"].to_numpy(), meta["time_system"], meta["bjd_offset"],
                                         time_format)
        rows.append(pd.DataFrame({"object_id": oid, "time": t, "band": meta["band"],
                                  "flux": table["flux"].to_numpy(), "flux_err": table["flux_err"].to_numpy()}))
        label, label_source = labels[oid]
        record = {"object_id": oid, "label": label, "group_id": oid, "source": source,
                  "label_source": label_source,
                  **{k: v for k, v in meta.items() if k not in ("object_id", "band")},
                  "time_system": system, "bjd_offset": offset, "n_points": len(table)}
        for key, value in (extra or {}).get(oid, {}).items():
            if key == "ephemeris_t0" and value is not None and np.isfinite(value):
                # Catalogue epochs are in the mission's native system (koi_time0bk is BKJD).
                value = float(convert_time(np.array([value]), meta["time_system"], meta["bjd_offset"],
                                           time_format)[0][0])
            record[key] = value
        objects.append(record)
    lc = pd.concat(rows, ignore_index=True) if rows else pd.DataFrame(
        columns=["object_id", "time", "band", "flux", "flux_err"])
    obj = pd.DataFrame(objects)
    return lc, obj.sort_values("object_id", kind="mergesort").reset_index(drop=True) if len(obj) else obj


# --------------------------------------------------------------------------- cache format


def _write_processed(path: Path, payload: tuple[pd.DataFrame, dict]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table, meta = payload
    arrow = pa.Table.from_pandas(table, preserve_index=False)
    arrow = arrow.replace_schema_metadata({**(arrow.schema.metadata or {}),
                                           b"deeprubin": json.dumps(meta, default=str).encode()})
    pq.write_table(arrow, path)


def _read_processed(path: Path) -> tuple[pd.DataFrame, dict]:
    import pyarrow.parquet as pq

    arrow = pq.read_table(path)
    meta = json.loads(arrow.schema.metadata[b"deeprubin"])
    return arrow.to_pandas(), meta


# --------------------------------------------------------------------------- loader


def _src(cfg: DictConfig, key: str, default: Any = None) -> Any:
    value = OmegaConf.select(cfg, f"source.{key}", default=default)
    return OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value


def _catalog_targets(cat_cfg: dict, mission: str | None, seed: int) -> tuple[list[str], dict, dict]:
    """Catalogue -> targets, object id -> ephemeris metadata, object id -> catalogue name."""
    path = Path(cat_cfg["path"])
    if not path.exists():
        raise ConfigError(f"config key 'source.catalog.path': file {path} does not exist")
    id_col = cat_cfg.get("id_column", "kepid")
    prefix = cat_cfg.get("id_prefix", "KIC")
    cols = {k: cat_cfg.get(f"{k}_column") for k in ("period", "t0", "duration", "name")}
    df = read_koi_catalog(path, {"source.catalog.id_column": id_col,
                                 **{f"source.catalog.{k}_column": c for k, c in cols.items()}},
                          where="config key 'source.catalog.path'")
    if cols["period"]:
        df = df.sort_values([id_col, cols["period"]], kind="mergesort")
    n_planets = df.groupby(id_col).size()
    first = df.drop_duplicates(id_col, keep="first")
    n = cat_cfg.get("max_targets")
    if n is not None and len(first) > int(n):
        if cat_cfg.get("sample", "first") == "random":
            first = first.sample(n=int(n), random_state=seed).sort_values(id_col)
        else:
            first = first.head(int(n))
    targets, extra = [], {}
    for _, row in first.iterrows():
        oid, _ = normalise_target(f"{prefix} {int(row[id_col])}", mission)
        targets.append(oid)
        extra[oid] = {
            "ephemeris_period": float(row[cols["period"]]) if cols["period"] else None,
            "ephemeris_t0": float(row[cols["t0"]]) if cols["t0"] else None,
            "ephemeris_duration": float(row[cols["duration"]]) if cols["duration"] else None,
            "catalog_name": str(row[cols["name"]]) if cols["name"] and pd.notna(row[cols["name"]]) else None,
            "n_planets": int(n_planets.loc[row[id_col]]),
        }
    return targets, extra, {o: path.name for o in targets}


def _set_mast_timeout(seconds: float) -> None:
    """astroquery's MAST requests (search and download) use ``astroquery.mast.conf.timeout``."""
    try:
        from astroquery.mast import conf
    except ImportError:   # pragma: no cover - astroquery comes with lightkurve
        return
    conf.timeout = int(seconds)


def make_fetch_one(search_kwargs: dict, download_root: Path, quality_bitmask, flux_column: str,
                   keep_downloads: bool = True) -> Callable[[str, Fetcher], tuple[pd.DataFrame, dict]]:
    """Per-object MAST download: search, download_all into a per-object folder, process."""

    def fetch_one(oid: str, fetcher: Fetcher):
        import lightkurve as lk

        mission = PREFIX_MISSION[oid.split()[0]]
        kwargs = {"mission": MISSION_NAMES[mission], **search_kwargs}
        result = fetcher.request(lk.search_lightcurve, oid, **kwargs)
        if result is None or len(result) == 0:
            raise EmptyResult(f"empty: MAST search found no light curve for {oid} ({kwargs})")
        folder = download_root / safe_name(oid)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                collection = fetcher.request(result.download_all, quality_bitmask=quality_bitmask,
                                             download_dir=str(folder), flux_column=flux_column)
        except FetchError as exc:
            if "corrupt" in exc.reason or "Not recognized" in exc.reason:
                # A truncated file from an interrupted download: drop it so a retry downloads it again.
                shutil.rmtree(folder, ignore_errors=True)
                raise FetchError(f"corrupt_download: {exc.reason}", retryable=False) from exc
            raise
        if collection is None or len(collection) == 0:
            raise EmptyResult(f"empty: nothing downloaded for {oid}")
        segments = [lc for lc in collection if hasattr(lc, "flux")]
        try:
            payload = process_segments(segments, oid)
        except SchemaError as exc:
            raise FetchError(f"invalid_payload: {exc}", retryable=False) from exc
        if not keep_downloads:
            shutil.rmtree(folder, ignore_errors=True)
        return payload

    return fetch_one


def load_lightkurve(cfg: DictConfig, *, sleep: Callable[[float], None] | None = None,
                    rng: random.Random | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``source=lightkurve`` loader: (lightcurves, objects); see the module docstring."""
    mission = _src(cfg, "mission")
    mission = str(mission).lower() if mission else None
    if mission and mission not in MISSIONS:
        raise ConfigError(f"config key 'source.mission' must be one of {list(MISSION_NAMES.values())} "
                          f"or null, got {mission!r}")
    flux_column = _src(cfg, "flux_column", "pdcsap_flux")
    quality_bitmask = _src(cfg, "quality_bitmask", "default")
    time_format = _src(cfg, "time_format", "native")
    labels_cfg = dict(_src(cfg, "labels", {}) or {})
    cat_cfg = dict(_src(cfg, "catalog", {}) or {})
    local_cfg = dict(_src(cfg, "local", {}) or {})

    extra: dict[str, dict] = {}
    catalog_of: dict[str, str] = {}
    processed: dict[str, tuple[pd.DataFrame, dict]] = {}
    if local_cfg.get("paths"):
        segments_by_object: dict[str, list] = {}
        for lc in read_local(local_cfg["paths"], quality_bitmask=quality_bitmask, flux_column=flux_column,
                             pattern=local_cfg.get("pattern") or "*.fits"):
            oid = object_id_of(lc, lc.meta.get("FILENAME", "?"))
            if mission and _meta_mission(lc.meta, oid) != mission:
                continue
            segments_by_object.setdefault(oid, []).append(lc)
        for oid, segs in segments_by_object.items():
            processed[oid] = process_segments(segs, oid)
        if cat_cfg.get("path"):
            _, extra, catalog_of = _catalog_targets({**cat_cfg, "max_targets": None}, None, int(cfg.data_seed))
    else:
        if _src(cfg, "targets"):
            targets = list(dict.fromkeys(normalise_target(t, mission)[0] for t in _src(cfg, "targets")))
        elif cat_cfg.get("path"):
            targets, extra, catalog_of = _catalog_targets(cat_cfg, mission, int(cfg.data_seed))
        else:
            raise ConfigError("source 'lightkurve': set one of 'source.targets', 'source.catalog.path' "
                              "or 'source.local.paths'")
        search = {k: v for k, v in dict(_src(cfg, "search", {}) or {}).items() if v is not None}
        fetch_cfg = dict(_src(cfg, "fetch", {}) or {})
        try:
            policy = FetchPolicy.from_config(fetch_cfg, other_keys=("cache_dir", "refresh", "keep_downloads"))
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"config key 'source.fetch': {exc}") from exc
        root = Path(fetch_cfg.get("cache_dir") or Path(cfg.paths.get("cache", "data/cache")) / "lightkurve")
        _set_mast_timeout(policy.timeout)
        product = {"search": search, "flux_column": flux_column, "quality_bitmask": quality_bitmask,
                   "mission": mission}
        key = hashlib.sha256(json.dumps(product, sort_keys=True, default=str).encode()).hexdigest()[:10]
        fetcher = Fetcher(root / f"products-{key}", policy, client="lightkurve",
                          packages=("lightkurve", "astroquery", "astropy"), suffix=".parquet",
                          write=_write_processed, read=_read_processed,
                          sleep=_time.sleep if sleep is None else sleep,
                          rng=random.Random() if rng is None else rng)
        result = fetcher.fetch_all(
            targets, make_fetch_one(search, root / "mast", quality_bitmask, flux_column,
                                    bool(fetch_cfg.get("keep_downloads", True))),
            query={"service": "MAST via lightkurve.search_lightcurve", "targets": targets, **product},
            desc="lightkurve", refresh=bool(fetch_cfg.get("refresh")))
        processed = {oid: result.payloads[oid] for oid in targets if oid in result.payloads}
        if not processed:
            raise ValueError(f"source 'lightkurve': no target could be fetched; failures in "
                             f"{fetcher.root / 'failures.json'}")

    labels: dict[str, tuple[str, str]] = {}
    if labels_cfg.get("label"):
        labels.update({oid: (str(labels_cfg["label"]), "config") for oid in processed})
    if catalog_of:
        cat_label = cat_cfg.get("label")
        if cat_label:
            labels.update({oid: (str(cat_label), f"catalog:{catalog_of[oid]}") for oid in processed
                           if oid in catalog_of})
        extra = {oid: v for oid, v in extra.items() if oid in processed}
    if labels_cfg.get("table"):
        from .alerce import load_label_table  # same table format as the ALeRCE source

        table = load_label_table(labels_cfg["table"], labels_cfg.get("id_column"), labels_cfg.get("label_column"))
        mapping = dict(labels_cfg.get("map") or {})
        for raw_id, label in zip(table["object_id"], table["label"]):
            try:
                oid = normalise_target(raw_id, mission)[0]
            except ConfigError:
                oid = str(raw_id)
            if oid in processed:
                labels[oid] = (mapping.get(str(label), str(label)), "user_table")
    return to_canonical(processed, labels, time_format=time_format, extra=extra)


__all__ = ["LightCurveFileError", "MISSIONS", "convert_time", "load_lightkurve", "make_fetch_one",
           "normalise_target", "object_id_of", "process_segments", "read_local", "to_canonical"]
