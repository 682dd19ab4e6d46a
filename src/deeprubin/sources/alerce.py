"""``source=alerce``: ZTF light curves from the ALeRCE broker, through the ``alerce`` client.

Selection (``source.selection``)
    * by class: for each ALeRCE class name in ``selection.classes``, page through ``Alerce.query_objects(survey="ztf", classifier=...,
      class_name=..., probability=...)`` until ``n_per_class`` objects (or a larger
      ``pool_per_class``, from which ``n_per_class`` are drawn with ``cfg.seed``) are collected;
    * or an explicit list of ZTF object ids (``object_ids`` or ``object_ids_file``).
    The selection is cached (``selection.json`` in the cache folder, keyed by the query) so a
    resumed run fetches the same objects.

Photometry
    ``query_detections`` and ``query_non_detections`` per object (JSON, the API's own layout),
    cached one file per object by :class:`deeprubin.sources.fetch.Fetcher` (retries, backoff,
    rate limit, failure registry, resumable, manifest). Converted by
    :func:`deeprubin.sources.ztf_alerts.alerts_to_canonical` (difference/corrected magnitudes,
    ``isdiffpos`` sign, fid -> band); bands outside ``task.band_wavelengths`` are dropped.

Labels
    ``labels.table`` (a user CSV/parquet with object id + label, e.g. spectroscopic classes)
    wins; objects missing from it are dropped. Otherwise the broker class from the selection is
    used, mapped to task classes by ``selection.class_map``. ``objects.label_source`` says which
    (``user_table`` | ``broker:<classifier>``).

The HTTP client is ``alerce.core.Alerce``; its ZTF requests go through
``client.legacy_ztf_client.session`` (a ``requests.Session``), which gets a default timeout.
"""
from __future__ import annotations

import hashlib
import json
import logging
import random
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd
from omegaconf import DictConfig, OmegaConf

from ..core import io
from ..core.config import ConfigError
from ..core.schema import SchemaError
from .fetch import EmptyResult, Fetcher, FetchError, FetchPolicy, session_with_timeout
from .ztf_alerts import ID_COLUMNS, LABEL_COLUMNS, ZTF_FID_BANDS, alerts_to_canonical

log = logging.getLogger(__name__)

SELECTION_NAME = "selection.json"


# --------------------------------------------------------------------------- client


def make_client(api_url: str | None = None, timeout: float = 30.0):
    """An ``alerce.core.Alerce`` client whose ZTF session has a default request timeout."""
    from alerce.core import Alerce

    client = Alerce()
    ztf = client.legacy_ztf_client
    if api_url:
        ztf.config["ZTF_API_URL"] = str(api_url).rstrip("/")
    session_with_timeout(ztf.session, timeout)
    return client


# --------------------------------------------------------------------------- config helpers


def _plain(node: Any) -> Any:
    if isinstance(node, DictConfig) or OmegaConf.is_config(node):
        return OmegaConf.to_container(node, resolve=True)
    return node


def _src(cfg: DictConfig, key: str, default: Any = None) -> Any:
    value = OmegaConf.select(cfg, f"source.{key}", default=default)
    return _plain(value)


def _read_table(path: str | Path, what: str) -> pd.DataFrame:
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"config key '{what}': file {path} does not exist")
    if path.suffix == ".parquet":
        return pd.read_parquet(path)
    if path.suffix in (".txt", ".lst"):
        ids = [line.strip() for line in path.read_text().splitlines() if line.strip() and not line.startswith("#")]
        return pd.DataFrame({"object_id": ids})
    return pd.read_csv(path)


def _pick(df: pd.DataFrame, wanted: str | None, candidates, what: str, path) -> str:
    if wanted:
        if wanted not in df.columns:
            raise SchemaError(f"{path}: missing column '{wanted}' (config '{what}'); found {list(df.columns)}")
        return wanted
    for col in candidates:
        if col in df.columns:
            return col
    raise SchemaError(f"{path}: no column among {list(candidates)} (set config '{what}'); "
                      f"found {list(df.columns)}")


def load_label_table(path: str | Path, id_column: str | None = None, label_column: str | None = None
                     ) -> pd.DataFrame:
    """User label table -> DataFrame(object_id, label)."""
    df = _read_table(path, "source.labels.table")
    id_col = _pick(df, id_column, ID_COLUMNS, "source.labels.id_column", path)
    label_col = _pick(df, label_column, LABEL_COLUMNS, "source.labels.label_column", path)
    out = pd.DataFrame({"object_id": df[id_col].astype(str).str.strip(), "label": df[label_col]})
    return out


# --------------------------------------------------------------------------- selection


def _query_key(query: dict) -> str:
    return hashlib.sha256(json.dumps(query, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _check_page(page: Any, what: str) -> list[dict]:
    if not isinstance(page, dict) or not isinstance(page.get("items"), list):
        raise FetchError(f"malformed_response: {what}: expected a JSON object with an 'items' list, "
                         f"got {type(page).__name__}", retryable=False)
    return page["items"]


def select_by_class(client, fetcher: Fetcher, sel: dict, seed: int) -> pd.DataFrame:
    """Balanced selection: ``n_per_class`` objects per ALeRCE class (paginated ``query_objects``)."""
    rng = np.random.default_rng(seed)
    n = int(sel["n_per_class"])
    pool = int(sel.get("pool_per_class") or n)
    page_size = int(sel.get("page_size", 100))
    frames = []
    for alerce_class in sel["classes"]:
        params = {"classifier": sel["classifier"], "class_name": alerce_class,
                  "probability": sel.get("probability"), "page_size": page_size,
                  "order_by": sel.get("order_by"), "order_mode": sel.get("order_mode")}
        if sel.get("ndet"):
            params["ndet"] = list(sel["ndet"])
        params = {k: v for k, v in params.items() if v is not None}
        items: list[dict] = []
        for page in range(1, int(sel.get("max_pages", 100)) + 1):
            answer = fetcher.request(client.query_objects, survey="ztf", format="json", page=page, **params)
            got = _check_page(answer, f"query_objects class '{alerce_class}' page {page}")
            items.extend(got)
            if not got or len(items) >= pool or answer.get("has_next") is False:
                break
        df = pd.DataFrame(items)
        if df.empty:
            log.warning("alerce: no objects of class '%s' (classifier %s, probability >= %s)",
                        alerce_class, sel["classifier"], sel.get("probability"))
            continue
        df = df.drop_duplicates("oid").head(pool)
        if len(df) > n:
            df = df.iloc[np.sort(rng.choice(len(df), size=n, replace=False))]
        if len(df) < n:
            log.warning("alerce: class '%s' has only %d objects (asked %d)", alerce_class, len(df), n)
        df = df.assign(**{"class": df.get("class", alerce_class), "classifier": df.get("classifier", sel["classifier"])})
        frames.append(df)
    if not frames:
        raise FetchError("empty: the class query returned no objects", retryable=False)
    out = pd.concat(frames, ignore_index=True).drop_duplicates("oid", keep="first")
    return out.reset_index(drop=True)


def select_by_ids(client, fetcher: Fetcher, ids: list[str], classifier: str, need_classes: bool,
                  chunk: int = 100) -> pd.DataFrame:
    """Explicit ids; when no user labels are given, their broker classes via ``query_objects(oid=[...])``."""
    if not need_classes:
        return pd.DataFrame({"oid": ids})
    items: list[dict] = []
    for start in range(0, len(ids), chunk):
        part = ids[start:start + chunk]
        answer = fetcher.request(client.query_objects, survey="ztf", format="json", oid=part,
                                 classifier=classifier, page_size=len(part), page=1)
        items.extend(_check_page(answer, f"query_objects oid[{start}:{start + len(part)}]"))
    found = pd.DataFrame(items)
    if found.empty:
        found = pd.DataFrame(columns=["oid", "class", "classifier"])
    found = found.drop_duplicates("oid")
    missing = sorted(set(ids) - set(found["oid"].astype(str)))
    if missing:
        log.warning("alerce: %d requested object(s) have no '%s' class and are skipped, e.g. %s",
                    len(missing), classifier, missing[:5])
    order = {o: i for i, o in enumerate(ids)}
    found = found[found["oid"].astype(str).isin(order)]
    return found.sort_values("oid", key=lambda s: s.map(order)).reset_index(drop=True)


def _cached_selection(path: Path, query: dict, refresh: bool, make: Callable[[], pd.DataFrame]) -> pd.DataFrame:
    key = _query_key(query)
    if path.exists() and not refresh:
        stored = io.read_json(path)
        if stored.get("key") == key:
            return pd.DataFrame(stored["objects"])
    df = make()
    io.write_json({"key": key, "query": query, "objects": json.loads(df.to_json(orient="records"))}, path)
    return df


# --------------------------------------------------------------------------- per-object fetch


def _as_list(payload: Any, what: str) -> list[dict]:
    if not isinstance(payload, list) or not all(isinstance(r, dict) for r in payload):
        raise FetchError(f"malformed_response: {what}: expected a JSON list of rows, got "
                         f"{type(payload).__name__}", retryable=False)
    return payload


def make_fetch_one(client, with_non_detections: bool = True) -> Callable[[str, Fetcher], dict]:
    """The per-object download: detections (+ non-detections), checked and returned as one payload."""

    def fetch_one(oid: str, fetcher: Fetcher) -> dict:
        det = _as_list(fetcher.request(client.query_detections, oid, survey="ztf", format="json"),
                       f"detections of {oid}")
        if not det:
            raise EmptyResult("empty: no detections")
        nondet: list[dict] = []
        if with_non_detections:
            nondet = _as_list(fetcher.request(client.query_non_detections, oid, survey="ztf", format="json"),
                              f"non-detections of {oid}")
        # A payload that cannot be converted is a failure of this object, not of the whole run.
        try:
            alerts_to_canonical(_frame(oid, det), _frame(oid, nondet) if nondet else None,
                                pd.DataFrame({"object_id": [oid], "label": ["?"]}), table=f"alerce object {oid}")
        except SchemaError as exc:
            raise FetchError(f"invalid_payload: {exc}", retryable=False) from exc
        return {"oid": oid, "detections": det, "non_detections": nondet}

    return fetch_one


def _frame(oid: str, rows: list[dict]) -> pd.DataFrame:
    df = pd.DataFrame(rows)
    df["oid"] = oid
    return df


# --------------------------------------------------------------------------- loader


def _selection_config(cfg: DictConfig, check_classes: bool = True) -> dict:
    sel = dict(_src(cfg, "selection", {}) or {})
    classes = sel.get("classes") or []
    if isinstance(classes, (str, dict)):
        raise ConfigError("config key 'source.selection.classes' must be a list of ALeRCE class names "
                          f"(map them to task classes with 'source.selection.class_map'), got {classes!r}")
    class_map = dict(sel.get("class_map") or {})
    sel["classes"] = list(classes)
    task_classes = list(cfg.task.classes)
    for alerce_name in sel["classes"] if check_classes else []:
        task_name = class_map.get(alerce_name, alerce_name)
        if task_name not in task_classes:
            raise ConfigError(f"config key 'source.selection.classes': ALeRCE class '{alerce_name}' maps to "
                              f"'{task_name}', which is not in task.classes {task_classes}; add it to "
                              "'source.selection.class_map'")
    sel["class_map"] = {c: class_map.get(c, c) for c in set(sel["classes"]) | set(class_map)}
    return sel


def load_alerce(cfg: DictConfig, *, client=None, sleep: Callable[[float], None] | None = None,
                rng: random.Random | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``source=alerce`` loader: (lightcurves, objects) in the canonical schema.

    ``client``/``sleep``/``rng`` are injection points for tests (default: a real
    ``alerce.core.Alerce`` client, ``time.sleep``, an unseeded jitter RNG).
    """
    import time

    explicit_ids = bool(_src(cfg, "selection.object_ids") or _src(cfg, "selection.object_ids_file"))
    sel = _selection_config(cfg, check_classes=not explicit_ids)
    labels_cfg = dict(_src(cfg, "labels", {}) or {})
    phot = dict(_src(cfg, "photometry", {}) or {})
    fetch_cfg = dict(_src(cfg, "fetch", {}) or {})
    try:
        policy = FetchPolicy.from_config(fetch_cfg, other_keys=("cache_dir", "refresh", "refresh_selection"))
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"config key 'source.fetch': {exc}") from exc
    cache_dir = fetch_cfg.get("cache_dir") or str(Path(cfg.paths.get("cache", "data/cache")) / "alerce")
    bands = list(cfg.task.band_wavelengths)
    task_classes = list(cfg.task.classes)
    client = client or make_client(_src(cfg, "api_url"), timeout=policy.timeout)
    fetcher = Fetcher(cache_dir, policy, client="alerce", packages=("alerce",),
                      sleep=time.sleep if sleep is None else sleep,
                      rng=random.Random() if rng is None else rng)

    user_labels = None
    if labels_cfg.get("table"):
        user_labels = load_label_table(labels_cfg["table"], labels_cfg.get("id_column"),
                                       labels_cfg.get("label_column"))

    # ---- selection (cached)
    ids = sel.get("object_ids")
    if sel.get("object_ids_file"):
        df = _read_table(sel["object_ids_file"], "source.selection.object_ids_file")
        ids = list(df[_pick(df, None, ID_COLUMNS, "source.selection.object_ids_file", sel["object_ids_file"])])
    if ids:
        ids = list(dict.fromkeys(str(i).strip() for i in ids))
        query = {"mode": "object_ids", "object_ids": ids, "classifier": sel.get("classifier"),
                 "with_broker_class": user_labels is None}
        selection = _cached_selection(
            Path(cache_dir) / SELECTION_NAME, query, bool(fetch_cfg.get("refresh_selection")),
            lambda: select_by_ids(client, fetcher, ids, sel.get("classifier"), user_labels is None))
    else:
        if not sel["classes"]:
            raise ConfigError("config key 'source.selection.classes' is empty and no "
                              "'source.selection.object_ids' given: nothing to select")
        for key in ("classifier", "n_per_class"):
            if sel.get(key) in (None, ""):
                raise ConfigError(f"config key 'source.selection.{key}' is missing")
        query = {"mode": "classes", **{k: sel.get(k) for k in (
            "classifier", "classes", "probability", "n_per_class", "pool_per_class", "page_size",
            "max_pages", "order_by", "order_mode", "ndet")}, "seed": int(cfg.data_seed)}
        selection = _cached_selection(
            Path(cache_dir) / SELECTION_NAME, query, bool(fetch_cfg.get("refresh_selection")),
            lambda: select_by_class(client, fetcher, sel, int(cfg.data_seed)))
    selection["oid"] = selection["oid"].astype(str)
    if user_labels is not None:
        known = set(user_labels["object_id"])
        unlabelled = [o for o in selection["oid"] if o not in known]
        if unlabelled:
            log.warning("alerce: %d selected object(s) are not in the label table %s and are skipped, e.g. %s",
                        len(unlabelled), labels_cfg["table"], unlabelled[:5])
        selection = selection[selection["oid"].isin(known)]
    if selection.empty:
        raise ValueError("source 'alerce': no objects selected (check the selection and label table)")

    # ---- photometry (cached per object)
    result = fetcher.fetch_all(
        list(selection["oid"]), make_fetch_one(client, bool(phot.get("non_detections", True))),
        query={"service": "ALeRCE ZTF API", "selection": query,
               "labels_table": labels_cfg.get("table")},
        desc="alerce", refresh=bool(fetch_cfg.get("refresh")))
    if not result.payloads:
        raise ValueError(f"source 'alerce': no object could be fetched; failures in "
                         f"{Path(cache_dir) / 'failures.json'}")

    # ---- conversion
    keep_fids = [fid for fid, band in ZTF_FID_BANDS.items() if band in bands]
    det_frames, nondet_frames = [], []
    for oid in selection["oid"]:
        payload = result.payloads.get(oid)
        if payload is None:
            continue
        det = _frame(oid, payload["detections"])
        det = det[~det["fid"].isin([f for f in ZTF_FID_BANDS if f not in keep_fids])]
        if det.empty:
            log.info("alerce: object '%s' has no detections in bands %s", oid, bands)
            continue
        det_frames.append(det)
        if payload.get("non_detections"):
            nondet_frames.append(_frame(oid, payload["non_detections"]))
    if not det_frames:
        raise ValueError(f"source 'alerce': no detections in bands {bands}")
    detections = pd.concat(det_frames, ignore_index=True)
    non_detections = pd.concat(nondet_frames, ignore_index=True) if nondet_frames else None
    if non_detections is not None:
        non_detections = non_detections[non_detections["fid"].isin(keep_fids)]

    if user_labels is not None:
        labels = user_labels[user_labels["object_id"].isin(set(detections["oid"]))]
        label_map = labels_cfg.get("map") or None
    else:
        broker = selection.set_index("oid")
        detections["class"] = detections["oid"].map(broker["class"])
        detections["classifier"] = detections["oid"].map(broker["classifier"]) \
            if "classifier" in broker else sel.get("classifier")
        labels = None
        label_map = sel["class_map"] or None
    lightcurves, objects = alerts_to_canonical(
        detections, non_detections, labels, source="alerce", table="source 'alerce'",
        magnitudes=phot.get("magnitudes", "auto"), label_map=label_map, min_rb=phot.get("min_rb"))

    unknown = ~objects["label"].isin(task_classes)
    if unknown.any():
        bad = objects.loc[unknown].iloc[0]
        if labels_cfg.get("on_unknown", "raise") == "drop":
            log.warning("alerce: dropping %d object(s) whose label is not in task.classes, e.g. '%s' (%s)",
                        int(unknown.sum()), bad["object_id"], bad["label"])
            objects = objects[~unknown]
            lightcurves = lightcurves[lightcurves["object_id"].isin(set(objects["object_id"]))]
        else:
            raise SchemaError(
                f"source 'alerce': object '{bad['object_id']}': column 'label' has value {bad['label']!r} "
                f"(from {bad['label_source']}) not in task.classes {task_classes}; map it with "
                f"'source.labels.map' / 'source.selection.classes' or set 'source.labels.on_unknown: drop'")
    if "probability" in selection.columns:
        objects = objects.merge(selection[["oid", "probability"]].rename(
            columns={"oid": "object_id", "probability": "broker_probability"}), on="object_id", how="left")
    return lightcurves.reset_index(drop=True), objects.reset_index(drop=True)


__all__ = ["load_alerce", "load_label_table", "make_client", "make_fetch_one", "select_by_class",
           "select_by_ids"]
