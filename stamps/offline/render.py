"""Human views of a plan: a `pulumi preview`-like tree, a per-type summary table and a diff."""

from __future__ import annotations

from collections import Counter, defaultdict

from rich.console import Console
from rich.table import Table
from rich.tree import Tree

from stamps.offline.plan import Plan, PlanDiff


def tree(plan: Plan) -> Tree:
    root = Tree(f"[bold]+ pulumi:pulumi:Stack[/] {plan.project}-{plan.stack}")
    children: dict[str | None, list[dict]] = defaultdict(list)
    urns = {r["urn"] for r in plan.resources}
    for r in plan.resources:
        children[r["parent"] if r["parent"] in urns else None].append(r)

    def add(node: Tree, parent: str | None) -> None:
        # Components first, then resources grouped by type: registration order depends on when each
        # resource's inputs resolved, which would shuffle the tree from run to run.
        kids = sorted(children.get(parent, []), key=lambda r: (r["custom"], r["type"], r["name"]))
        for r in kids:
            style = "cyan" if r["custom"] else "bold magenta"
            child = node.add(f"[green]+[/] [{style}]{r['type']}[/] {r['name']}")
            add(child, r["urn"])

    add(root, None)
    return root


def summary(plan: Plan) -> Table:
    custom = sum(1 for r in plan.resources if r["custom"])
    table = Table(title=f"{plan.project}/{plan.stack}: resources to create",
                  caption=f"{custom} resources in {len(plan.resources) - custom} components")
    table.add_column("type", no_wrap=True, min_width=48)
    table.add_column("count", justify="right")
    counts = Counter(r["type"] for r in plan.resources)
    for typ, n in sorted(counts.items(), key=lambda kv: (not kv[0].startswith("stamps:"), kv[0])):
        table.add_row(typ, str(n))
    table.add_row("[bold]total[/]", f"[bold]{len(plan.resources)}[/]")
    return table


def diff_table(diff: PlanDiff) -> Table:
    table = Table(title="changes against the earlier plan")
    table.add_column("op")
    table.add_column("type")
    table.add_column("name")
    table.add_column("changed inputs")
    for typ, name in diff.creates:
        table.add_row("[green]+ create[/]", typ, name, "")
    for u in diff.updates:
        shown = ", ".join(u.paths[:6]) + (f" (+{len(u.paths) - 6} more)" if len(u.paths) > 6 else "")
        table.add_row("[yellow]~ update[/]", u.type, u.name, shown)
    for typ, name in diff.deletes:
        table.add_row("[red]- delete[/]", typ, name, "")
    return table


def print_diff(diff: PlanDiff, console: Console | None = None) -> None:
    console = console or Console()
    if diff.is_empty:
        console.print("no changes: the plan matches the earlier one")
        return
    console.print(diff_table(diff))
    console.print(f"{len(diff.creates)} to create, {len(diff.updates)} to update, {len(diff.deletes)} to delete")
