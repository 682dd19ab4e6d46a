"""The alert stream: packets (Rubin sample packets, ZTF layout), the simulated stream, the SQLite
state store, the replay transport, the classifier loop (exactly once, dead letters) and its
agreement with the predict path."""
from __future__ import annotations

import json
import math
import sqlite3
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import make_tables
from deeprubin.core.config import ConfigError
from deeprubin.stream import packets as P
from deeprubin.stream.classifier import Classifier, StreamSettings, run_stream
from deeprubin.stream.simulate import iter_ztf_packets, write_stream
from deeprubin.stream.state import StateStore, StoreMismatchError
from deeprubin.stream.transports import Message, ReplayTransport


# ----------------------------------------------------------------------------------- packets
def test_rubin_sample_packets_round_trip_and_convert():
    """The packets lsst-alert-packet ships read, re-encode byte-exactly (Confluent framing and
    Avro files) and become observations in microjansky."""
    path = P.rubin_sample_packets()
    packets = list(P.read_avro_file(path))
    assert packets
    schema = P.rubin_schema()
    for packet in packets:
        body = P.encode_message(packet, "rubin")
        assert body[0] == 0 and int.from_bytes(body[1:5], "big") == schema.get_schema_id()
        assert P.decode_message(body, "rubin", "test") == packet
        alert = P.rubin_alert(packet, "sample")
        src = packet["diaSource"]
        assert alert.alert_id == str(packet["diaSourceId"])
        assert alert.time == src["midpointMjdTai"]
        new = [o for o in alert.observations if o.time == alert.time]
        assert new and new[0].detected and new[0].band == src["band"]
        assert new[0].flux == pytest.approx(src["psfFlux"] / 1000.0)   # nJy -> microjansky
        assert new[0].flux_err == pytest.approx(src["psfFluxErr"] / 1000.0)


def test_rubin_avro_file_round_trip(tmp_path):
    packets = list(P.read_avro_file(P.rubin_sample_packets()))
    out = P.write_avro_file(tmp_path / "rubin.avro", packets * 3, "rubin")
    assert list(P.read_avro_file(out)) == packets * 3


def _obs(n=6, band_cycle=("g", "r"), detected_from=2):
    return [P.Observation(100 + i, 59000.0 + 2 * i, band_cycle[i % len(band_cycle)], 40.0 * (i + 1), 4.0,
                          i >= detected_from) for i in range(n)]


def test_ztf_packet_round_trip_and_photometry():
    obs = _obs()
    packet = P.ztf_packet("ZTF26aaaaaaa", 1234, obs[-1], obs[:-1], ra=10.5, dec=-3.25)
    decoded = P.decode_message(P.encode_message(packet, "ztf"), "ztf", "test")
    alert = P.ztf_alert(decoded)
    assert (alert.alert_id, alert.object_id, alert.survey) == ("1234", "ZTF26aaaaaaa", "ztf")
    assert (alert.ra, alert.dec) == (10.5, -3.25)
    assert alert.time == pytest.approx(obs[-1].time)
    assert [o.epoch for o in alert.observations] == [o.epoch for o in obs]
    for got, want in zip(alert.observations, obs):
        assert got.band == want.band and got.detected == want.detected
        assert got.flux == pytest.approx(want.flux, rel=1e-6)     # via fp_hists (DN at magzpsci)
        assert got.flux_err == pytest.approx(want.flux_err, rel=1e-6)
    # upper limits carry no magnitude, detections do
    prv = decoded["prv_candidates"]
    assert [p["magpsf"] is None for p in prv] == [not o.detected for o in obs[:-1]]


def test_ztf_alert_without_forced_photometry_uses_detections_and_skips_nulls():
    obs = _obs()
    packet = P.ztf_packet("Z1", 9, obs[-1], obs[:-1])
    packet["fp_hists"][0]["forcediffimflux"] = P.ZTF_FP_NULL   # ZTF's "no measurement"
    alert = P.ztf_alert(packet)
    assert obs[0].epoch not in [o.epoch for o in alert.observations]   # non-detection, no forced flux
    packet["fp_hists"] = None
    alert = P.ztf_alert(packet)
    assert [o.epoch for o in alert.observations] == [o.epoch for o in obs if o.detected]
    assert all(o.detected for o in alert.observations)
    assert alert.observations[-1].flux == pytest.approx(obs[-1].flux, rel=1e-6)   # from magpsf


def test_negative_difference_flux():
    obs = [P.Observation(1, 59000.0, "g", -50.0, 5.0, True)]
    alert = P.ztf_alert(P.ztf_packet("Z", 1, obs[0], []))
    assert alert.observations[0].flux == pytest.approx(-50.0, rel=1e-6)


def test_merge_keeps_forced_flux_and_detection_flag():
    det = [P.Observation(7, 1.0, "g", 100.0, 5.0, True)]
    forced = [P.Observation(7, 1.0, "g", 98.0, 4.0, False), P.Observation(6, 0.5, "g", 3.0, 4.0, False)]
    merged = P.merge_observations(det, forced)
    assert [(o.epoch, o.flux, o.detected) for o in merged] == [(6, 3.0, False), (7, 98.0, True)]


@pytest.mark.parametrize("mutate, field", [
    (lambda p: p.pop("candidate"), "candidate"),
    (lambda p: p["candidate"].update(fid=7), "fid"),
    (lambda p: p["candidate"].update(isdiffpos="x"), "isdiffpos"),
    (lambda p: p["candidate"].update(magpsf=None), "magpsf"),
    (lambda p: p.pop("objectId"), "objectId"),
])
def test_malformed_ztf_packets_name_the_field(mutate, field):
    obs = _obs()
    packet = P.ztf_packet("Z", 5, obs[-1], obs[:-1])
    mutate(packet)
    with pytest.raises(P.PacketError, match=field) as err:
        P.ztf_alert(packet, "night.avro#3")
    assert "night.avro#3" in str(err.value)


def test_malformed_rubin_packets():
    packet = list(P.read_avro_file(P.rubin_sample_packets()))[0]
    bad = dict(packet, diaObject=None, diaSource=dict(packet["diaSource"], diaObjectId=None))
    with pytest.raises(P.PacketError, match="no object id"):
        P.rubin_alert(bad, "topic@1")
    bad = dict(packet, diaSource=dict(packet["diaSource"], psfFlux=None))
    with pytest.raises(P.PacketError, match="psfFlux"):
        P.rubin_alert(bad, "topic@2")


def test_undecodable_messages():
    with pytest.raises(P.PacketError, match="empty"):
        P.decode_message(b"", "ztf", "m1")
    with pytest.raises(P.PacketError, match="m2: undecodable Avro"):
        P.decode_message(b"not avro at all", "ztf", "m2")
    with pytest.raises(P.PacketError, match="Confluent wire format"):
        P.decode_message(b"\x01\x00\x00\x04\x4d", "rubin", "m3")
    body = P.encode_message(list(P.read_avro_file(P.rubin_sample_packets()))[0], "rubin")
    with pytest.raises(P.PacketError, match="schema id"):
        P.decode_message(body[:1] + (7).to_bytes(4, "big") + body[5:], "rubin", "m4")
    with pytest.raises(P.PacketError, match="unknown survey"):
        P.parse_alert({}, "lsst", "m5")


def test_unknown_rubin_schema_version():
    with pytest.raises(P.PacketError, match="not shipped"):
        P.rubin_schema_dir("2.9")
    with pytest.raises(P.PacketError, match="look like"):
        P.rubin_schema_dir("eleven")


def test_unreadable_avro_file(tmp_path):
    bad = tmp_path / "bad.avro"
    bad.write_bytes(b"Obj\x01 truncated")
    with pytest.raises(P.PacketError, match="bad.avro"):
        list(P.read_avro_file(bad))


# -------------------------------------------------------------------------- simulated stream
def _stream_tables(n_objects=4):
    lc, objects = make_tables(n_objects=n_objects, n_per_band=10)
    lc["detected"] = lc["flux"] / lc["flux_err"] >= 5
    return lc, objects


def test_simulated_stream_is_one_packet_per_detection_in_time_order(tmp_path):
    lc, objects = _stream_tables()
    written = write_stream(lc, objects, tmp_path / "alerts", history_days=20.0, packets_per_file=7)
    packets = [p for f in written.files for p in P.read_avro_file(f)]
    assert len(packets) == written.n_alerts == int(lc["detected"].sum())
    assert len(written.files) == math.ceil(len(packets) / 7)
    times = [p["candidate"]["jd"] for p in packets]
    assert times == sorted(times)
    assert len({p["candid"] for p in packets}) == len(packets)
    for p in packets:
        jd = p["candidate"]["jd"]
        hist = [h["jd"] for h in p["prv_candidates"] or []]
        assert all(jd - 20.0 <= t < jd for t in hist)
    truth = pd.read_csv(written.truth)
    assert sorted(truth["object_id"]) == sorted(objects["object_id"])
    # same table, same packets
    again = list(iter_ztf_packets(lc, objects, history_days=20.0))
    assert [p["candid"] for p in again] == [p["candid"] for p in packets]


def test_simulated_stream_refuses_bands_ztf_lacks(tmp_path):
    lc, objects = make_tables(bands=("g", "y"))
    with pytest.raises(P.PacketError, match="'y'"):
        write_stream(lc, objects, tmp_path / "alerts")


# ------------------------------------------------------------------------------ state store
def _alert(object_id, alert_id, obs):
    return P.Alert(alert_id, object_id, "ztf", obs[-1].time, tuple(obs))


def test_state_store_survives_restart_and_is_idempotent(tmp_path):
    path = tmp_path / "state.sqlite"
    obs = _obs()
    with StateStore(path) as store:
        store.bind_model("v1", ["A", "B"])
        with store.batch():
            store.add_observations([_alert("o1", "a1", obs[:4])])
            store.set_position("replay", "f.avro#3")
        with store.batch():   # the same epochs again (history of a later packet), plus two new ones
            store.add_observations([_alert("o1", "a2", obs)])
    with StateStore(path) as store:   # reopened: everything is there, once
        store.bind_model("v1", ["A", "B"])
        assert store.position("replay") == "f.avro#3"
        lc = store.light_curves([("k", "o1", obs[3].time)])
        assert lc["time"].tolist() == [o.time for o in obs[:4]]
        assert store.counts()["observations"] == len(obs)
        with pytest.raises(StoreMismatchError, match="model_version"):
            store.bind_model("v2", ["A", "B"])


def test_state_store_rolls_back_a_failed_batch(tmp_path):
    with StateStore(tmp_path / "s.sqlite") as store:
        with pytest.raises(RuntimeError):
            with store.batch():
                store.add_observations([_alert("o1", "a1", _obs())])
                store.set_position("replay", "x#1")
                raise RuntimeError("killed mid-batch")
        assert store.counts()["observations"] == 0 and store.position("replay") is None


def test_state_store_refuses_a_foreign_file(tmp_path):
    bad = tmp_path / "state.sqlite"
    bad.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(ValueError, match="state.sqlite"):
        StateStore(bad)
    with pytest.raises(ValueError, match="durability"):
        StateStore(tmp_path / "ok.sqlite", durability="sometimes")


# ---------------------------------------------------------------------------------- replay
def test_replay_resumes_after_the_stored_position(tmp_path):
    lc, objects = _stream_tables()
    written = write_stream(lc, objects, tmp_path / "alerts", packets_per_file=5)
    everything = ReplayTransport(tmp_path / "alerts").poll(10_000)
    assert len(everything) == written.n_alerts
    cut = everything[7].token
    rest = ReplayTransport(tmp_path / "alerts", start_after=cut).poll(10_000)
    assert [m.where for m in rest] == [m.where for m in everything[8:]]
    with pytest.raises(FileNotFoundError, match="does not exist"):
        ReplayTransport(tmp_path / "nowhere")
    with pytest.raises(ValueError, match="position"):
        ReplayTransport(tmp_path / "alerts", start_after="no-index")


def test_replay_turns_an_unreadable_file_into_a_dead_letter(tmp_path):
    lc, objects = _stream_tables()
    write_stream(lc, objects, tmp_path / "alerts", packets_per_file=10_000)
    (tmp_path / "alerts" / "alerts_00001.avro").write_bytes(b"garbage")
    messages = ReplayTransport(tmp_path / "alerts").poll(10_000)
    assert messages[-1].error and "alerts_00001.avro" in messages[-1].error
    assert all(m.error is None for m in messages[:-1])


# ----------------------------------------------------------------------- classifier loop
class FakePredictor:
    """Deterministic 'model': probabilities from the number of points and the mean flux.

    Stands in for the network so the loop's bookkeeping is tested in milliseconds; the real
    predict path is tested below (test_stream_matches_the_predict_path)."""

    classes = ["A", "B"]
    bands = ["g", "r"]
    calibration = "none"

    def __init__(self, fail_on_call=None):
        self.calls = 0
        self.fail_on_call = fail_on_call

    def probabilities(self, lightcurves):
        self.calls += 1
        if self.fail_on_call == self.calls:
            raise KeyboardInterrupt("simulated kill")
        ids = sorted(lightcurves["object_id"].unique(), key=str)
        g = lightcurves.groupby("object_id")
        n = g.size().reindex(ids).to_numpy(float)
        m = g["flux"].mean().reindex(ids).to_numpy(float)
        a = 1.0 / (1.0 + np.exp(-(m / 50.0 - n / 10.0)))
        grid = type("Grid", (), {"object_ids": np.array(ids)})()
        return grid, np.column_stack([a, 1 - a])


def _settings(**kw):
    return StreamSettings(**{"batch_size": 8, "idle_stop_s": 0.0, "progress_every_s": 1e9, **kw})


def _run(alerts_dir, state, predictor, **kw):
    with StateStore(state) as store:
        transport = ReplayTransport(alerts_dir, start_after=store.position("replay"))
        summary = run_stream(transport, store, Classifier(predictor, "v1"), _settings(**kw))
        return summary, store.classifications()


def test_stream_classifies_every_alert_once(tmp_path):
    lc, objects = _stream_tables()
    written = write_stream(lc, objects, tmp_path / "alerts", packets_per_file=6)
    summary, table = _run(tmp_path / "alerts", tmp_path / "s.sqlite", FakePredictor())
    assert summary.classified == written.n_alerts == len(table) == table["alert_id"].nunique()
    assert summary.dead_letters == 0
    np.testing.assert_allclose(table[["prob_A", "prob_B"]].sum(axis=1), 1.0)
    # each alert was classified on the object's photometry up to its own time
    first = table.sort_values("time").groupby("object_id").first()
    last = table.sort_values("time").groupby("object_id").last()
    assert (first["n_points"] < last["n_points"]).all()


def test_stream_killed_mid_batch_then_restarted_gives_the_uninterrupted_output(tmp_path):
    lc, objects = _stream_tables()
    write_stream(lc, objects, tmp_path / "alerts", packets_per_file=5)
    _, reference = _run(tmp_path / "alerts", tmp_path / "ref.sqlite", FakePredictor())
    with pytest.raises(KeyboardInterrupt):
        _run(tmp_path / "alerts", tmp_path / "s.sqlite", FakePredictor(fail_on_call=3))
    with StateStore(tmp_path / "s.sqlite") as store:
        partial = store.counts()["classifications"]
    assert 0 < partial < len(reference)   # two batches committed, the third rolled back
    _, table = _run(tmp_path / "alerts", tmp_path / "s.sqlite", FakePredictor())
    cols = ["alert_id", "object_id", "time", "n_points", "predicted", "prob_A", "prob_B"]
    pd.testing.assert_frame_equal(table[cols].reset_index(drop=True), reference[cols].reset_index(drop=True))


def test_stream_sends_malformed_packets_to_dead_letters_and_goes_on(tmp_path):
    lc, objects = _stream_tables()
    written = write_stream(lc, objects, tmp_path / "alerts", packets_per_file=10_000)
    good = list(P.read_avro_file(written.files[0]))
    broken = dict(good[3], candidate=dict(good[3]["candidate"], fid=9))
    P.write_avro_file(written.files[0], good[:3] + [broken] + good[4:], "ztf")
    dead_file = tmp_path / "dead.jsonl"
    with StateStore(tmp_path / "s.sqlite") as store:
        transport = ReplayTransport(tmp_path / "alerts")
        summary = run_stream(transport, store, Classifier(FakePredictor(), "v1"),
                             _settings(dead_letter=dead_file))
        assert summary.dead_letters == 1 and summary.classified == len(good) - 1
        assert store.dead_letters()["reason"].str.contains("fid").all()
    lines = [json.loads(x) for x in dead_file.read_text().splitlines()]
    assert len(lines) == 1 and lines[0]["where"].endswith("#3") and "fid" in lines[0]["reason"]


def test_stream_drops_bands_the_model_lacks(tmp_path):
    obs = _obs(band_cycle=("g", "r", "i"))
    i_new = P.ztf_packet("Z1", 11, obs[-1], obs[:-1])             # the new source is in i
    g_new = P.ztf_packet("Z1", 21, obs[-2], obs[:-2])             # the new source is in r
    P.write_avro_file(tmp_path / "a.avro", [g_new, i_new], "ztf")
    with StateStore(tmp_path / "s.sqlite") as store:
        summary = run_stream(ReplayTransport(tmp_path / "a.avro"), store, Classifier(FakePredictor(), "v1"),
                             _settings())
        assert summary.classified == 1 and summary.dead_letters == 1
        assert "band 'i'" in store.dead_letters()["reason"].iloc[0]
        lc = store.light_curves([("k", "Z1", 1e9)])
        assert set(lc["band"]) == {"g", "r"}


def test_stream_skips_redelivered_alerts(tmp_path):
    obs = _obs()
    packet = P.ztf_packet("Z1", 11, obs[-1], obs[:-1])
    P.write_avro_file(tmp_path / "a.avro", [packet, packet, packet], "ztf")
    with StateStore(tmp_path / "s.sqlite") as store:
        summary = run_stream(ReplayTransport(tmp_path / "a.avro"), store, Classifier(FakePredictor(), "v1"),
                             _settings(batch_size=2))
        assert summary.classified == 1 and summary.duplicates == 2
        assert store.counts()["classifications"] == 1


def test_stream_config_errors(base_cfg, tmp_path):
    from omegaconf import OmegaConf

    from deeprubin.stream import service

    node = OmegaConf.create(OmegaConf.to_container(base_cfg.stream))
    for key, value, match in [("survey", "lsst", "stream.survey"), ("transport", "carrier-pigeon", "stream.transport"),
                              ("batch_size", 0, "stream.batch_size"), ("max_alerts", -1, "stream.max_alerts"),
                              ("idle_stop_s", -2, "stream.idle_stop_s")]:
        bad = node.copy()
        bad[key] = value
        with pytest.raises(ConfigError, match=match):
            service.settings_from(bad) if key != "transport" else service.open_transport(bad, None)
    bad = node.copy()
    bad.output.kind = "pigeon"
    with pytest.raises(ConfigError, match="stream.output.kind"):
        service.open_output(bad)
    bad = node.copy()
    bad.checkpoint = str(tmp_path / "none.ckpt")
    with pytest.raises(FileNotFoundError, match="none.ckpt"):
        service.load_classifier(bad, "ztf")


def test_message_errors_are_dead_letters_not_crashes(tmp_path):
    class OneShot:
        name = "fake"

        def __init__(self):
            self.sent = False
            self.committed = []

        def poll(self, n, timeout_s=0):
            if self.sent:
                return []
            self.sent = True
            return [Message("broker#1", body=b"\x00garbage"), Message("broker#2", error="entry has no field")]

        def position(self, messages):
            return None

        def commit(self, messages):
            self.committed += [m.where for m in messages]

        def lag(self):
            return 0

    transport = OneShot()
    with StateStore(tmp_path / "s.sqlite") as store:
        summary = run_stream(transport, store, Classifier(FakePredictor(), "v1"), _settings())
        assert summary.dead_letters == 2 and summary.classified == 0
    assert transport.committed == ["broker#1", "broker#2"]   # acknowledged: never redelivered forever


# ----------------------------------------------------------------- the real predict path
def test_stream_matches_the_predict_path(tiny_pipeline, tmp_path):
    """Each alert's stored classification equals the predict path (Predictor) on the object's raw
    light curve cut at the alert's time, classified alone: the stream adds bookkeeping, not
    another model, and an alert's result does not depend on the alerts polled with it."""
    from omegaconf import OmegaConf

    from deeprubin.core import io
    from deeprubin.stream.service import load_classifier

    cfg, _ = tiny_pipeline
    raw = Path(cfg.paths.raw)
    lc = io.read_parquet(raw / "lightcurves.parquet")
    objects = io.read_parquet(raw / "objects.parquet")
    ids = objects["object_id"].astype(str).tolist()[:3]
    lc, objects = lc[lc["object_id"].isin(ids)], objects[objects["object_id"].isin(ids)]
    write_stream(lc, objects, tmp_path / "alerts", history_days=1000.0)   # every packet: the whole history
    node = OmegaConf.create({"checkpoint": str(Path(cfg.paths.models) / "model.ckpt"), "calibration": "auto"})
    classifier = load_classifier(node, "ztf")
    with StateStore(tmp_path / "s.sqlite") as store:
        summary = run_stream(ReplayTransport(tmp_path / "alerts"), store, classifier,
                             _settings(batch_size=8, max_alerts=16))
        table = store.classifications()
    assert summary.classified == len(table) == 16
    classes = classifier.classes
    for r in table.itertuples():
        cut = lc[(lc["object_id"] == r.object_id) & (lc["time"] <= r.time + 1e-9)].assign(object_id=r.alert_id)
        assert len(cut) == r.n_points
        _, p = classifier.predictor.probabilities(cut)
        got = np.array([getattr(r, f"prob_{c}") for c in classes])
        np.testing.assert_allclose(got, p[0], atol=1e-5)   # fluxes travel as Avro float32


# ------------------------------------------------------------------------ Kafka, offline
class _KafkaMsg:
    def __init__(self, topic, partition, offset, value=None, error=None):
        self._t, self._p, self._o, self._v, self._e = topic, partition, offset, value, error

    def topic(self):
        return self._t

    def partition(self):
        return self._p

    def offset(self):
        return self._o

    def value(self):
        return self._v

    def error(self):
        return self._e


class FakeConsumer:
    """confluent_kafka.Consumer at its boundary: consume / commit / subscribe / close."""

    instances: list = []

    def __init__(self, conf):
        self.conf = conf
        self.queue: list = []
        self.commits = 0
        self.committed_after: list[int] = []
        self.store_path = None
        FakeConsumer.instances.append(self)

    def subscribe(self, topics):
        self.topics = topics

    def consume(self, num_messages=1, timeout=-1):
        out, self.queue = self.queue[:num_messages], self.queue[num_messages:]
        return out

    def commit(self, asynchronous=True):
        assert asynchronous is False
        self.commits += 1
        if self.store_path is not None:   # results are in the store before the offsets are committed
            with sqlite3.connect(self.store_path) as db:
                self.committed_after.append(db.execute("SELECT COUNT(*) FROM classifications").fetchone()[0])

    def close(self):
        pass


def test_kafka_transport_commits_offsets_after_the_results(tmp_path):
    from confluent_kafka import KafkaError

    from deeprubin.stream.transports import KafkaTransport

    FakeConsumer.instances.clear()
    transport = KafkaTransport({"bootstrap.servers": "broker:9092", "group.id": "g", "enable.auto.commit": True},
                               ["ztf_alerts"], consumer_factory=FakeConsumer)
    consumer = FakeConsumer.instances[0]
    assert consumer.conf["enable.auto.commit"] is False and consumer.conf["auto.offset.reset"] == "earliest"
    assert consumer.topics == ["ztf_alerts"]
    obs = _obs()
    bodies = [P.encode_message(P.ztf_packet("Z1", 10 + k, obs[k], obs[:k]), "ztf") for k in range(2, 6)]
    consumer.queue = [_KafkaMsg("ztf_alerts", 0, k, body) for k, body in enumerate(bodies)]
    consumer.queue.insert(2, _KafkaMsg("ztf_alerts", 0, -1, error=KafkaError(KafkaError._PARTITION_EOF)))
    consumer.queue.append(_KafkaMsg("ztf_alerts", 0, 9, b"\x00junk"))
    consumer.store_path = tmp_path / "s.sqlite"
    with StateStore(tmp_path / "s.sqlite") as store:
        summary = run_stream(transport, store, Classifier(FakePredictor(), "v1"), _settings(batch_size=2))
        assert summary.classified == 4 and summary.dead_letters == 1
        assert "kafka ztf_alerts[0]@9" in store.dead_letters()["location"].iloc[0]
    assert consumer.commits == summary.batches == 3
    assert consumer.committed_after == [2, 3, 4]   # the partition-EOF event is not a message


def test_kafka_transport_config_and_fatal_errors():
    from confluent_kafka import KafkaError

    from deeprubin.stream.transports import KafkaTransport

    with pytest.raises(ValueError, match="bootstrap.servers"):
        KafkaTransport({"group.id": "g"}, ["t"], consumer_factory=FakeConsumer)
    with pytest.raises(ValueError, match="topic"):
        KafkaTransport({"bootstrap.servers": "b", "group.id": "g"}, [], consumer_factory=FakeConsumer)
    FakeConsumer.instances.clear()
    transport = KafkaTransport({"bootstrap.servers": "b", "group.id": "g"}, ["t"], consumer_factory=FakeConsumer)
    FakeConsumer.instances[0].queue = [_KafkaMsg("t", 1, 5, error=KafkaError(KafkaError._FATAL, "fenced",
                                                                              fatal=True))]
    with pytest.raises(RuntimeError, match=r"kafka t\[1\]@5: fatal"):
        transport.poll(10)


def test_kafka_output_publishes_one_json_message_per_result():
    from deeprubin.stream.classifier import result_record
    from deeprubin.stream.state import Classification
    from deeprubin.stream.transports import KafkaOutput

    sent = []

    class FakeProducer:
        def __init__(self, conf):
            self.conf = conf

        def produce(self, topic, key=None, value=None):
            sent.append((topic, key, json.loads(value)))

        def flush(self, timeout=None):
            return 0

    out = KafkaOutput({"bootstrap.servers": "b"}, "results", producer_factory=FakeProducer)
    r = Classification("a1", "o1", 59000.5, 7, "B", (0.25, 0.75), None, "v1")
    out.send([result_record(r, ["A", "B"])])
    assert sent == [("results", b"o1", {"alert_id": "a1", "object_id": "o1", "time_mjd": 59000.5, "n_points": 7,
                                        "predicted": "B", "probabilities": {"A": 0.25, "B": 0.75},
                                        "anomaly_score": None, "model_version": "v1"})]


@pytest.mark.network
def test_kafka_live_broker(tmp_path):
    """Against a live Kafka broker named by DEEPRUBIN_KAFKA_BOOTSTRAP (skipped by default: -m network)."""
    import os
    import uuid

    from confluent_kafka import Producer

    from deeprubin.stream.transports import KafkaTransport

    bootstrap = os.environ.get("DEEPRUBIN_KAFKA_BOOTSTRAP")
    if not bootstrap:
        pytest.skip("set DEEPRUBIN_KAFKA_BOOTSTRAP=host:port to run against a live broker")
    topic = f"deeprubin-test-{uuid.uuid4().hex[:8]}"
    obs = _obs()
    producer = Producer({"bootstrap.servers": bootstrap})
    for k in range(2, 6):
        producer.produce(topic, P.encode_message(P.ztf_packet("Z1", 10 + k, obs[k], obs[:k]), "ztf"))
    producer.flush(30)
    transport = KafkaTransport({"bootstrap.servers": bootstrap, "group.id": topic}, [topic])
    with StateStore(tmp_path / "s.sqlite") as store:
        summary = run_stream(transport, store, Classifier(FakePredictor(), "v1"),
                             _settings(poll_timeout_s=5.0, idle_stop_s=10.0))
    transport.close()
    assert summary.classified == 4
