"""The scoring service: a REST API over the trained models (FastAPI on uvicorn).

* :mod:`.settings`: the ``serve`` config node, checked;
* :mod:`.tokens`: bearer tokens stored hashed in SQLite, and their command line;
* :mod:`.ratelimit`: per-token token buckets;
* :mod:`.metrics`: Prometheus text-format metrics;
* :mod:`.schemas`: request/response bodies, request rows -> canonical tables;
* :mod:`.scoring`: a task's loaded model, scoring through the predict path;
* :mod:`.jobs`: the SQLite store of batch jobs (queued, running, done, failed; restart recovery);
* :mod:`.batch`: batch jobs: uploads and server-side files, the worker thread;
* :mod:`.app`: the application (routes, authentication, limits);
* :mod:`.service`: config -> running server (``python -m deeprubin.serve``).

Nothing here is imported by this ``__init__`` (the entry point pins the numerics first).
Guide: ``docs/serve.md``.
"""
