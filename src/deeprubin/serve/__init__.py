"""The scoring service: a REST API over the trained models (FastAPI on uvicorn).

* :mod:`.settings`: the ``serve`` config node, checked;
* :mod:`.tokens`: bearer tokens stored hashed in SQLite, and their command line;
* :mod:`.ratelimit`: per-token token buckets;
* :mod:`.metrics`: Prometheus text-format metrics;
* :mod:`.schemas`: request/response bodies, request rows -> canonical tables;
* :mod:`.scoring`: a task's loaded model, scoring through the predict path;
* :mod:`.jobs`: the SQLite store of batch jobs (queued, running, done, failed; restart recovery);
* :mod:`.batch`: batch jobs: uploads and server-side files, the worker thread;
* :mod:`.versions`: MLflow registry versions: aliases, tags, verified downloads into the cache;
* :mod:`.promotion`: the evaluation set, the scores, the promotion rule;
* :mod:`.registry`: the ``promote`` / ``status`` command (``python -m deeprubin.serve.registry``);
* :mod:`.reload`: registry mode: the champion at startup, the watcher that swaps in a new one;
* :mod:`.app`: the application (routes, authentication, limits);
* :mod:`.service`: config -> running server (``python -m deeprubin.serve``).

Nothing here is imported by this ``__init__`` (the entry point pins the numerics first).
Guide: ``docs/serve.md``.
"""
