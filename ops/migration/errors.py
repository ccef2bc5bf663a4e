"""Exceptions raised by the tenant migration engine and its journal."""

from __future__ import annotations

from typing import TYPE_CHECKING

from stamps.errors import EXIT_REFUSED, OperationFailed

if TYPE_CHECKING:
    from ops.migration.verify import VerificationReport


class MigrationError(OperationFailed):
    """Base class: anything the playbook should treat as "stop, the source is untouched"."""


class DiscoveryError(MigrationError):
    """The source schema cannot be migrated safely (no PK, FK cycle, orphaned child table, ...)."""


class SchemaMismatchError(MigrationError):
    """The target already has a table whose shape is incompatible with the source table."""


class VerificationError(MigrationError):
    """Source and target disagree; carries the full report so the journal can record it."""

    def __init__(self, report: VerificationReport) -> None:
        self.report = report
        bad = [t for t in report.tables if not t.ok]
        detail = "; ".join(t.describe() for t in bad) or "no table compared"
        super().__init__(f"{report.kind} verification failed for tenant {report.tenant_id!r}: {detail}")


class PurgeRefusedError(MigrationError):
    """Purge was asked for without a passing final verification of the same tenant and tables."""

    exit_code = EXIT_REFUSED  # nothing was deleted: a safety check said no


class JournalError(MigrationError):
    """The journal is unreadable, belongs to another tenant, or no longer matches the schema."""


class DamagedJournalError(JournalError):
    """The journal file does not parse or is structurally wrong; ``problem`` says how, without advice
    (what to do differs: a migration can start again, a purge needs the record back)."""

    def __init__(self, path: str, problem: str, advice: str) -> None:
        self.path, self.problem = path, problem
        super().__init__(f"journal {path} is damaged ({problem}); {advice}")


class MigrationLockedError(JournalError):
    """Another process holds the migration lock for this tenant."""

    exit_code = EXIT_REFUSED

    def __init__(self, tenant_id: str, lock_path: str, holder: dict[str, object] | None) -> None:
        self.tenant_id = tenant_id
        self.lock_path = lock_path
        self.holder = holder or {}
        who = (
            f"pid {self.holder.get('pid', '?')} on {self.holder.get('host', '?')}, "
            f"started {self.holder.get('started_at', '?')}"
            if self.holder
            else "an unidentified process"
        )
        super().__init__(f"migration of tenant {tenant_id!r} is already running ({who}); lock file {lock_path}")


class PreflightError(MigrationError):
    """Checked before anything is provisioned or copied: an unreachable database, a missing driver,
    a schema the engine cannot move, a target that is not this migration's to fill."""

    exit_code = EXIT_REFUSED  # nothing was provisioned or copied for this attempt


class IdentityError(PurgeRefusedError):
    """Source and target cannot be proven to be different databases (or the ones the journal recorded)."""


class DatabasesChangedError(JournalError):
    """A resume reaches other databases than the ones its journal recorded (by server identity).

    Continuing would finish a half-copied tenant into a database that never had its first half, or
    read its rows from another source; the journal's copy and verification state is about the
    recorded pair only.
    """

    exit_code = EXIT_REFUSED
