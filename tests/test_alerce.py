"""ALeRCE source: alert -> canonical conversion, and the loader against a mocked ALeRCE ZTF API.

HTTP is mocked at the boundary (``responses`` patches ``requests``' adapter), so the real
``alerce.core.Alerce`` client code builds the URLs, sends the requests and parses the JSON.
Payloads are the real rows of ``ztf_alerce_30sne`` (tests/fixtures/alerce/, see
make_fixtures.py there).
"""
from __future__ import annotations

import json
import random
import re
from collections import defaultdict
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import requests
import responses
from conftest import REAL_DATA

from deeprubin.core.schema import SchemaError, mag_to_flux, validate_tables
from deeprubin.sources.ztf_alerts import alerts_to_canonical, non_detections_to_limits

FIXTURES = Path(__file__).parent / "fixtures" / "alerce"
API = "https://api.alerce.online/ztf/v1/objects"
OIDS = ["ZTF18ablrzdz", "ZTF19abcqgew", "ZTF19abjswdz"]


@pytest.fixture
def sample():
    det = pd.read_csv(FIXTURES / "detections_sample.csv")
    nondet = pd.read_csv(FIXTURES / "non_detections_sample.csv")
    labels = pd.read_csv(FIXTURES / "labels_sample.csv")
    return det, nondet, labels


# ============================================================== alerts_to_canonical


def test_sample_csv_converts_with_user_labels_and_validates(sample):
    det, nondet, labels = sample
    lc, obj = alerts_to_canonical(det, nondet, labels, table="detections_sample.csv")
    assert set(lc.columns) >= {"object_id", "time", "band", "flux", "flux_err", "mag", "mag_err", "detected"}
    assert lc["detected"].all()
    assert set(obj["object_id"]) == set(OIDS)
    assert (obj["label_source"] == "user_table").all()
    assert (obj["group_id"] == obj["object_id"]).all()
    assert obj.set_index("object_id").loc["ZTF19abcqgew", "label"] == "SNIbc"
    # One exposure of ZTF19abjswdz appears twice in the alert stream: kept once (highest rb).
    row = obj.set_index("object_id").loc["ZTF19abjswdz"]
    assert row["n_duplicates_dropped"] == 1
    assert len(lc) == len(det) - 1
    out_lc, out_obj, report = validate_tables(lc, obj, bands=["g", "r"], classes=["SNIa", "SNIbc"],
                                              min_points=3)
    assert report.n_objects_out == 3


def test_auto_uses_corrected_only_for_fully_corrected_objects(sample):
    det, nondet, labels = sample
    lc, obj = alerts_to_canonical(det, nondet, labels)
    kinds = obj.set_index("object_id")["flux_kind"]
    assert kinds["ZTF18ablrzdz"] == "corrected"      # every detection has magpsf_corr
    assert kinds["ZTF19abjswdz"] == "difference"     # none has
    d = det[det["objectId"] == "ZTF18ablrzdz"].sort_values("mjd")
    got = lc[lc["object_id"] == "ZTF18ablrzdz"].sort_values("time")
    flux, err = mag_to_flux(d["magpsf_corr"].to_numpy(), d["sigmapsf_corr_ext"].to_numpy())
    np.testing.assert_allclose(got["flux"], flux)
    np.testing.assert_allclose(got["flux_err"], err)
    # sigmapsf_corr_ext propagates the difference-image error: flux_err == difference-flux error.
    _, diff_err = mag_to_flux(d["magpsf"].to_numpy(), d["sigmapsf"].to_numpy())
    np.testing.assert_allclose(got["flux_err"], diff_err, rtol=2e-3)


def test_difference_mode_signs_flux_by_isdiffpos(sample):
    det, nondet, labels = sample
    lc, _ = alerts_to_canonical(det, nondet, labels, magnitudes="difference")
    neg = det[(det["objectId"] == "ZTF19abcqgew") & (det["isdiffpos"] < 0)].iloc[0]
    row = lc[(lc["object_id"] == "ZTF19abcqgew") & np.isclose(lc["time"], neg["mjd"])].iloc[0]
    assert row["flux"] == pytest.approx(-mag_to_flux(neg["magpsf"]))
    assert row["flux_err"] > 0
    assert np.isnan(row["mag"])                       # no magnitude for a negative flux
    assert (lc["flux"] < 0).sum() == 1


@pytest.mark.parametrize("pos, neg", [("t", "f"), (1, -1), (1.0, -1.0), ("1", "0"), (True, False)])
def test_isdiffpos_spellings(pos, neg):
    det = pd.DataFrame({"objectId": "ZTFx", "fid": [1, 2], "mjd": [59000.0, 59001.0], "magpsf": [18.0, 18.0],
                        "sigmapsf": [0.1, 0.1], "isdiffpos": [pos, neg], "class": "SNIa"})
    lc, obj = alerts_to_canonical(det)
    assert np.sign(lc.sort_values("time")["flux"]).tolist() == [1.0, -1.0]
    assert lc["flux"].abs().iloc[0] == pytest.approx(10 ** (-0.4 * (18.0 - 23.9)))
    assert sorted(lc["band"]) == ["g", "r"]


def test_corrected_mode_mixes_and_reports_it():
    det = pd.DataFrame({"oid": "ZTFm", "fid": [1, 1, 1], "mjd": [1.0, 2.0, 3.0], "magpsf": [19.0] * 3,
                        "sigmapsf": [0.1] * 3, "isdiffpos": [1, 1, 1], "magpsf_corr": [17.0, np.nan, 17.1],
                        "sigmapsf_corr": [0.05, np.nan, 100.0], "sigmapsf_corr_ext": [0.04, np.nan, 0.04],
                        "class": "QSO"})
    _, auto = alerts_to_canonical(det)
    assert auto.loc[0, "flux_kind"] == "difference"
    lc, corr = alerts_to_canonical(det, magnitudes="corrected")
    assert corr.loc[0, "flux_kind"] == "mixed"
    np.testing.assert_allclose(lc["flux"], mag_to_flux(np.array([17.0, 19.0, 17.1])))


def test_jd_is_converted_to_mjd():
    det = pd.DataFrame({"objectId": "ZTFj", "fid": [1], "jd": [2459000.5], "magpsf": [18.0], "sigmapsf": [0.1],
                        "isdiffpos": ["t"], "class": "SNIa"})
    lc, _ = alerts_to_canonical(det)
    assert lc["time"].iloc[0] == pytest.approx(59000.0)


def _good():
    return pd.DataFrame({"objectId": ["ZTFa", "ZTFb"], "fid": [1, 2], "mjd": [1.0, 2.0], "magpsf": [18.0, 18.5],
                         "sigmapsf": [0.1, 0.1], "isdiffpos": ["t", "t"], "class": ["SNIa", "SNII"]})


@pytest.mark.parametrize("mutate, column, obj", [
    (lambda d: d.drop(columns="magpsf"), "magpsf", None),
    (lambda d: d.drop(columns="fid"), "fid", None),
    (lambda d: d.drop(columns="isdiffpos"), "isdiffpos", None),
    (lambda d: d.drop(columns="mjd"), "mjd", None),
    (lambda d: d.drop(columns="objectId"), "object id", None),
    (lambda d: d.assign(fid=[1, 4]), "fid", "ZTFb"),
    (lambda d: d.assign(magpsf=[18.0, "abc"]), "magpsf", "ZTFb"),
    (lambda d: d.assign(magpsf=[np.nan, 18.0]), "magpsf", "ZTFa"),
    (lambda d: d.assign(sigmapsf=[0.1, "x"]), "sigmapsf", "ZTFb"),
    (lambda d: d.assign(isdiffpos=["t", "maybe"]), "isdiffpos", "ZTFb"),
    (lambda d: d.drop(columns="class"), "label", None),
])
def test_bad_input_raises_naming_table_column_object(mutate, column, obj):
    with pytest.raises(SchemaError) as info:
        alerts_to_canonical(mutate(_good()), table="my_alerts.csv")
    msg = str(info.value)
    assert "my_alerts.csv" in msg and column in msg
    if obj:
        assert f"'{obj}'" in msg


def test_labels_table_must_cover_every_object():
    with pytest.raises(SchemaError, match="ZTFb"):
        alerts_to_canonical(_good(), labels=pd.DataFrame({"objectId": ["ZTFa"], "label": ["SNIa"]}))


def test_broker_labels_record_classifier():
    det = _good().assign(classifier="lc_classifier")
    _, obj = alerts_to_canonical(det, label_map={"SNII": "SNII", "SNIa": "SNIa"})
    assert obj["label_source"].tolist() == ["broker:lc_classifier"] * 2
    assert obj["label"].tolist() == ["SNIa", "SNII"]


def test_non_detections_stay_out_of_flux_rows(sample):
    det, nondet, labels = sample
    lc, obj = alerts_to_canonical(det, nondet, labels)
    lc_without, _ = alerts_to_canonical(det, None, labels)
    pd.testing.assert_frame_equal(lc, lc_without)
    row = obj.set_index("object_id").loc["ZTF18ablrzdz"]
    nd = nondet[nondet["objectId"] == "ZTF18ablrzdz"]
    assert row["n_non_detections"] == len(nd)
    first = det.loc[det["objectId"] == "ZTF18ablrzdz", "mjd"].min()
    before = nd[nd["jd"] - 2400000.5 < first].sort_values("jd")
    assert row["last_nondet_diffmaglim"] == pytest.approx(before["diffmaglim"].iloc[-1])
    limits = non_detections_to_limits(nondet)
    assert len(limits) == len(nondet) and (limits["flux_limit"] > 0).all()


@pytest.mark.skipif(not (REAL_DATA / "ztf_alerce_30sne").is_dir(), reason="shared real data absent")
def test_real_30sne_csvs_convert_and_validate():
    real = REAL_DATA / "ztf_alerce_30sne"
    det = pd.read_csv(real / "detections_corr.csv")
    lc, obj = alerts_to_canonical(det, pd.read_csv(real / "non_detections.csv"),
                                  pd.read_csv(real / "labels.csv"), table=str(real / "detections_corr.csv"))
    out_lc, out_obj, report = validate_tables(lc, obj, bands=["g", "r"],
                                              classes=["SNIa", "SNII", "SNIbc", "SLSN"], min_points=3)
    assert report.n_objects_out == 30
    assert set(out_lc["band"]) == {"g", "r"}
    assert out_obj["label"].value_counts().to_dict() == {"SNIa": 19, "SNIbc": 8, "SLSN": 2, "SNII": 1}
    assert np.isfinite(out_lc["flux"]).all() and (out_lc["flux_err"] > 0).all()


# ============================================================== the loader, mocked HTTP


class FakeAlerceAPI:
    """The ALeRCE ZTF API endpoints the client uses, served from the fixture payloads.

    ``faults[(kind, oid)]`` is a list consumed one per request: "timeout", "conn", 500, 503,
    (429, retry_after), "malformed", "empty", 404, "interrupt"; None = serve normally.
    """

    def __init__(self, rsps: responses.RequestsMock):
        self.data = json.loads((FIXTURES / "api_payloads.json").read_text())
        self.faults: dict[tuple[str, str], list] = defaultdict(list)
        self.calls: list[tuple[str, str]] = []
        rsps.add_callback(responses.GET, re.compile(re.escape(API) + r"/(\w+)/(detections|non_detections)$"),
                          callback=self._object)
        rsps.add_callback(responses.GET, re.compile(re.escape(API) + r"(\?.*)?$"), callback=self._objects)

    def _fault(self, key, ok):
        fault = self.faults[key].pop(0) if self.faults[key] else None
        if fault is None:
            return ok()
        if fault == "timeout":
            raise requests.exceptions.ReadTimeout("read timed out")
        if fault == "conn":
            raise requests.exceptions.ConnectionError("connection reset")
        if fault == "interrupt":
            raise KeyboardInterrupt
        if fault == "malformed":
            return 200, {"Content-Type": "application/json"}, '{"detections": [ {"mjd": 5'
        if fault == "empty":
            return 200, {"Content-Type": "application/json"}, "[]"
        if isinstance(fault, tuple):
            status, retry_after = fault
            return status, {"Retry-After": str(retry_after)}, json.dumps({"detail": "Too many requests"})
        return fault, {}, json.dumps({"detail": f"HTTP {fault}"})

    def _object(self, request):
        oid, kind = re.search(r"/objects/(\w+)/(detections|non_detections)$", request.path_url).groups()
        self.calls.append((kind, oid))

        def ok():
            if oid not in self.data[kind]:
                return 404, {}, json.dumps({"detail": "Object not found"})
            return 200, {"Content-Type": "application/json"}, json.dumps(self.data[kind][oid])
        return self._fault((kind, oid), ok)

    def _objects(self, request):
        params = request.params
        self.calls.append(("objects", params.get("class", "oid")))

        def ok():
            if "oid" in params:
                wanted = params["oid"] if isinstance(params["oid"], list) else [params["oid"]]
                items = [self.data["objects"][o] for o in wanted if o in self.data["objects"]]
                return 200, {}, json.dumps({"total": None, "page": 1, "next": None, "has_next": False,
                                            "prev": None, "has_prev": False, "items": items})
            items = [o for o in self.data["objects"].values() if o["class"] == params.get("class")]
            items.sort(key=lambda o: o["oid"])
            page, size = int(params.get("page", 1)), int(params.get("page_size", 10))
            chunk = items[(page - 1) * size: page * size]
            has_next = page * size < len(items)
            return 200, {}, json.dumps({"total": None, "page": page, "next": page + 1 if has_next else None,
                                        "has_next": has_next, "prev": page - 1 or None, "has_prev": page > 1,
                                        "items": chunk})
        return self._fault(("objects", params.get("class", "oid")), ok)

    def n(self, kind, oid=None):
        return sum(1 for k, o in self.calls if k == kind and (oid is None or o == oid))


@pytest.fixture
def api():
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        yield FakeAlerceAPI(rsps)


class Sleeps(list):
    def __call__(self, seconds):
        self.append(seconds)


def alerce_cfg(tmp_path, *extra):
    from deeprubin.core.config import compose_task

    return compose_task("transients", [
        "source=alerce", f"paths.raw={tmp_path}", f"paths.cache={tmp_path}/cache", "task.classes=[SNIa,SNII,SNIbc,QSO,Cepheid,RRLyrae]",
        "source.selection.classes=[SNIa,SNIbc]", "source.selection.n_per_class=2",
        "source.selection.page_size=1", "source.fetch.progress=false",
        "source.fetch.requests_per_second=null", "source.fetch.max_retries=3", *extra])


def load(cfg, sleeps=None):
    from deeprubin.sources.alerce import load_alerce

    return load_alerce(cfg, sleep=sleeps if sleeps is not None else Sleeps(), rng=random.Random(0))


def manifest(tmp_path):
    return json.loads((tmp_path / "cache" / "alerce" / "fetch_manifest.json").read_text())


def failures(tmp_path):
    path = tmp_path / "cache" / "alerce" / "failures.json"
    return json.loads(path.read_text()) if path.exists() else {}


def test_class_query_paginates_fetches_and_caches(api, tmp_path):
    cfg = alerce_cfg(tmp_path)
    lc, obj = load(cfg)
    assert api.n("objects", "SNIa") == 2          # page_size=1, two SNIa objects: two pages
    assert api.n("objects", "SNIbc") == 1
    assert sorted(obj["object_id"]) == OIDS
    assert set(obj["label_source"]) == {"broker:lc_classifier"}
    assert obj.set_index("object_id")["label"].to_dict() == {
        "ZTF18ablrzdz": "SNIa", "ZTF19abcqgew": "SNIbc", "ZTF19abjswdz": "SNIa"}
    validate_tables(lc, obj, bands=["g", "r"], classes=list(cfg.task.classes))
    m = manifest(tmp_path)
    assert m["status"] == "complete" and m["counts"]["fetched"] == 3 and m["counts"]["failed"] == 0
    assert m["versions"]["alerce"] and m["query"]["selection"]["mode"] == "classes"
    assert len(list((tmp_path / "cache" / "alerce" / "objects").glob("*.json"))) == 3
    # A rerun reads the cached selection and photometry: no request at all.
    before = len(api.calls)
    lc2, obj2 = load(cfg)
    assert len(api.calls) == before
    pd.testing.assert_frame_equal(lc, lc2)
    assert manifest(tmp_path)["counts"]["cached"] == 3


def test_explicit_ids_with_user_label_table(api, tmp_path):
    cfg = alerce_cfg(tmp_path, f"source.selection.object_ids=[{','.join(OIDS)}]",
                     f"source.labels.table={FIXTURES / 'labels_sample.csv'}")
    lc, obj = load(cfg)
    assert api.n("objects") == 0                   # labels from the user table: no class query
    assert set(obj["label_source"]) == {"user_table"}
    assert sorted(obj["object_id"]) == OIDS


def test_explicit_ids_take_broker_class_from_query_objects(api, tmp_path):
    cfg = alerce_cfg(tmp_path, "source.selection.object_ids=[ZTF18ablrzdz,ZTF19abcqgew]")
    _, obj = load(cfg)
    assert api.n("objects") == 1
    assert obj.set_index("object_id")["label"].to_dict() == {"ZTF18ablrzdz": "SNIa", "ZTF19abcqgew": "SNIbc"}


def test_unknown_broker_label_raises_or_drops(api, tmp_path):
    api.data["objects"]["ZTF19abcqgew"]["class"] = "SLSN"
    cfg = alerce_cfg(tmp_path, "source.selection.object_ids=[ZTF18ablrzdz,ZTF19abcqgew]")
    with pytest.raises(SchemaError, match="ZTF19abcqgew.*SLSN"):
        load(cfg)
    _, obj = load(alerce_cfg(tmp_path, "source.selection.object_ids=[ZTF18ablrzdz,ZTF19abcqgew]",
                             "source.labels.on_unknown=drop"))
    assert obj["object_id"].tolist() == ["ZTF18ablrzdz"]


# ---------------------------------------------------------------- fault injection


def test_fault_timeout_then_success_is_retried(api, tmp_path):
    api.faults[("detections", "ZTF18ablrzdz")] = ["timeout", "conn"]
    sleeps = Sleeps()
    _, obj = load(alerce_cfg(tmp_path), sleeps)
    assert "ZTF18ablrzdz" in set(obj["object_id"])
    assert api.n("detections", "ZTF18ablrzdz") == 3
    assert len(sleeps) == 2 and sleeps[1] > sleeps[0] * 0.9 / 1.5   # exponential, jittered
    assert manifest(tmp_path)["counts"]["retries"] == 2


def test_fault_http_500_then_success_is_retried(api, tmp_path):
    api.faults[("non_detections", "ZTF19abcqgew")] = [500, 502]
    _, obj = load(alerce_cfg(tmp_path))
    assert len(obj) == 3 and api.n("non_detections", "ZTF19abcqgew") == 3
    assert failures(tmp_path) == {}


def test_fault_429_honours_retry_after(api, tmp_path):
    api.faults[("objects", "SNIbc")] = [(429, 7)]
    sleeps = Sleeps()
    _, obj = load(alerce_cfg(tmp_path), sleeps)
    assert len(obj) == 3
    assert max(sleeps) >= 7.0                       # waited at least what the server asked


def test_fault_persistent_503_gives_up_and_records(api, tmp_path):
    api.faults[("detections", "ZTF19abjswdz")] = [503] * 10
    _, obj = load(alerce_cfg(tmp_path))
    assert "ZTF19abjswdz" not in set(obj["object_id"])
    assert api.n("detections", "ZTF19abjswdz") == 4       # 1 + max_retries=3
    reason = failures(tmp_path)["ZTF19abjswdz"]["reason"]
    assert reason.startswith("http_503") and "gave up after 4 attempts" in reason


def test_fault_malformed_json_recorded_not_refetched_unless_asked(api, tmp_path):
    api.faults[("detections", "ZTF19abcqgew")] = ["malformed"] * 4
    _, obj = load(alerce_cfg(tmp_path))
    assert "ZTF19abcqgew" not in set(obj["object_id"]) and len(obj) == 2
    assert failures(tmp_path)["ZTF19abcqgew"]["reason"].startswith("malformed_response")
    assert not (tmp_path / "cache" / "alerce" / "objects" / "ZTF19abcqgew.json").exists()
    n = api.n("detections", "ZTF19abcqgew")
    _, obj = load(alerce_cfg(tmp_path))                  # rerun: the failure is remembered
    assert api.n("detections", "ZTF19abcqgew") == n and len(obj) == 2
    assert manifest(tmp_path)["counts"]["skipped_failed"] == 1
    _, obj = load(alerce_cfg(tmp_path, "source.fetch.refetch_failed=true"))   # asked: refetched
    assert len(obj) == 3 and failures(tmp_path) == {}


def test_fault_empty_result_recorded(api, tmp_path):
    api.faults[("detections", "ZTF18ablrzdz")] = ["empty"]
    _, obj = load(alerce_cfg(tmp_path))
    assert "ZTF18ablrzdz" not in set(obj["object_id"])
    assert failures(tmp_path)["ZTF18ablrzdz"]["reason"].startswith("empty")
    assert api.n("detections", "ZTF18ablrzdz") == 1      # empty is permanent: no retry


def test_fault_empty_class_query(api, tmp_path):
    api.data["objects"] = {k: v for k, v in api.data["objects"].items() if v["class"] != "SNIbc"}
    _, obj = load(alerce_cfg(tmp_path))
    assert set(obj["label"]) == {"SNIa"}


def test_fault_object_disappears_mid_run(api, tmp_path):
    # Listed by query_objects, then 404 on its detections ...
    del api.data["detections"]["ZTF19abjswdz"]
    # ... and another whose detections come back but whose non-detections are gone by the next call.
    api.faults[("non_detections", "ZTF18ablrzdz")] = [404]
    _, obj = load(alerce_cfg(tmp_path))
    assert obj["object_id"].tolist() == ["ZTF19abcqgew"]
    f = failures(tmp_path)
    assert f["ZTF19abjswdz"]["reason"].startswith("not_found")
    assert f["ZTF18ablrzdz"]["reason"].startswith("not_found")
    assert api.n("detections", "ZTF19abjswdz") == 1       # 404 is permanent: no retry
    cache = tmp_path / "cache" / "alerce" / "objects"
    assert sorted(p.name for p in cache.iterdir()) == ["ZTF19abcqgew.json"]   # no half object


def test_fault_cached_object_gone_from_service_is_served_from_cache(api, tmp_path):
    load(alerce_cfg(tmp_path))
    api.data["detections"].clear()                       # the service lost everything
    _, obj = load(alerce_cfg(tmp_path))
    assert len(obj) == 3


def test_fault_kill_and_resume_fetches_only_missing(api, tmp_path):
    # Selection order: ZTF18ablrzdz, ZTF19abjswdz (SNIa), ZTF19abcqgew (SNIbc); killed on the 2nd.
    api.faults[("detections", "ZTF19abjswdz")] = ["interrupt"]
    with pytest.raises(KeyboardInterrupt):
        load(alerce_cfg(tmp_path))
    m = manifest(tmp_path)
    assert m["status"] == "interrupted" and m["counts"]["fetched"] == 1
    cache = tmp_path / "cache" / "alerce" / "objects"
    assert sorted(p.name for p in cache.iterdir()) == ["ZTF18ablrzdz.json"]   # no temp leftovers
    assert failures(tmp_path) == {}                      # an interrupt is not a failure
    api.calls.clear()
    _, obj = load(alerce_cfg(tmp_path))
    assert len(obj) == 3
    assert api.n("objects") == 0                         # selection resumed from selection.json
    assert api.n("detections", "ZTF18ablrzdz") == 0      # already complete: not refetched
    assert api.n("detections", "ZTF19abcqgew") == 1 and api.n("detections", "ZTF19abjswdz") == 1
    assert manifest(tmp_path)["counts"] == {**manifest(tmp_path)["counts"], "fetched": 2, "cached": 1}


def test_invalid_payload_is_a_per_object_failure(api, tmp_path):
    for row in api.data["detections"]["ZTF19abjswdz"]:
        row["fid"] = 7
    _, obj = load(alerce_cfg(tmp_path))
    assert len(obj) == 2
    assert failures(tmp_path)["ZTF19abjswdz"]["reason"].startswith("invalid_payload")


def test_rate_limit_spaces_requests(api, tmp_path):
    sleeps = Sleeps()
    load(alerce_cfg(tmp_path, "source.fetch.requests_per_second=1000"), sleeps)
    # 3 class pages + 3 x (detections + non-detections) = 9 requests; the limiter only ever
    # waits less than one interval.
    assert len(api.calls) == 9
    assert all(s <= 1e-3 + 1e-9 for s in sleeps)


def test_fetch_config_typo_is_an_error(api, tmp_path):
    from deeprubin.core.config import ConfigError

    with pytest.raises(ConfigError, match="max_retry"):
        load(alerce_cfg(tmp_path, "+source.fetch.max_retry=3"))


def test_ingest_stage_runs_the_registered_alerce_loader(api, tmp_path):
    from deeprubin.stages.ingest import run_ingest

    report = run_ingest(alerce_cfg(tmp_path, "source.validation.on_invalid=raise",
                                   "source.validation.min_points=3"))
    assert report["source"] == "alerce" and report["n_objects"] == 3
    assert report["objects_per_label"] == {"SNIa": 2, "SNIbc": 1}
    assert (tmp_path / "lightcurves.parquet").exists() and (tmp_path / "cache" / "alerce" / "fetch_manifest.json").exists()


@pytest.mark.network
def test_live_alerce_detections():
    from deeprubin.sources.alerce import make_client

    client = make_client(timeout=30)
    det = client.query_detections("ZTF18ablrzdz", survey="ztf", format="json")
    lc, obj = alerts_to_canonical(pd.DataFrame(det).assign(oid="ZTF18ablrzdz"),
                                  labels=pd.DataFrame({"oid": ["ZTF18ablrzdz"], "label": ["SNIa"]}))
    assert len(lc) >= 5 and set(lc["band"]) <= {"g", "r", "i"}
