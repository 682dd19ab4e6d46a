"""Stream entry point: classify an alert stream, or write a simulated one (not a DVC stage).

::

    python -m deeprubin.stream stream.mode=simulate          # the test split as ZTF alert packets
    python -m deeprubin.stream                               # classify them (replay) into stream.state
    python -m deeprubin.stream stream.transport=redis        # ... from a Redis stream (consumer group)
    python -m deeprubin.stream stream.transport=kafka 'stream.kafka.topics=[ztf_alerts]' \
        stream.kafka.config.bootstrap\\.servers=broker:9092

Reads ``tasks.transients.stream`` (``conf/stream/default.yaml``; short keys ``stream.*``); the
work is :func:`deeprubin.stream.service.stream_main`.
"""
from __future__ import annotations

from omegaconf import DictConfig

from ..core.entry import hydra_entry
from ..stream.service import stream_main


def run_stream(cfg: DictConfig) -> dict:
    """``stream.mode=run``: classify the configured transport; ``simulate``: write the stream."""
    return stream_main(cfg)


main = hydra_entry(run_stream, task="transients")

if __name__ == "__main__":
    main()
