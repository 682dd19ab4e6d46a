"""The alert stream: packets in, one classification per alert out, exactly once.

* :mod:`.packets`: Rubin (``lsst-alert-packet``) and ZTF alert packets -> observations;
* :mod:`.simulate`: a time-ordered ZTF alert stream from light-curve tables;
* :mod:`.state`: the SQLite state and output store;
* :mod:`.transports`: Avro replay, Redis Streams, Kafka (and output topics);
* :mod:`.classifier`: the loop (one transaction per poll, dead letters, anomaly scores);
* :mod:`.service`: the ``stream`` config node -> a running stream (``python -m deeprubin.stream``).

Guide: ``docs/stream.md``.
"""
