"""Which database a connection really reaches, by the server's own identity rather than its URL.

A URL says how to reach a database, not which one it is: ``localhost`` and ``127.0.0.1``, two users
of one server, a symlink or a hard link to one SQLite file, ``?timeout=5`` — all name the same
database differently. Deleting a tenant's source rows is only safe if the target is provably another
database, so the purge (and the migration's preflight) compares identities read *from the
connection*:

* **PostgreSQL**: ``pg_control_system().system_identifier`` (unique per cluster, set by initdb,
  readable by any role since PostgreSQL 10) plus the database's ``oid`` in ``pg_database``;
* **SQL Server / Azure SQL**: ``@@SERVERNAME`` (the logical server on Azure SQL) plus ``DB_ID()``
  and ``DB_NAME()`` (database ids are unique within an instance or logical server);
* **SQLite**: device and inode of the real path of the ``main`` database file as the connection
  itself reports it (``PRAGMA database_list``), so symlinks and hard links resolve to one file.

Anything else (an in-memory SQLite database, an unknown dialect, a server that will not say)
cannot be identified, and callers treat that as "not proven different".
"""

from __future__ import annotations

import os
import sqlite3
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from ops.migration.errors import IdentityError


@dataclass(frozen=True)
class DatabaseIdentity:
    """``dialect`` plus the server-reported facts that single out one database."""

    dialect: str
    parts: tuple[str, ...]

    def __str__(self) -> str:
        return f"{self.dialect}:{'/'.join(self.parts)}"

    @classmethod
    def parse(cls, text: str) -> DatabaseIdentity:
        dialect, _, rest = text.partition(":")
        if not dialect or not rest:
            raise ValueError(f"not a database identity: {text!r}")
        return cls(dialect, tuple(rest.split("/")))


def sqlite_identity(conn: sqlite3.Connection, schema: str = "main") -> DatabaseIdentity:
    """Identity of the file behind ``schema`` on a raw sqlite3 connection (attached databases too)."""
    files = {row[1]: row[2] for row in conn.execute("PRAGMA database_list").fetchall()}
    return _file_identity(files.get(schema) or "", schema)


def _file_identity(path: str, what: str) -> DatabaseIdentity:
    if not path:
        raise IdentityError(f"the SQLite database {what!r} is in memory or temporary: it has no file to identify")
    real = os.path.realpath(path)
    try:
        st = os.stat(real)
    except OSError as exc:
        raise IdentityError(f"cannot stat the SQLite file {real}: {exc.strerror}") from None
    return DatabaseIdentity("sqlite", (str(st.st_dev), str(st.st_ino)))


def identity_of(conn: Connection) -> DatabaseIdentity:
    """The identity of the database ``conn`` is connected to (see the module docstring)."""
    dialect = conn.dialect.name
    try:
        if dialect == "sqlite":
            rows = conn.exec_driver_sql("PRAGMA database_list").all()
            return _file_identity(next((r[2] for r in rows if r[1] == "main"), "") or "", "main")
        if dialect == "postgresql":
            system_id = conn.exec_driver_sql("SELECT system_identifier::text FROM pg_control_system()").scalar_one()
            oid = conn.exec_driver_sql(
                "SELECT oid::text FROM pg_database WHERE datname = current_database()"
            ).scalar_one()
            return DatabaseIdentity("postgresql", (str(system_id), str(oid)))
        if dialect == "mssql":
            server, db_id, db_name = conn.exec_driver_sql(
                "SELECT CAST(@@SERVERNAME AS nvarchar(256)), DB_ID(), CAST(DB_NAME() AS nvarchar(256))"
            ).one()
            if server is None or db_id is None:
                raise IdentityError("SQL Server did not report @@SERVERNAME and DB_ID()")
            return DatabaseIdentity("mssql", (str(server).lower(), str(db_id), str(db_name).lower()))
    except sa.exc.DBAPIError as exc:
        raise IdentityError(f"the {dialect} server would not tell which database this is: {exc.orig}") from None
    raise IdentityError(f"cannot identify {dialect} databases, so cannot prove two of them differ")


def engine_identity(engine: Engine) -> DatabaseIdentity:
    with engine.connect() as conn:
        return identity_of(conn)


def require_distinct(source: DatabaseIdentity, target: DatabaseIdentity, what: Any = "source and target") -> None:
    if source == target:
        raise IdentityError(
            f"{what} are the same database ({source}) reached by two different URLs; refusing"
        )
