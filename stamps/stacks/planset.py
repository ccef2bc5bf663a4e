"""A fleet's plan set on disk and on screen: one plan file per stack, a table per stack and in total."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.table import Table

from stamps.errors import UsageError, clip
from stamps.offline.plan import Plan, diff_plans
from stamps.offline.planfile import load_plan
from stamps.offline.render import print_diff, resource_count
from stamps.stacks.units import split_stack

SUFFIX = ".plan.json"


def write_set(plans: list[Plan], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for plan in plans:
        plan.write(out / f"{plan.stack}{SUFFIX}")


def load_set(path: str | Path, arg: str) -> list[Plan]:
    """The plans in a directory written by `stamps plan --fleet ... --out DIR`."""
    path = Path(path)
    if not path.is_dir():
        raise UsageError(f"{arg}: {clip(path, 200)} is not a directory of plan files "
                         "(write one with `stamps plan --fleet FLEET --out DIR`)")
    files = sorted(path.glob(f"*{SUFFIX}"))
    if not files:
        raise UsageError(f"{arg}: {clip(path, 200)} holds no *{SUFFIX} files")
    return [load_plan(f, arg) for f in files]


def stack_table(plans: list[Plan], title: str) -> Table:
    table = Table(title=title)
    for col in ("stack", "layer", "resources", "components"):
        table.add_column(col, justify="left" if col in ("stack", "layer") else "right", no_wrap=True)
    custom_total = component_total = 0
    for plan in plans:
        _, unit = split_stack(plan.stack)
        custom = sum(1 for r in plan.resources if r["custom"])
        components = sum(1 for r in plan.resources if not r["custom"])
        custom_total += custom
        component_total += components
        table.add_row(plan.stack, unit.layer if unit else "(single)", str(custom), str(components))
    largest = max((sum(1 for r in p.resources if r["custom"]), p.stack) for p in plans)
    table.add_row(f"[bold]{len(plans)} stacks[/]", "", f"[bold]{custom_total}[/]", f"[bold]{component_total}[/]")
    table.caption = (f"{custom_total} resources in {len(plans)} stacks (+ {len(plans)} stack resources); "
                     f"largest: {largest[1]} with {largest[0]}")
    return table


def print_set_diff(old: list[Plan], new: list[Plan], console: Console, against: str) -> None:
    """Per stack, what `pulumi up -s <stack>` would do; stacks only in the old set are listed to remove."""
    earlier = {p.stack: p for p in old}
    for plan in new:
        before = earlier.get(plan.stack, Plan(plan.project, plan.stack, [], {}))
        diff = diff_plans(before, plan)
        if diff.is_empty:
            continue
        console.rule(f"[bold]{plan.stack}[/]")
        print_diff(diff, console, earlier=before, plan=plan, against=f"{against}/{plan.stack}{SUFFIX}")
    gone = sorted(set(earlier) - {p.stack for p in new})
    for stack in gone:
        console.print(f"[red]- stack {stack}[/]: no longer part of the fleet ({resource_count(earlier[stack])} "
                      "resources to destroy with `pulumi destroy`, then `pulumi stack rm`)")
    unchanged = sum(1 for p in new if diff_plans(earlier.get(p.stack, Plan(p.project, p.stack, [], {})), p).is_empty)
    console.print(f"{unchanged} of {len(new)} stacks unchanged")
