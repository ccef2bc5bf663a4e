"""`stamps routes`: the offline proof that traffic reaches every tenant's own CELL, only through API Management.

Reads only a plan (the planned resources' inputs and the DNS records it prints), never the config: it checks
what would be deployed. Exit 4 when a tenant is unreachable or lands elsewhere than its CELL's serving
instance, a probe hits an empty pool or misses what it decides for, or a public entry reaches a CELL without
API Management.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from stamps.cli import UsageError
from stamps.offline import Plan, plan_stack
from stamps.routes import RouteReport, check_routes
from stamps.terminal import make_console

EXIT_ROUTES = 4
TENANT_ROWS = 40


def failed_over_file(config_file: Path, regions: list[str]) -> Path:
    """A copy of the stack file with `servingFrom: dr` on the given primary regions (what failover writes)."""
    doc = yaml.safe_load(config_file.read_text()) or {}
    cfg = doc.get("config") or {}
    known = {str(r.get("name")): r for r in cfg.get("stamps:regions") or [] if isinstance(r, dict)}
    for region in regions:
        r = known.get(region)
        if r is None or r.get("role") != "primary":
            primaries = sorted(n for n, v in known.items() if v.get("role") == "primary")
            raise UsageError(f"--failed-over: {region!r} is not a primary region of {config_file.name}; "
                             f"valid: {', '.join(primaries)}")
        r["servingFrom"] = "dr"
    tmp = Path(tempfile.mkdtemp(prefix="stamps-routes-")) / config_file.name
    tmp.write_text(yaml.safe_dump(doc, sort_keys=False))
    return tmp


def primaries(config_file: Path) -> list[str]:
    doc = yaml.safe_load(config_file.read_text()) or {}
    return [r["name"] for r in (doc.get("config") or {}).get("stamps:regions") or []
            if isinstance(r, dict) and r.get("role") == "primary"]


def render(report: RouteReport, console: Console, title: str, all_rows: bool = False) -> None:
    state = f"failed over: {', '.join(report.failed_over)}" if report.failed_over else "every primary serving"
    table = Table(title=f"{title} — tenants ({state})")
    for col in ("tenant", "entry", "API Management", "region", "CELL instance", "verdict"):
        table.add_column(col, no_wrap=col != "verdict")
    rows = report.tenants if all_rows else report.tenants[:TENANT_ROWS]
    for t in rows:
        colour = "green" if t.verdict == "ok" else "yellow" if t.verdict.startswith("stranded") else "red"
        table.add_row(t.tenant, t.entry, t.apim, t.region, t.instance or "—", f"[{colour}]{escape(t.verdict)}[/]")
    console.print(table)
    if len(rows) < len(report.tenants):
        ok = sum(t.verdict == "ok" for t in report.tenants)
        console.print(f"  … {len(report.tenants) - len(rows)} more tenants ({ok} of {len(report.tenants)} ok); "
                      "--all lists every one")
    entries = Table(title="public entry points")
    for col in ("kind", "name", "reaches", "API Management in the way"):
        entries.add_column(col)
    for e in report.entries:
        entries.add_row(e.kind, e.name, escape(e.reaches), "[green]yes[/]" if e.through_apim else "[red]NO[/]")
    console.print(entries)
    for f in report.findings:
        mark = "[red]✗[/]" if f.severity == "error" else "[yellow]![/]"
        console.print(f"{mark} {f.code}: {escape(f.message)}", soft_wrap=True)
    verdict = "[green]routes ok[/]" if report.ok else f"[red]{len(report.errors)} routing error(s)[/]"
    console.print(f"{verdict}: {sum(t.verdict == 'ok' for t in report.tenants)} of {len(report.tenants)} tenants "
                  f"reach their CELL's serving instance\n")


def _report(plan: Plan, failed_over: list[str]) -> RouteReport:
    return check_routes(plan.resources, plan.outputs, failed_over)


def run(args: argparse.Namespace) -> int:
    console = make_console()
    project_dir = Path(args.project_dir)
    failed = list(args.failed_over or [])
    cases: list[tuple[str, Plan, list[str]]] = []
    if args.plan:
        path = Path(args.plan)
        try:
            plan = Plan.load(path)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise UsageError(f"--plan: {path} is not a plan written by `stamps plan --out` ({exc})") from None
        if args.each_failover:
            raise UsageError("--each-failover plans the stack itself; it cannot be used with --plan")
        cases.append((str(path), plan, failed))
    else:
        stack = args.stack
        config_file = Path(args.config_file) if args.config_file else project_dir / f"Pulumi.{stack}.yaml"
        if not config_file.is_file():
            raise UsageError(f"--config-file: {config_file} does not exist")
        states = [failed] + ([[p] for p in primaries(config_file)] if args.each_failover else [])
        for state in states:
            cfg = failed_over_file(config_file, state) if state else config_file
            if args.fleet:
                # The fleet's stack set, merged: a request crosses the routing, api, edge and CELL stacks.
                from stamps.offline.plan import merge_plans
                from stamps.stacks.fleet import plan_fleet

                plan = merge_plans(plan_fleet(project_dir, stack, cfg), stack)
                cases.append((f"{stack} stack set ({config_file.name})", plan, state))
            else:
                cases.append((f"{stack} ({config_file.name})", plan_stack(project_dir, stack, cfg), state))
    reports = [(title, _report(plan, state)) for title, plan, state in cases]
    if args.json:
        out: Any = [{"plan": title, **r.to_dict()} for title, r in reports]
        print(json.dumps(out[0] if len(out) == 1 else out, indent=2))
    else:
        for title, r in reports:
            render(r, console, title, all_rows=args.all)
    return 0 if all(r.ok for _, r in reports) else EXIT_ROUTES


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("routes", help="walk every tenant's request, probe and public entry through a plan "
                                      "(exit 4 on a routing error)", description=__doc__)
    p.add_argument("--plan", help="a plan JSON from `stamps plan --out` (default: plan the stack now)")
    p.add_argument("--stack", default="prod", help="stack to plan when no --plan is given (default: prod)")
    p.add_argument("--config-file", help="stack config file (default: Pulumi.<stack>.yaml)")
    p.add_argument("--project-dir", default=".", help="directory with Pulumi.yaml (default: .)")
    p.add_argument("--fleet", action="store_true",
                   help="plan the stack's fleet as its unit stacks (stamps plan --fleet) and walk them together")
    p.add_argument("--failed-over", action="append", metavar="REGION",
                   help="a primary region serving from its DR region (repeatable); without --plan the stack is "
                        "planned in that state")
    p.add_argument("--each-failover", action="store_true",
                   help="also plan and check every single-region failover state")
    p.add_argument("--json", action="store_true", help="print the report(s) as JSON")
    p.add_argument("--all", action="store_true", help=f"list every tenant (default: the first {TENANT_ROWS})")
    p.set_defaults(func=run)
