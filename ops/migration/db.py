"""Engine helpers: URL → Engine with the settings the migration engine relies on."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Engine


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    # SQLite ignores FOREIGN KEY clauses unless asked; enforcing them proves our parent-first
    # ordering instead of silently accepting orphans. busy_timeout lets a reader wait out a writer.
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=10000")
    cur.close()


def as_engine(url_or_engine: str | sa.URL | Engine) -> Engine:
    """Return an Engine; URLs get per-dialect tuning (SQLite FK enforcement, SQL Server fast_executemany)."""
    if isinstance(url_or_engine, Engine):
        return url_or_engine
    url = sa.make_url(url_or_engine)
    kwargs: dict[str, Any] = {}
    if url.get_backend_name() == "mssql" and url.get_driver_name() == "pyodbc":
        # pyodbc sends one round trip per row otherwise; with it, a batch is one array bind.
        kwargs["fast_executemany"] = True
    engine = sa.create_engine(url, **kwargs)
    if url.get_backend_name() == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def redact(engine: Engine) -> str:
    """Engine URL without the password, safe for journals and logs."""
    return engine.url.render_as_string(hide_password=True)
