"""Bearer tokens of the scoring service, stored hashed in SQLite, and their command line.

::

    python -m deeprubin.serve.tokens create --name alice            # prints the token, once
    python -m deeprubin.serve.tokens create --name loadtest --unlimited   # exempt from the rate limit
    python -m deeprubin.serve.tokens revoke --name alice
    python -m deeprubin.serve.tokens list

A token is ``drb_<key id>_<secret>``: the key id (random, not secret) finds the row, and the
row holds only a random per-token salt and ``HMAC-SHA256(salt, secret)``, never the token. A
256-bit random secret needs no slow key-derivation function: there is nothing to guess.
Revoked rows are kept (``revoked_at``); a revoked name can be created again. The store is
``serve.tokens`` of the config unless ``--store`` names another file.
"""
from __future__ import annotations

import argparse
import hashlib
import hmac
import re
import secrets
import sqlite3
import sys
import time
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

from .sqlite import connect

PREFIX = "drb"
#: Bytes of randomness in a key id and in a secret.
KEY_ID_BYTES = 6
SECRET_BYTES = 32
SALT_BYTES = 16
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS tokens (
    key_id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    salt BLOB NOT NULL,
    digest BLOB NOT NULL,
    unlimited INTEGER NOT NULL DEFAULT 0,
    created_at REAL NOT NULL,
    revoked_at REAL
);
CREATE UNIQUE INDEX IF NOT EXISTS tokens_active_name ON tokens(name) WHERE revoked_at IS NULL;
"""


class TokenError(ValueError):
    """A token command that cannot be done (unknown name, name taken); the message names it."""


@dataclass(frozen=True)
class TokenInfo:
    """One token's record, without anything secret."""

    name: str
    key_id: str
    unlimited: bool
    created_at: float
    revoked_at: float | None

    @property
    def active(self) -> bool:
        return self.revoked_at is None


def _digest(salt: bytes, secret: str) -> bytes:
    return hmac.new(salt, secret.encode(), hashlib.sha256).digest()


def split_token(token: str) -> tuple[str, str] | None:
    """``(key id, secret)`` of a well-formed token, else None."""
    parts = token.split("_", 2)
    if len(parts) != 3 or parts[0] != PREFIX or len(parts[1]) != 2 * KEY_ID_BYTES or not parts[2]:
        return None
    return parts[1], parts[2]


class TokenStore:
    """The SQLite file of hashed tokens (created with its table on first use, mode 0600)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def _connect(self) -> sqlite3.Connection:
        return connect(self.path, _SCHEMA, TokenError, "token store")

    def create(self, name: str, *, unlimited: bool = False, now: float | None = None) -> str:
        """A new token for ``name`` (returned once; only its hash is stored)."""
        if not NAME_PATTERN.match(name):
            raise TokenError(f"--name {name!r}: use 1-64 letters, digits, '.', '_' or '-', starting with a "
                             "letter or digit")
        key_id, secret, salt = secrets.token_hex(KEY_ID_BYTES), secrets.token_urlsafe(SECRET_BYTES), \
            secrets.token_bytes(SALT_BYTES)
        with closing(self._connect()) as conn:
            try:
                with conn:
                    conn.execute("INSERT INTO tokens (key_id, name, salt, digest, unlimited, created_at) "
                                 "VALUES (?, ?, ?, ?, ?, ?)",
                                 (key_id, name, salt, _digest(salt, secret), int(unlimited),
                                  time.time() if now is None else now))
            except sqlite3.IntegrityError:
                raise TokenError(f"--name {name!r}: {self.path} already has an active token of that name "
                                 "(revoke it first)") from None
        return f"{PREFIX}_{key_id}_{secret}"

    def revoke(self, name: str, *, now: float | None = None) -> None:
        """Revoke the active token of ``name``; :class:`TokenError` when there is none."""
        with closing(self._connect()) as conn, conn:
            done = conn.execute("UPDATE tokens SET revoked_at = ? WHERE name = ? AND revoked_at IS NULL",
                                (time.time() if now is None else now, name)).rowcount
        if not done:
            raise TokenError(f"--name {name!r}: {self.path} has no active token of that name")

    def tokens(self) -> list[TokenInfo]:
        """Every token record, oldest first."""
        with closing(self._connect()) as conn:
            rows = conn.execute("SELECT name, key_id, unlimited, created_at, revoked_at FROM tokens "
                                "ORDER BY created_at, name").fetchall()
        return [TokenInfo(n, k, bool(u), c, r) for n, k, u, c, r in rows]

    def verify(self, token: str) -> TokenInfo | None:
        """The active token's record if ``token`` is one, else None (constant-time digest check)."""
        parts = split_token(token)
        key_id, secret = parts if parts else ("", token)
        with closing(self._connect()) as conn:
            row = conn.execute("SELECT name, salt, digest, unlimited, created_at, revoked_at FROM tokens "
                               "WHERE key_id = ?", (key_id,)).fetchone()
        if row is None:
            _digest(b"\0" * SALT_BYTES, secret)  # same work as for a known key id
            return None
        name, salt, digest, unlimited, created, revoked = row
        if not hmac.compare_digest(_digest(salt, secret), digest) or revoked is not None:
            return None
        return TokenInfo(name, key_id, bool(unlimited), created, revoked)


def _default_store() -> Path:
    """``serve.tokens`` of the composed config (``conf/`` of the working directory if it has one)."""
    from ..core.config import CONF_DIR, compose_params

    local = Path.cwd() / "conf"
    return Path(str(compose_params([], local if (local / "config.yaml").exists() else CONF_DIR).serve.tokens))


def _iso(t: float | None) -> str:
    return "-" if t is None else time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def main(argv: list[str] | None = None) -> int:
    """The ``create`` / ``revoke`` / ``list`` command; exit status 1 with the reason on error."""
    parser = argparse.ArgumentParser(prog="python -m deeprubin.serve.tokens", description=__doc__.splitlines()[0])
    parser.add_argument("--store", type=Path, default=None, help="token store (default: serve.tokens of conf/)")
    commands = parser.add_subparsers(dest="command", required=True)
    create = commands.add_parser("create", help="create a token and print it (once)")
    create.add_argument("--name", required=True)
    create.add_argument("--unlimited", action="store_true", help="exempt from the rate limit (load tests)")
    revoke = commands.add_parser("revoke", help="revoke the active token of a name")
    revoke.add_argument("--name", required=True)
    commands.add_parser("list", help="list the tokens (never the tokens themselves)")
    args = parser.parse_args(argv)
    store = TokenStore(args.store or _default_store())
    try:
        if args.command == "create":
            print(store.create(args.name, unlimited=args.unlimited))
            print(f"token '{args.name}' created in {store.path}; it is shown only now", file=sys.stderr)
        elif args.command == "revoke":
            store.revoke(args.name)
            print(f"token '{args.name}' revoked in {store.path}", file=sys.stderr)
        else:
            print("name\tkey_id\tunlimited\tcreated\trevoked")
            for t in store.tokens():
                print(f"{t.name}\t{t.key_id}\t{str(t.unlimited).lower()}\t{_iso(t.created_at)}\t{_iso(t.revoked_at)}")
    except TokenError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
