"""Engine helpers: URL → Engine with the settings the migration engine relies on, and safe URL text."""

from __future__ import annotations

import re
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Engine

from ops.migration.errors import PreflightError

# Query parameters that carry a secret in some driver's URL form: libpq (password, sslpassword,
# sslkey passphrase), pyodbc's odbc_connect string (PWD=), access tokens and SAS-style keys.
_SECRET_KEYS = re.compile(r"pass|pwd|secret|token|key|sig|credential", re.IGNORECASE)
_ODBC_SECRET = re.compile(r"((?:^|;)\s*(?:pwd|password|accesstoken)\s*=\s*)(\{[^}]*\}|[^;]*)", re.IGNORECASE)
HIDDEN = "***"


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    # SQLite ignores FOREIGN KEY clauses unless asked; enforcing them proves our parent-first
    # ordering instead of silently accepting orphans. busy_timeout lets a reader wait out a writer.
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=10000")
    cur.close()


# The module a dialect needs and the package that provides it, for a clean "install X" message.
_DRIVER_PACKAGES = {"pyodbc": "pyodbc (and the Microsoft ODBC Driver 18 for SQL Server)", "psycopg2": "psycopg2-binary"}


def as_engine(url_or_engine: str | sa.URL | Engine) -> Engine:
    """Return an Engine; URLs get per-dialect tuning (SQLite FK enforcement, SQL Server fast_executemany).

    A malformed URL or a missing driver raises PreflightError naming the URL (password hidden).
    """
    if isinstance(url_or_engine, Engine):
        return url_or_engine
    try:
        url = sa.make_url(url_or_engine)
    except (sa.exc.ArgumentError, ValueError) as exc:
        raise PreflightError(f"not a database URL: {redact_url(str(url_or_engine))!r} ({exc})") from None
    kwargs: dict[str, Any] = {}
    if url.get_backend_name() == "mssql" and url.get_driver_name() == "pyodbc":
        # pyodbc sends one round trip per row otherwise; with it, a batch is one array bind.
        kwargs["fast_executemany"] = True
    try:
        engine = sa.create_engine(url, **kwargs)
    except ModuleNotFoundError as exc:
        package = _DRIVER_PACKAGES.get(exc.name or "", exc.name)
        raise PreflightError(
            f"the database driver for {redact_url(url)} is not installed: {exc.name} "
            f"(install {package} on the machine that runs the migration)"
        ) from None
    except (sa.exc.ArgumentError, sa.exc.NoSuchModuleError) as exc:
        raise PreflightError(f"cannot use database URL {redact_url(url)}: {exc}") from None
    if url.get_backend_name() == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def redact_url(url: str | sa.URL) -> str:
    """The URL with its password and every secret-looking query parameter hidden.

    ``render_as_string(hide_password=True)`` hides only the userinfo password; libpq and ODBC also
    take passwords as query parameters (``?password=``, ``odbc_connect=...PWD=...``).
    """
    if not isinstance(url, sa.URL):
        try:
            url = sa.make_url(url)
        except (sa.exc.ArgumentError, ValueError):
            # Not parseable: hide anything after a colon in the userinfo and every key=value pair.
            text = re.sub(r"(//[^:/@]*:)[^@]*@", rf"\1{HIDDEN}@", str(url))
            return re.sub(r"([?&;][^=&;]*=)[^&;]*", rf"\1{HIDDEN}", text)
    query: dict[str, str | tuple[str, ...]] = {}
    for key, value in url.query.items():
        values = (value,) if isinstance(value, str) else tuple(value)
        if _SECRET_KEYS.search(key):
            values = tuple(HIDDEN for _ in values)
        elif key.lower() == "odbc_connect":
            values = tuple(_ODBC_SECRET.sub(rf"\1{HIDDEN}", v) for v in values)
        query[key] = values[0] if len(values) == 1 else values
    return url.set(query=query).render_as_string(hide_password=True)


def redact(engine: Engine) -> str:
    """Engine URL without the password (userinfo or query), safe for journals and logs."""
    return redact_url(engine.url)


def scrub(text: str, *urls: str | sa.URL) -> str:
    """``text`` (an error message) with every secret of ``urls`` replaced: drivers echo DSNs back."""
    for url in urls:
        try:
            parsed = url if isinstance(url, sa.URL) else sa.make_url(url)
        except (sa.exc.ArgumentError, ValueError):
            continue
        secrets = [parsed.password] if parsed.password else []
        for key, value in parsed.query.items():
            for v in (value,) if isinstance(value, str) else value:
                if _SECRET_KEYS.search(key):
                    secrets.append(v)
                elif key.lower() == "odbc_connect":
                    secrets += [m.group(2) for m in _ODBC_SECRET.finditer(v)]
        for secret in secrets:
            if secret and len(str(secret)) >= 3:
                text = text.replace(str(secret), HIDDEN)
    return text
