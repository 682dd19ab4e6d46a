"""The service's private SQLite files (tokens, jobs): created with mode 0600, schema applied on open."""
from __future__ import annotations

import os
import sqlite3
from pathlib import Path

#: SQLite's wait for a lock held by another process (seconds).
LOCK_TIMEOUT_S = 10.0


def connect(path: Path, schema: str, error: type[Exception], what: str) -> sqlite3.Connection:
    """A connection to ``path`` (created owner-only with its folder when missing) with ``schema``
    applied; a file that is not SQLite raises ``error`` naming it as "not a ``what``"."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
    try:
        conn = sqlite3.connect(path, timeout=LOCK_TIMEOUT_S)
        conn.executescript(schema)
    except sqlite3.DatabaseError as err:
        raise error(f"{path}: not a {what} ({err})") from None
    return conn
