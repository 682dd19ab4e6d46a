"""The stream classifier against a real local broker: a redis-server started on a loopback port
(Debian's redis-server package, installed by `make setup`), consumed by the real entry point
(`python -m deeprubin.stream`) in a subprocess that is SIGKILLed mid-batch and restarted."""
from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import free_port, tiny_env
from deeprubin.core import io
from deeprubin.stream.packets import encode_message
from deeprubin.stream.simulate import iter_ztf_packets
from deeprubin.stream.state import StateStore

pytestmark = pytest.mark.e2e

STREAM, FIELD = "alerts", "packet"


@pytest.fixture
def redis_url(tmp_path):
    server = shutil.which("redis-server")
    if server is None:
        pytest.fail("redis-server is not installed: `make setup` installs it (Debian package redis-server)")
    import redis

    port = free_port()
    proc = subprocess.Popen([server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                             "--dir", str(tmp_path)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"redis://127.0.0.1:{port}/0"
    client = redis.Redis.from_url(url)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if client.ping():
                    break
            except redis.ConnectionError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"redis-server did not start on {url}")
            time.sleep(0.1)
        yield url
    finally:
        client.close()
        proc.terminate()
        proc.wait(timeout=30)


def _publish(url: str, cfg, n_alerts: int) -> int:
    import redis

    from deeprubin.stream.transports import publish_redis

    raw = Path(cfg.paths.raw)
    lc = io.read_parquet(raw / "lightcurves.parquet")
    objects = io.read_parquet(raw / "objects.parquet")
    bodies = [encode_message(p, "ztf") for p in iter_ztf_packets(lc, objects)][:n_alerts]
    client = redis.Redis.from_url(url)
    publish_redis(client, STREAM, bodies, field=FIELD)
    client.close()
    return len(bodies)


def _command(cfg, url: str, group: str, state: Path, dead: Path) -> list[str]:
    return [sys.executable, "-m", "deeprubin.stream", "stream.transport=redis", f"stream.redis.url={url}",
            f"stream.redis.stream={STREAM}", f"stream.redis.group={group}", f"stream.state={state}",
            f"stream.checkpoint={Path(cfg.paths.models) / 'model.ckpt'}", "stream.anomaly_model=null",
            "stream.batch_size=16",
            "stream.poll_timeout_s=0.5", "stream.idle_stop_s=3", "stream.progress_every_s=1",
            f"stream.dead_letter={dead}", "outputs_outside_repo=true"]


def _count(state: Path) -> int:
    if not state.exists():
        return 0
    try:
        with sqlite3.connect(f"file:{state}?mode=ro", uri=True, timeout=1) as db:
            return db.execute("SELECT COUNT(*) FROM classifications").fetchone()[0]
    except sqlite3.OperationalError:   # tables not created yet
        return 0


def _pending(url: str, group: str) -> int:
    import redis

    client = redis.Redis.from_url(url)
    try:
        return int(client.xpending(STREAM, group)["pending"])
    finally:
        client.close()


def _results(state: Path) -> pd.DataFrame:
    with StateStore(state) as store:
        return store.classifications().sort_values("alert_id").reset_index(drop=True)


def test_stream_is_exactly_once_across_sigkill_and_restart(tiny_pipeline, redis_url, tmp_path):
    cfg, _ = tiny_pipeline
    n = _publish(redis_url, cfg, 400)
    env = tiny_env()

    # reference: one uninterrupted consumer (its own consumer group reads the whole stream)
    ref_state = tmp_path / "ref.sqlite"
    subprocess.run(_command(cfg, redis_url, "reference", ref_state, tmp_path / "ref_dead.jsonl"), cwd=tmp_path,
                   env=env, check=True, capture_output=True, timeout=600)
    reference = _results(ref_state)
    assert len(reference) == reference["alert_id"].nunique() == n

    # the same stream, killed with SIGKILL while a batch is in flight, then restarted
    state, dead = tmp_path / "state.sqlite", tmp_path / "dead.jsonl"
    cmd = _command(cfg, redis_url, "killed", state, dead)
    killed_mid_batch = 0
    for attempt in range(4):
        proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        target = _count(state) + 40
        deadline = time.monotonic() + 300
        while _count(state) < target and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        if proc.poll() is not None:
            break   # it finished the stream before the kill: nothing left to interrupt
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        pending = _pending(redis_url, "killed")
        killed_mid_batch += pending > 0   # delivered to the dead consumer, never acknowledged
        if killed_mid_batch:
            break
    assert killed_mid_batch, "no kill landed while a batch was in flight"
    assert _count(state) < n
    run = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    assert _pending(redis_url, "killed") == 0

    table = _results(state)
    assert len(table) == table["alert_id"].nunique() == n          # every alert, exactly once
    assert table["alert_id"].tolist() == reference["alert_id"].tolist()
    assert (table["predicted"] == reference["predicted"]).all()
    probs = [c for c in table.columns if c.startswith("prob_")]
    np.testing.assert_allclose(table[probs].to_numpy(), reference[probs].to_numpy(), atol=1e-6)
    assert (table["n_points"] == reference["n_points"]).all()
    assert not dead.exists()


def test_stream_dead_letters_a_malformed_broker_message(tiny_pipeline, redis_url, tmp_path):
    import redis

    from deeprubin.stream.transports import publish_redis

    cfg, _ = tiny_pipeline
    n = _publish(redis_url, cfg, 5)
    client = redis.Redis.from_url(redis_url)
    publish_redis(client, STREAM, [b"\x00 not an avro packet"], field=FIELD)
    client.xadd(STREAM, {"wrong_field": b"x"})
    client.close()
    state, dead = tmp_path / "state.sqlite", tmp_path / "dead.jsonl"
    run = subprocess.run(_command(cfg, redis_url, "g", state, dead), cwd=tmp_path, env=tiny_env(),
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    assert _count(state) == n
    lines = dead.read_text().splitlines()
    assert len(lines) == 2 and "undecodable Avro" in lines[0] and "wrong_field" in lines[1]
    assert _pending(redis_url, "g") == 0   # dead letters are acknowledged, not redelivered forever
