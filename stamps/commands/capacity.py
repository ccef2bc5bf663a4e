"""`stamps capacity`: each CELL's tenants, capacity and headroom, and when a region runs out.

Reads the stack config directly (no plan needed): validation and placement are the program's own, so the
numbers match what `stamps plan` would deploy. Warnings go to stderr and the exit code stays 0, so a CI
job can surface them without failing; `--json` prints the report for machines on stdout.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from rich.markup import escape
from rich.table import Table

from stamps.capacity import HORIZONS, CapacityReport, capacity_report
from stamps.config.loader import decode_stack_values, load_environment
from stamps.config.stackfile import bare_stack, read_stack_config, stack_config_path
from stamps.environment import Environment
from stamps.errors import UsageError
from stamps.offline.engine import read_project
from stamps.terminal import make_console


def load_stack_environment(project_dir: Path, stack: str, config_file: Path | None = None) -> Environment:
    """The Environment `pulumi up -s <stack>` would build, from the stack file alone."""
    project = read_project(project_dir)
    stack = bare_stack(stack)
    raw, secret_keys = read_stack_config(stack_config_path(project_dir, stack, config_file))
    # Secrets are never needed for capacity and stay out of the typed model, as in the program.
    values = decode_stack_values(raw, skip=secret_keys)
    return load_environment(project, stack, values)


def cells_table(report: CapacityReport) -> Table:
    table = Table(title=f"{report.stack}: CELL capacity")
    for col, justify in (("CELL", "left"), ("region", "left"), ("model", "left"), ("compliance", "left"),
                         ("tenants", "left"), ("used", "right"), ("headroom", "right"), ("fill", "right")):
        # Fold rather than truncate: a cut-off CELL or tenant name is worse than a wrapped one.
        table.add_column(col, justify=justify, overflow="fold")  # type: ignore[arg-type]
    for c in report.cells:
        name = c.cell + ("" if c.configured else " [dim](new)[/]") + (" [red](isolated)[/]" if c.isolated else "")
        fill_style = "red" if c.headroom == 0 else "yellow" if c.fill_percent >= 80 else "green"
        table.add_row(
            name, c.region + (f" → {c.standby_region}" if c.standby_region else ""), c.model,
            ", ".join(c.compliance) or "-", ", ".join(c.tenants) or "-", f"{c.used}/{c.capacity}",
            str(c.headroom), f"[{fill_style}]{c.fill_percent:g}%[/]",
        )
    return table


def regions_table(report: CapacityReport) -> Table:
    table = Table(title=f"{report.stack}: shared capacity under the growth projection (stamps:growth)")
    table.add_column("region")
    table.add_column("shared tenants", justify="right")
    table.add_column("capacity", justify="right")
    table.add_column("headroom", justify="right")
    for p in report.regions[0].projections if report.regions else ():
        table.add_column(f"{p.horizon} (+{p.growth_percent:g}%)", justify="right")
    table.add_column("dedicated CELLs (now → " + " → ".join(h for h, _ in HORIZONS) + ")", justify="right")
    for r in report.regions:
        cols = [
            f"[red]{p.shared_tenants} (short {p.shortfall})[/]" if p.runs_out else str(p.shared_tenants)
            for p in r.projections
        ]
        dedicated = " → ".join([str(r.dedicated_tenants)] + [str(p.dedicated_tenants) for p in r.projections])
        table.add_row(r.region, str(r.shared_tenants), str(r.shared_capacity), str(r.headroom), *cols, dedicated)
    return table


def run(args: argparse.Namespace) -> int:
    project_dir = Path(args.project_dir)
    if not (project_dir / "Pulumi.yaml").is_file():
        raise UsageError(f"--project-dir: {project_dir} has no Pulumi.yaml")
    env = load_stack_environment(project_dir, args.stack, Path(args.config_file) if args.config_file else None)
    report = capacity_report(env)
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        out = make_console()
        out.print(cells_table(report))
        out.print(regions_table(report))
    err = make_console(stderr=True)
    for w in report.warnings:
        # Warnings quote key paths like `stamps:tenants[2]`: escape them so rich doesn't read markup.
        err.print(f"[yellow]warning:[/] {escape(w)}", highlight=False)
    return 0


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("capacity", help="CELL tenants, capacity and headroom; warns before a region runs out")
    p.add_argument("--stack", default="prod", help="stack name (default: prod)")
    p.add_argument("--config-file", help="stack config file (default: Pulumi.<stack>.yaml)")
    p.add_argument("--project-dir", default=".", help="directory with Pulumi.yaml (default: .)")
    p.add_argument("--json", action="store_true", help="print the report as JSON (warnings included)")
    p.set_defaults(func=run)
