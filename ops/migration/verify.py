"""Verification reports: per-table counts and content checksums (or row comparisons), source vs target."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from ops.migration.checksum import Checksum
from ops.migration.errors import VerificationError


def utcnow() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")


@dataclass(frozen=True)
class TableVerification:
    """``expected`` is the source side (live source, or the bulk copy's recorded snapshot).

    ``differing``: rows (by key) missing from the target, only in the target or different in some
    column, as counted by an exact row comparison (method ``sqlite-exact``); 0 for checksum methods.
    """

    table: str
    kind: str
    expected: Checksum
    actual: Checksum
    differing: int = 0

    @property
    def ok(self) -> bool:
        return self.expected == self.actual and not self.differing

    def describe(self) -> str:
        if self.expected.count != self.actual.count:
            return f"table {self.table!r}: {self.expected.count} rows expected, {self.actual.count} in target"
        if self.differing:
            return (
                f"table {self.table!r}: {self.differing} row(s) differ between source and target "
                f"({self.actual.count} rows each)"
            )
        if not self.ok:
            return (
                f"table {self.table!r}: content checksum differs "
                f"(expected {self.expected}, target {self.actual}, {self.actual.count} rows each)"
            )
        return f"table {self.table!r}: {self.actual.count} rows, checksum {self.actual}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "table": self.table,
            "kind": self.kind,
            "expected": str(self.expected),
            "actual": str(self.actual),
            "differing": self.differing,
            "ok": self.ok,
        }


@dataclass(frozen=True)
class VerificationReport:
    """``kind``: "snapshot" (target vs what bulk copy read) or "final" (target vs live source)."""

    kind: str
    tenant_id: str
    method: str
    tables: tuple[TableVerification, ...]
    started_at: str
    finished_at: str = field(default_factory=utcnow)

    @property
    def ok(self) -> bool:
        return bool(self.tables) and all(t.ok for t in self.tables)

    @property
    def mismatched(self) -> list[str]:
        return [t.table for t in self.tables if not t.ok]

    def raise_for_mismatch(self) -> VerificationReport:
        if not self.ok:
            raise VerificationError(self)
        return self

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "tenant_id": self.tenant_id,
            "method": self.method,
            "ok": self.ok,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "tables": [t.to_dict() for t in self.tables],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> VerificationReport:
        return cls(
            kind=data["kind"],
            tenant_id=data["tenant_id"],
            method=data["method"],
            started_at=data["started_at"],
            finished_at=data["finished_at"],
            tables=tuple(
                TableVerification(
                    table=t["table"],
                    kind=t["kind"],
                    expected=Checksum.parse(t["expected"]),
                    actual=Checksum.parse(t["actual"]),
                    differing=t.get("differing", 0),  # absent in reports written before it existed
                )
                for t in data["tables"]
            ),
        )
