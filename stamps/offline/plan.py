"""The offline plan: the resource graph `pulumi preview` would show, as data, JSON and a diff."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stamps.atomicfile import write_atomic

SECRET = "[secret]"
UNKNOWN = "[unknown]"


@dataclass
class Plan:
    project: str
    stack: str
    resources: list[dict[str, Any]]
    outputs: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"project": self.project, "stack": self.stack, "resources": self.resources, "outputs": self.outputs}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Plan:
        return cls(data["project"], data["stack"], list(data["resources"]), dict(data.get("outputs") or {}))

    @classmethod
    def load(cls, path: Path) -> Plan:
        return cls.from_dict(json.loads(Path(path).read_text()))

    def write(self, path: Path) -> None:
        """Atomic: a reader never sees half a plan, and a failed run leaves the old file intact."""
        write_atomic(path, json.dumps(self.to_dict(), indent=2) + "\n")

    # --- queries used by tests, policy and ops -------------------------------------------------------
    def by_type(self, typ: str) -> list[dict[str, Any]]:
        return [r for r in self.resources if r["type"] == typ]

    def get(self, typ: str, name: str) -> dict[str, Any]:
        for r in self.resources:
            if r["type"] == typ and r["name"] == name:
                return r
        raise KeyError(f"no {typ} named {name!r} in the plan")

    def custom(self) -> list[dict[str, Any]]:
        return [r for r in self.resources if r["custom"]]


def merge_plans(plans: list[Plan], stack: str) -> Plan:
    """A fleet's stack set as one plan (every stack's resources, outputs merged): what checks over the whole
    fleet read, such as `stamps routes`, whose paths cross stacks."""
    if not plans:
        raise ValueError("no plans to merge")
    outputs: dict[str, Any] = {}
    for p in plans:
        outputs.update(p.outputs)
    return Plan(plans[0].project, stack, [r for p in plans for r in p.resources], outputs)


def type_chain(urn: str) -> str:
    """`urn:pulumi:<stack>::<project>::<types>::<name>` → `<types>::<name>`: a resource's identity in every
    stack layout of a fleet (`pulumi state move` rewrites the stack part only)."""
    return urn.split("::", 2)[2]


def key(resource: dict[str, Any]) -> tuple[str, str]:
    """Resources are matched across plans by (type, name), as URNs encode the parent chain."""
    return (resource["type"], resource["name"])


def changed_paths(old: Any, new: Any, prefix: str = "") -> list[str]:
    """Input paths whose values differ, in `a.b[2].c` form."""
    if isinstance(old, dict) and isinstance(new, dict):
        out: list[str] = []
        for k in sorted(set(old) | set(new)):
            p = f"{prefix}.{k}" if prefix else k
            if k not in old or k not in new:
                out.append(p)
            else:
                out += changed_paths(old[k], new[k], p)
        return out
    if isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        out = []
        for i, (a, b) in enumerate(zip(old, new, strict=True)):
            out += changed_paths(a, b, f"{prefix}[{i}]")
        return out
    return [] if old == new else [prefix or "(root)"]


@dataclass
class Update:
    type: str
    name: str
    paths: list[str]


@dataclass
class PlanDiff:
    creates: list[tuple[str, str]]
    updates: list[Update]
    deletes: list[tuple[str, str]]

    @property
    def is_empty(self) -> bool:
        return not (self.creates or self.updates or self.deletes)

    @property
    def changed(self) -> int:
        return len(self.creates) + len(self.updates) + len(self.deletes)

    def to_dict(self) -> dict[str, Any]:
        return {
            "creates": [{"type": t, "name": n} for t, n in self.creates],
            "updates": [{"type": u.type, "name": u.name, "paths": u.paths} for u in self.updates],
            "deletes": [{"type": t, "name": n} for t, n in self.deletes],
        }


def diff_plans(old: Plan, new: Plan) -> PlanDiff:
    """What `pulumi up` would do to go from `old` to `new`: custom resources only, as components hold no state."""
    a = {key(r): r for r in old.resources if r["custom"]}
    b = {key(r): r for r in new.resources if r["custom"]}
    creates = sorted(k for k in b if k not in a)
    deletes = sorted(k for k in a if k not in b)
    updates = []
    for k in sorted(set(a) & set(b)):
        paths = changed_paths(a[k]["inputs"], b[k]["inputs"])
        if paths:
            updates.append(Update(k[0], k[1], paths))
    return PlanDiff(creates, updates, deletes)
