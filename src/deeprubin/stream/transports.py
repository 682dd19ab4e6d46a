"""Where packets come from, and where results go: Avro replay, Redis Streams, Apache Kafka.

Every transport has the same small interface the stream classifier drives:

``poll(n, timeout_s)``   up to ``n`` :class:`Message` s (fewer, or none, after ``timeout_s``);
``commit(messages)``     acknowledge them to the broker, called only *after* their results are
                         committed to the state store (at-least-once delivery, made exactly-once
                         in the output by the store's alert-id key);
``position(messages)``   for transports whose position lives in the state store (the replay):
                         the position after ``messages``, committed in the same transaction as
                         their results; None for brokers, which keep their own;
``lag()``                messages not yet consumed, when the transport can tell (else None);
``close()``.

* :class:`ReplayTransport`: Avro container files in name order (``stream.simulate`` writes them);
  the default, for offline use and tests.
* :class:`RedisStreamTransport`: a Redis stream read by a consumer group (``XREADGROUP``): on
  start the consumer first re-reads its own pending entries (delivered, never acknowledged: a
  crash between the store's commit and ``XACK``), then new ones; ``XACK`` commits.
* :class:`KafkaTransport`: ``confluent-kafka`` consumer in a consumer group with auto-commit off;
  ``commit`` commits the consumed offsets synchronously. What Rubin and ZTF brokers speak.

Outputs (``stream.output``): :class:`RedisStreamOutput` and :class:`KafkaOutput` publish one JSON
message per classification after the store's commit (at-least-once: a consumer deduplicates
by ``alert_id``).
"""
from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from .packets import PacketError, read_avro_file

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Message:
    """One packet as delivered: raw ``body`` (brokers) or an already decoded ``packet`` (replay)."""

    where: str                      # names the message in errors: file#index, stream/id, topic[p]@offset
    body: bytes | None = None
    packet: dict | None = None
    token: object = None            # what commit/position need (file position, entry id, message)
    error: str | None = None        # the transport could not read it (becomes a dead letter)


# ---------------------------------------------------------------------------------------------
class ReplayTransport:
    """Packets of the ``*.avro`` files under ``path`` (a file or a folder), in name order.

    ``start_after``: the position (``"<file name>#<index>"``) of the last packet already
    processed, as stored by the state store; the replay resumes right after it. A file that is
    not a readable Avro container becomes one dead-letter message and the replay goes on.
    """

    name = "replay"

    def __init__(self, path: str | Path, *, start_after: str | None = None, pattern: str = "*.avro"):
        root = Path(path)
        if root.is_file():
            self.files = [root]
        elif root.is_dir():
            self.files = sorted(root.glob(pattern))
        else:
            raise FileNotFoundError(f"stream.replay.path: {root} does not exist (write a stream first: "
                                    f"python -m deeprubin.stream simulate ...)")
        if not self.files:
            raise FileNotFoundError(f"stream.replay.path: no {pattern} file in {root}")
        self.skip_file, self.skip_index = None, -1
        if start_after:
            name, sep, index = str(start_after).rpartition("#")
            if not sep or not index.lstrip("-").isdigit():
                raise ValueError(f"replay position {start_after!r} is not '<file>#<index>'")
            self.skip_file, self.skip_index = name, int(index)
        self._iter = self._messages()

    def _messages(self) -> Iterator[Message]:
        for f in self.files:
            if self.skip_file is not None and f.name < self.skip_file:
                continue   # wholly processed before the restart
            skip = self.skip_index if f.name == self.skip_file else -1
            k = -1
            try:
                for k, packet in enumerate(read_avro_file(f)):
                    if k > skip:
                        yield Message(f"{f.name}#{k}", packet=packet, token=f"{f.name}#{k}")
            except PacketError as err:
                k += 1   # the unreadable rest of the file is one dead letter
                if k > skip:
                    yield Message(f"{f.name}#{k}", token=f"{f.name}#{k}", error=str(err))

    def poll(self, n: int, timeout_s: float = 0.0) -> list[Message]:
        out = []
        for message in self._iter:
            out.append(message)
            if len(out) >= n:
                break
        return out

    def position(self, messages: Sequence[Message]) -> str | None:
        return str(messages[-1].token) if messages else None

    def commit(self, messages: Sequence[Message]) -> None:
        """Nothing to do: the position was committed with the results."""

    def lag(self) -> int | None:
        return None

    def close(self) -> None:
        self._iter.close()


# ---------------------------------------------------------------------------------------------
class RedisStreamTransport:
    """A Redis stream consumed by a consumer group; entries hold the packet bytes in ``field``."""

    name = "redis"

    def __init__(self, url: str, stream: str, group: str, consumer: str, *, field: str = "packet", client=None):
        import redis

        self.redis = redis
        self.client = client if client is not None else redis.Redis.from_url(url)
        self.stream, self.group, self.consumer, self.field = stream, group, consumer, field.encode()
        try:
            self.client.xgroup_create(stream, group, id="0", mkstream=True)
        except redis.ResponseError as err:
            if "BUSYGROUP" not in str(err):
                raise
        self._pending = True   # first our own pending entries (a crash before XACK), then new ones

    def _read(self, start: str, n: int, block_ms: int | None):
        reply = self.client.xreadgroup(self.group, self.consumer, {self.stream: start}, count=n, block=block_ms)
        return reply[0][1] if reply else []

    def poll(self, n: int, timeout_s: float = 1.0) -> list[Message]:
        entries = []
        if self._pending:
            entries = self._read("0", n, None)
            if not entries:
                self._pending = False
        if not entries:
            entries = self._read(">", n, max(1, int(timeout_s * 1000)))
        out = []
        for entry_id, fields in entries:
            eid = entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)
            where = f"redis stream {self.stream} entry {eid}"
            body = (fields or {}).get(self.field)
            if body is None:
                out.append(Message(where, token=eid, error=f"entry has no field {self.field.decode()!r} "
                                                           f"(fields: {sorted(k.decode() for k in (fields or {}))})"))
            else:
                out.append(Message(where, body=body, token=eid))
        return out

    def position(self, messages: Sequence[Message]) -> str | None:
        return None

    def commit(self, messages: Sequence[Message]) -> None:
        if messages:
            self.client.xack(self.stream, self.group, *[m.token for m in messages])

    def lag(self) -> int | None:
        for info in self.client.xinfo_groups(self.stream):
            name = info.get("name")
            if (name.decode() if isinstance(name, bytes) else name) == self.group:
                lag = info.get("lag")
                return None if lag is None else int(lag)
        return None

    def close(self) -> None:
        self.client.close()


def publish_redis(client, stream: str, bodies: Sequence[bytes], *, field: str = "packet") -> list[str]:
    """XADD each body to ``stream`` (a producer for tests, the benchmark and replays into Redis)."""
    pipe = client.pipeline(transaction=False)
    for body in bodies:
        pipe.xadd(stream, {field: body})
    return [i.decode() if isinstance(i, bytes) else str(i) for i in pipe.execute()]


# ---------------------------------------------------------------------------------------------
class KafkaTransport:
    """``confluent-kafka`` consumer: auto-commit off, offsets committed after the store's commit.

    ``config`` is the librdkafka configuration (``bootstrap.servers``, ``group.id``, security
    settings); ``enable.auto.commit`` is forced off and ``auto.offset.reset`` defaults to
    ``earliest``. ``consumer_factory`` exists for the offline tests of this adapter, which
    replace the client at its boundary.
    """

    name = "kafka"

    def __init__(self, config: Mapping, topics: Sequence[str], *, consumer_factory: Callable | None = None):
        if not topics:
            raise ValueError("stream.kafka.topics: at least one topic is required")
        missing = [k for k in ("bootstrap.servers", "group.id") if not config.get(k)]
        if missing:
            raise ValueError(f"stream.kafka.config: missing {missing} (librdkafka settings)")
        conf = {"auto.offset.reset": "earliest", **dict(config), "enable.auto.commit": False}
        if consumer_factory is None:
            from confluent_kafka import Consumer as consumer_factory
        self.consumer = consumer_factory(conf)
        self.consumer.subscribe(list(topics))

    def poll(self, n: int, timeout_s: float = 1.0) -> list[Message]:
        out = []
        for msg in self.consumer.consume(num_messages=n, timeout=timeout_s):
            where = f"kafka {msg.topic()}[{msg.partition()}]@{msg.offset()}"
            err = msg.error()
            if err is not None:
                if _is_partition_eof(err):
                    continue
                if getattr(err, "fatal", lambda: False)():
                    raise RuntimeError(f"{where}: fatal Kafka error {err}")
                log.warning("%s: Kafka error %s", where, err)
                continue
            out.append(Message(where, body=msg.value(), token=msg))
        return out

    def position(self, messages: Sequence[Message]) -> str | None:
        return None

    def commit(self, messages: Sequence[Message]) -> None:
        if messages:
            self.consumer.commit(asynchronous=False)

    def lag(self) -> int | None:
        try:
            total = 0
            for tp in self.consumer.position(self.consumer.assignment()):
                low, high = self.consumer.get_watermark_offsets(tp, timeout=1.0, cached=True) or (0, 0)
                total += max(0, high - (tp.offset if tp.offset >= 0 else low))
            return total
        except Exception:   # lag is for the progress line only
            return None

    def close(self) -> None:
        self.consumer.close()


def _is_partition_eof(err) -> bool:
    try:
        from confluent_kafka import KafkaError
        return err.code() == KafkaError._PARTITION_EOF
    except ImportError:   # pragma: no cover - confluent-kafka is a dependency
        return False


# ---------------------------------------------------------------------------------------------
class RedisStreamOutput:
    """Publishes each classification as JSON to a Redis stream (field ``result``)."""

    def __init__(self, url: str, stream: str, client=None):
        import redis

        self.client = client if client is not None else redis.Redis.from_url(url)
        self.stream = stream

    def send(self, records: Sequence[Mapping]) -> None:
        publish_redis(self.client, self.stream, [json.dumps(r).encode() for r in records], field="result")

    def close(self) -> None:
        self.client.close()


class KafkaOutput:
    """Publishes each classification as JSON to a Kafka topic (key: the object id)."""

    def __init__(self, config: Mapping, topic: str, *, producer_factory: Callable | None = None):
        if producer_factory is None:
            from confluent_kafka import Producer as producer_factory
        self.producer = producer_factory(dict(config))
        self.topic = topic

    def send(self, records: Sequence[Mapping]) -> None:
        for r in records:
            self.producer.produce(self.topic, key=str(r["object_id"]).encode(), value=json.dumps(r).encode())
        self.producer.flush()

    def close(self) -> None:
        self.producer.flush()
