"""Minimal, atomic, comment-preserving edits of `Pulumi.<stack>.yaml`: the only way playbooks change config.

The stack file lives in git and is reviewed as a diff, so every edit keeps comments, key order, flow style
(`{min: 3, max: 10}`), quoting and `secure:` entries, and records a change set a playbook can show.

One module per concern: `paths` (the path language: `stamps:cells[name=banking].replicas.min`,
`stamps:tenants[id=startup]`, `stamps:regions[0].drRegion`, `azure-native:location`), `values` (plain values to
style-keeping nodes, secrets, change records, redacted diffs), `splice` (line-level inserts and removals that keep
comments in place), `file` (the `StackConfigFile` edit API, atomic saves), `lock` (one playbook per stack).
"""

from __future__ import annotations

from ops.stackconfig.errors import ConfigEditError, PathNotFoundError
from ops.stackconfig.file import StackConfigFile, apply_changes, stack_file_path
from ops.stackconfig.lock import LockInfo, StackLockedError, lock_path, stack_lock
from ops.stackconfig.paths import KEY_FIELDS
from ops.stackconfig.values import MISSING, Change, ChangeSet, Secret, redact, unified_diff

__all__ = [
    "KEY_FIELDS",
    "MISSING",
    "Change",
    "ChangeSet",
    "ConfigEditError",
    "LockInfo",
    "PathNotFoundError",
    "Secret",
    "StackConfigFile",
    "StackLockedError",
    "apply_changes",
    "lock_path",
    "redact",
    "stack_file_path",
    "stack_lock",
    "unified_diff",
]
