"""A policy run's result: the pack's violations grouped by policy, as a table or JSON, and the exit code."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import asdict, dataclass, field
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

EXIT_OK, EXIT_POLICY = 0, 3
_LEVEL_ORDER = {"mandatory": 0, "remediate": 1, "advisory": 2, "disabled": 3}
_LEVEL_STYLE = {"mandatory": "bold red", "remediate": "red", "advisory": "yellow", "disabled": "dim"}


@dataclass(frozen=True)
class PolicySummary:
    name: str
    description: str
    level: str
    kind: str  # "resource" or "stack"


@dataclass(frozen=True)
class Violation:
    policy: str
    level: str
    urn: str
    type: str
    name: str
    message: str


@dataclass
class PackReport:
    pack: str
    version: str
    project: str
    stack: str
    resources: int
    policies: list[PolicySummary]
    violations: list[Violation]
    logs: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def mandatory(self) -> list[Violation]:
        return [v for v in self.violations if v.level in ("mandatory", "remediate")]

    @property
    def advisory(self) -> list[Violation]:
        return [v for v in self.violations if v.level == "advisory"]

    @property
    def exit_code(self) -> int:
        return EXIT_POLICY if self.mandatory else EXIT_OK

    def by_policy(self) -> dict[str, list[Violation]]:
        groups: dict[str, list[Violation]] = defaultdict(list)
        for v in self.violations:
            groups[v.policy].append(v)
        return dict(sorted(groups.items(), key=lambda kv: (_LEVEL_ORDER.get(kv[1][0].level, 9), kv[0])))

    def to_dict(self) -> dict[str, Any]:
        return {
            "pack": self.pack, "version": self.version, "project": self.project, "stack": self.stack,
            "resources": self.resources, "passed": not self.mandatory,
            "policies": [asdict(p) for p in self.policies],
            "violations": [asdict(v) for v in self.violations],
            "logs": self.logs, "warnings": self.warnings,
        }


def strip_description(message: str, description: str) -> str:
    """The runtime sends "<description>\\n<message>"; the table shows the description once per policy."""
    if description and message.startswith(description):
        rest = message[len(description):].lstrip("\n")
        return rest or message
    return message


def render(report: PackReport, console: Console) -> None:
    title = f"policy pack {report.pack} {report.version} on {report.project}/{report.stack}"
    for w in report.warnings:
        console.print(f"[yellow]warning:[/] {escape(w)}")
    if not report.violations:
        console.print(f"[green]✓[/] {title}: {len(report.policies)} policies passed on {report.resources} resources")
        return
    described = {p.name: p.description for p in report.policies}
    table = Table(title=title)
    table.add_column("policy", max_width=36)
    table.add_column("level", no_wrap=True)
    table.add_column("resource")
    table.add_column("violation")
    for policy, items in report.by_policy().items():
        level = items[0].level
        style = _LEVEL_STYLE.get(level, "")
        head = f"[{style}]{escape(policy)}[/]"
        if described.get(policy):
            head += f"\n[dim]{escape(described[policy])}[/]"
        for i, v in enumerate(sorted(items, key=lambda v: (v.type, v.name, v.message))):
            resource = f"{escape(v.name)}\n[dim]{escape(v.type)}[/]" if v.name else "[dim](stack)[/]"
            table.add_row(head if i == 0 else "", f"[{style}]{level}[/]" if i == 0 else "", resource,
                          escape(v.message))
        table.add_section()
    console.print(table)
    for line in report.logs:
        console.print(f"[dim]pack log: {escape(line)}[/]")
    verdict = "[bold red]failed[/]" if report.mandatory else "[green]passed[/]"
    console.print(f"{verdict}: {len(report.mandatory)} mandatory and {len(report.advisory)} advisory violation(s) "
                  f"in {len(report.by_policy())} of {len(report.policies)} policies, {report.resources} resources")
