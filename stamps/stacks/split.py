"""Moving a single-stack fleet into its stack set: the `pulumi state move` sequence, proven offline first.

`state move` rewrites only the stack (and project) part of each URN and keeps its type chain
(pkg/cmd/pulumi/state/state_move.go: `renameStackAndProject`); a resource whose parent stays behind is
re-parented to the destination's root stack. The unit stacks declare every resource with the type chain
and name it has in the single stack (stamps/stacks/compose.py), so after the move each unit's program
finds its resources under the same URNs: nothing is created, replaced or deleted in Azure. Only custom
resources move; components hold no cloud state and each unit stack declares its own.

`verify` proves it on the two plans: every custom resource of the single stack lands in exactly one unit
stack, with the same inputs, and no unit stack declares a custom resource the single stack does not have.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field

from stamps.offline.plan import Plan, changed_paths, type_chain


@dataclass
class Move:
    dest: str
    urns: list[str]  # in the source stack


@dataclass
class SplitCheck:
    moves: list[Move]
    missing: list[str] = field(default_factory=list)  # in the single stack, in no unit stack: would be deleted
    extra: list[str] = field(default_factory=list)  # in a unit stack, not in the single stack: would be created
    changed: list[tuple[str, list[str]]] = field(default_factory=list)  # same resource, other inputs: an update
    duplicated: list[str] = field(default_factory=list)  # declared by two unit stacks

    @property
    def ok(self) -> bool:
        return not (self.missing or self.extra or self.changed or self.duplicated)

    @property
    def moved(self) -> int:
        return sum(len(m.urns) for m in self.moves)


def verify(single: Plan, units: list[Plan]) -> SplitCheck:
    """Map every custom resource of `single` to the unit stack that declares it; report what does not map."""
    old = {type_chain(r["urn"]): r for r in single.resources if r["custom"]}
    owner: dict[str, tuple[Plan, dict]] = {}  # type: ignore[type-arg]
    check = SplitCheck(moves=[])
    for plan in units:
        move = Move(plan.stack, [])
        for r in plan.resources:
            if not r["custom"]:
                continue
            chain = type_chain(r["urn"])
            if chain in owner:
                check.duplicated.append(chain)
                continue
            owner[chain] = (plan, r)
            before = old.get(chain)
            if before is None:
                check.extra.append(f"{plan.stack}: {chain}")
                continue
            paths = changed_paths(before["inputs"], r["inputs"])
            if paths:
                check.changed.append((f"{plan.stack}: {chain}", paths))
            move.urns.append(before["urn"])
        if move.urns:
            check.moves.append(move)
    check.missing = sorted(c for c in old if c not in owner)
    return check


def commands(check: SplitCheck, source: str, existing: set[str] | None = None) -> list[list[str]]:
    """The CLI steps, in deployment order: create each unit stack, move its resources, preview it."""
    steps: list[list[str]] = []
    for move in check.moves:
        if move.dest not in (existing or set()):
            steps.append(["pulumi", "stack", "init", move.dest, "--no-select"])
        steps.append(["pulumi", "state", "move", "--source", source, "--dest", move.dest, "--yes", *move.urns])
    for move in check.moves:
        # Expect only the unit's components to create: no cloud resource created, updated or deleted.
        steps.append(["pulumi", "preview", "--stack", move.dest, "--diff"])
    return steps


def script(steps: list[list[str]]) -> str:
    return "\n".join(shlex.join(s) for s in steps)
