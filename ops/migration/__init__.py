"""Shared → dedicated tenant data migration: discovery, copy, verification, purge and journal.

The playbook's entry points::

    mover = TenantDataMover(shared_url, dedicated_url, "acme")  # batch size: the engine's default
    runner = open_migration(".stamps/migrations/acme.json", mover, PlaybookHooks(...))
    with runner.journal:
        runner.run()                       # provision → bulk_copy → verify → freeze → delta_copy
                                           # → verify_final → switch → unfreeze → health_check → done
    # later, separately and deliberately:
    mover.purge_source(runner.journal.verification(Step.VERIFY_FINAL))
"""

from ops.migration.checksum import CANONICAL, PG_MD5, SQLITE_EXACT, Checksum
from ops.migration.copy import DEFAULT_BATCH_SIZE, FAST_BATCH_SIZE, DeltaState, TableCopyState, TenantDataMover
from ops.migration.db import as_engine
from ops.migration.discovery import MigrationPlan, TablePlan, discover, ensure_target_schema
from ops.migration.errors import (
    DamagedJournalError,
    DatabasesChangedError,
    DiscoveryError,
    IdentityError,
    JournalError,
    MigrationError,
    MigrationLockedError,
    PreflightError,
    PurgeRefusedError,
    SchemaMismatchError,
    VerificationError,
)
from ops.migration.journal import (
    STEPS,
    MigrationJournal,
    MigrationLock,
    MigrationRunner,
    PlaybookHooks,
    Step,
    StepContext,
    StepStatus,
    open_migration,
)
from ops.migration.progress import BatchEvent, ProgressDisplay
from ops.migration.verify import TableVerification, VerificationReport

__all__ = [
    "CANONICAL",
    "DEFAULT_BATCH_SIZE",
    "FAST_BATCH_SIZE",
    "PG_MD5",
    "SQLITE_EXACT",
    "STEPS",
    "BatchEvent",
    "Checksum",
    "DamagedJournalError",
    "DatabasesChangedError",
    "DeltaState",
    "DiscoveryError",
    "IdentityError",
    "JournalError",
    "MigrationError",
    "MigrationJournal",
    "MigrationLock",
    "MigrationLockedError",
    "MigrationPlan",
    "MigrationRunner",
    "PlaybookHooks",
    "PreflightError",
    "ProgressDisplay",
    "PurgeRefusedError",
    "SchemaMismatchError",
    "Step",
    "StepContext",
    "StepStatus",
    "TableCopyState",
    "TablePlan",
    "TableVerification",
    "TenantDataMover",
    "VerificationError",
    "VerificationReport",
    "as_engine",
    "discover",
    "ensure_target_schema",
    "open_migration",
]
