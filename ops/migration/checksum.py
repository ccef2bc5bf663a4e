"""Order-independent content checksums of row sets.

Two methods, always the same one on both sides of a comparison:

``canonical`` (any dialect, deterministic *across* dialects): each row is converted to the
Python values SQLAlchemy's column types produce (so SQLite's stored strings become datetimes,
NUMERIC becomes Decimal, ...), every value is normalised (Decimal without trailing zeros,
aware datetimes in UTC, binary as bytes, JSON with sorted keys), the row is rendered with
``repr`` (unambiguous for str/bytes/None), hashed with BLAKE2b-64, and the row hashes are summed
modulo 2**64. A sum, not XOR, so a duplicated row changes the result; count is kept alongside.

``pg-md5`` (PostgreSQL on both sides): the same idea computed by the server, md5 of the row's
text form under a pinned TimeZone/DateStyle, first 64 bits summed. It avoids shipping every row
to Python, which is what makes verification affordable on PostgreSQL; its values are only
comparable with other ``pg-md5`` values.

``sqlite-exact`` (SQLite files on both sides, the in-SQLite fast path): no digest at all. SQLite
compares the rows themselves (see ``sqlite_native``); ``Checksum`` values of this method carry row
counts, with digest 0.
"""

from __future__ import annotations

import datetime as dt
import decimal
import hashlib
import json
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Dialect
from sqlalchemy.sql.sqltypes import _Binary  # base of BINARY, VARBINARY, LargeBinary, BYTEA

MOD = 1 << 64
CANONICAL = "canonical"
PG_MD5 = "pg-md5"
SQLITE_EXACT = "sqlite-exact"


@dataclass(frozen=True)
class Checksum:
    """Row count plus the 64-bit sum of row hashes; ``+`` combines disjoint row sets."""

    count: int = 0
    digest: int = 0

    def __add__(self, other: Checksum) -> Checksum:
        return Checksum(self.count + other.count, (self.digest + other.digest) % MOD)

    def __str__(self) -> str:
        return f"{self.count}:{self.digest:016x}"

    @classmethod
    def parse(cls, text: str) -> Checksum:
        count, digest = text.split(":")
        return cls(int(count), int(digest, 16))


def _dec(v: Any) -> Any:
    if not isinstance(v, decimal.Decimal):
        return v
    if not v.is_finite():
        return str(v)
    if v == 0:
        return "0"  # 0.00, -0 and 0E-5 are the same number
    return format(v.normalize(), "f")


def _datetime(v: Any) -> Any:
    if isinstance(v, dt.datetime):
        if v.tzinfo is not None and v.utcoffset() is not None:
            return v.astimezone(dt.UTC).replace(tzinfo=None).isoformat() + "Z"
        return v.isoformat()
    if isinstance(v, dt.date | dt.time):
        return v.isoformat()
    if isinstance(v, dt.timedelta):
        return f"P{v.days}D{v.seconds}S{v.microseconds}U"
    return v


def _binary(v: Any) -> Any:
    return bytes(v) if isinstance(v, bytes | bytearray | memoryview) else v


def _generic(v: Any) -> Any:
    # Fallback for types whose family we could not predict from the column type.
    t = type(v)
    if t in (str, int, float, bool) or v is None:
        return v
    if isinstance(v, decimal.Decimal):
        return _dec(v)
    if isinstance(v, dt.date | dt.time | dt.timedelta):
        return _datetime(v)
    if isinstance(v, bytes | bytearray | memoryview):
        return bytes(v)
    if isinstance(v, uuid.UUID):
        return str(v)
    if isinstance(v, dict | list):
        return json.dumps(v, sort_keys=True, separators=(",", ":"), default=str)
    return str(v)


def _normaliser(col_type: sa.types.TypeEngine[Any]) -> Callable[[Any], Any] | None:
    """None means "values of this column are already canonical" (the fast path)."""
    if isinstance(col_type, sa.Boolean | sa.Integer | sa.Float):
        return None
    if isinstance(col_type, sa.String) and not isinstance(col_type, sa.Enum):
        return None
    if isinstance(col_type, sa.Numeric):
        return _dec
    if isinstance(col_type, sa.DateTime | sa.Date | sa.Time | sa.Interval):
        return _datetime
    if isinstance(col_type, _Binary):
        return _binary
    return _generic


class RowHasher:
    """Hashes rows of one table (columns in a fixed order) into a Checksum.

    ``raw=True`` means rows come straight from the DB-API (as the copy reads them) and first get
    the dialect's result processors applied, so raw and typed reads hash identically.
    """

    def __init__(self, columns: Sequence[sa.Column[Any]], dialect: Dialect, *, raw: bool) -> None:
        steps: list[tuple[int, Callable[[Any], Any]]] = []
        # Only SQLite's driver hands back storage forms (text datetimes, float decimals); psycopg2
        # and pyodbc already return datetime/Decimal, and their processors need the cursor's type OID.
        process = raw and dialect.name == "sqlite"
        for i, col in enumerate(columns):
            impl = col.type.dialect_impl(dialect)
            proc = impl.result_processor(dialect, None) if process else None
            norm = _normaliser(col.type)
            if proc is not None and norm is not None:
                steps.append((i, _chain(proc, norm)))
            elif proc is not None:
                steps.append((i, proc))
            elif norm is not None:
                steps.append((i, norm))
        self._steps = steps

        self._width = len(columns)

    def canonical_rows(self, rows: Sequence[Sequence[Any]]) -> list[str]:
        """Canonical text of each row: ``repr`` of the tuple of normalised values."""
        if not rows:
            return []
        if not self._steps:
            return [repr(tuple(r)) for r in rows]
        # Column-wise: one comprehension per converted column instead of a Python loop per row.
        cols: list[Any] = list(zip(*rows, strict=True))
        for i, fn in self._steps:
            cols[i] = [None if v is None else fn(v) for v in cols[i]]
        return [repr(r) for r in zip(*cols, strict=True)]

    def hashes(self, rows: Sequence[Sequence[Any]]) -> list[int]:
        blake, from_bytes = hashlib.blake2b, int.from_bytes
        return [
            from_bytes(blake(text.encode("utf-8", "surrogatepass"), digest_size=8).digest(), "little")
            for text in self.canonical_rows(rows)
        ]

    def row_hash(self, row: Sequence[Any]) -> int:
        return self.hashes([row])[0]

    def checksum(self, rows: Sequence[Sequence[Any]]) -> Checksum:
        hashes = self.hashes(rows)
        return Checksum(len(hashes), sum(hashes) % MOD)


def _chain(first: Callable[[Any], Any], second: Callable[[Any], Any]) -> Callable[[Any], Any]:
    def both(v: Any) -> Any:
        v = first(v)
        return None if v is None else second(v)

    return both


def pg_row_hash_sql(quoted_columns: Sequence[str]) -> str:
    """SQL expression: 64-bit signed hash of the row's text form (md5, first 16 hex digits)."""
    # ROW(...)::text is never NULL and quotes/escapes each field, so NULL and '' differ.
    return f"('x' || left(md5(ROW({', '.join(quoted_columns)})::text), 16))::bit(64)::bigint"


# Settings that change the text output of values; pinned so both servers render identically.
PG_PINNED_SETTINGS = (
    "SET LOCAL TimeZone = 'UTC'",
    "SET LOCAL DateStyle = 'ISO, YMD'",
    "SET LOCAL IntervalStyle = 'postgres'",
    "SET LOCAL extra_float_digits = 1",
    "SET LOCAL bytea_output = 'hex'",
)


def checksum_method(source_dialect: str, target_dialect: str) -> str:
    return PG_MD5 if source_dialect == target_dialect == "postgresql" else CANONICAL
