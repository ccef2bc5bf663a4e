"""Human views of a plan, shaped like `pulumi preview`: a tree with +/~/-/+- marks, old → new values of the
changed inputs (secrets masked), an `Outputs:` block, and one resource count.

The count is the engine's: every registered resource, components and the `pulumi:pulumi:Stack` included, so
prod's 267 custom resources in 24 components count as 292 everywhere (tree, summary, diff, ops playbooks).
Replacements: azure-native replaces a resource whose ARM id changes, i.e. when its `location`,
`resourceGroupName` or an identifying `*Name` input changes (`serverName`, `accountName`, …); offline that
rule marks an update `+-` replace, as the provider's `replaceOnChanges` would.
"""

from __future__ import annotations

import json
import re
from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.tree import Tree

from stamps.offline.plan import SECRET, Plan, PlanDiff, changed_paths
from stamps.terminal import make_console

STACK_TYPE = "pulumi:pulumi:Stack"
_MARK = {"create": ("+", "green"), "update": ("~", "yellow"), "delete": ("-", "red"), "replace": ("+-", "magenta")}
_REPLACE_KEYS = {"location", "resourceGroupName"}
_NOT_IDENTITY = {"displayName", "hostName", "dnsName", "originHostHeader", "skuName", "tierName"}
_SECRETISH = re.compile(r"(?i)(password|secret|connectionstring|accesskey|primarykey|secondarykey|token|sas)")
VALUE_WIDTH = 70


def resource_count(plan: Plan) -> int:
    """Resources as the engine counts them: every registration plus the stack itself."""
    return len(plan.resources) + 1


def tree(plan: Plan) -> Tree:
    root = Tree(f"[bold]+ {STACK_TYPE}[/] {plan.project}-{plan.stack}")
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
            child = node.add(f"[green]+[/] [{style}]{r['type']}[/] {escape(r['name'])}")
            add(child, r["urn"])

    add(root, None)
    return root


def summary(plan: Plan) -> Table:
    custom = sum(1 for r in plan.resources if r["custom"])
    components = len(plan.resources) - custom
    total = resource_count(plan)
    table = Table(title=f"{plan.project}/{plan.stack}: resources to create",
                  caption=f"{total} resources: {custom} resources in {components} components, and the stack")
    table.add_column("type", no_wrap=True, min_width=48)
    table.add_column("count", justify="right")
    counts = Counter(r["type"] for r in plan.resources)
    counts[STACK_TYPE] = 1
    for typ, n in sorted(counts.items(), key=lambda kv: (not kv[0].startswith(("stamps:", "pulumi:")), kv[0])):
        table.add_row(typ, str(n))
    table.add_row("[bold]total[/]", f"[bold]{total}[/]")
    return table


# -- the diff ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Step:
    op: str  # create | update | replace | delete
    resource: dict[str, Any]
    paths: tuple[str, ...] = ()


def _key(r: dict[str, Any]) -> tuple[str, str]:
    return (r["type"], r["name"])


def replaces(paths: list[str] | tuple[str, ...]) -> bool:
    for p in paths:
        top = re.split(r"[.\[]", p, maxsplit=1)[0]
        if top in _REPLACE_KEYS or (top.endswith("Name") and top not in _NOT_IDENTITY):
            return True
    return False


def steps(earlier: Plan, plan: Plan, diff: PlanDiff | None = None) -> list[Step]:
    """Every resource that changes, components included (a new CELL is a new component too)."""
    a = {_key(r): r for r in earlier.resources}
    b = {_key(r): r for r in plan.resources}
    out = [Step("create", b[k]) for k in sorted(b.keys() - a.keys())]
    for k in sorted(a.keys() & b.keys()):
        if not b[k]["custom"]:
            continue
        paths = tuple(changed_paths(a[k]["inputs"], b[k]["inputs"]))
        if paths:
            out.append(Step("replace" if replaces(paths) else "update", b[k], paths))
    out += [Step("delete", a[k]) for k in sorted(a.keys() - b.keys())]
    return out


def _value_at(inputs: Any, path: str) -> Any:
    node = inputs
    for part in re.findall(r"[^.\[\]]+|\[\d+\]", path):
        if part.startswith("[") and isinstance(node, list):
            i = int(part[1:-1])
            node = node[i] if i < len(node) else _ABSENT
        elif isinstance(node, dict):
            node = node.get(part, _ABSENT)
        else:
            return _ABSENT
        if node is _ABSENT:
            return _ABSENT
    return node


_ABSENT = object()


def show_value(value: Any, path: str = "") -> str:
    if value is _ABSENT:
        return "(absent)"
    if value == SECRET or (_SECRETISH.search(path.rsplit(".", 1)[-1]) and value not in (None, "", [], {})):
        return "[secret]"
    text = json.dumps(_ints(value), sort_keys=True, default=str)
    return text if len(text) <= VALUE_WIDTH else text[: VALUE_WIDTH - 12] + f"… ({len(text)} ch)"


def _ints(value: Any) -> Any:
    """Numbers come back from the wire as floats; show `3`, not `3.0`, as the CLI does."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: _ints(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_ints(v) for v in value]
    return value


def _diff_tree(earlier: Plan, plan: Plan, changes: list[Step]) -> Tree:
    by_urn = {r["urn"]: r for r in [*earlier.resources, *plan.resources]}
    marked = {s.resource["urn"]: s for s in changes}
    # Show each changed resource under its component ancestors, as pulumi does.
    shown: set[str] = set()
    for s in changes:
        urn: str | None = s.resource["urn"]
        while urn and urn in by_urn and urn not in shown:
            shown.add(urn)
            urn = by_urn[urn].get("parent")
    children: dict[str | None, list[dict]] = defaultdict(list)
    for urn in shown:
        r = by_urn[urn]
        children[r["parent"] if r.get("parent") in shown else None].append(r)
    any_change = bool(changes)
    root = Tree(f"{'[yellow]~[/]' if any_change else ' '} [bold]{STACK_TYPE}[/] {plan.project}-{plan.stack}")

    def add(node: Tree, parent: str | None) -> None:
        for r in sorted(children.get(parent, []), key=lambda r: (r["custom"], r["type"], r["name"])):
            step = marked.get(r["urn"])
            if step is None:
                label = f"  [bold magenta]{r['type']}[/] {escape(r['name'])}"
            else:
                mark, colour = _MARK[step.op]
                diff = f" [dim]\\[diff: {escape(', '.join('~' + p for p in step.paths[:4]))}" \
                       f"{f' +{len(step.paths) - 4} more' if len(step.paths) > 4 else ''}][/]" if step.paths else ""
                label = f"[{colour}]{mark}[/] [{colour}]{r['type']}[/] {escape(r['name'])} [{colour}]{step.op}[/]{diff}"
            add(node.add(label), r["urn"])

    add(root, None)
    return root


def print_diff(diff: PlanDiff, console: Console | None = None, *, earlier: Plan | None = None,
               plan: Plan | None = None, against: str = "") -> None:
    """`pulumi preview` of `plan` against `earlier`: header, marked tree, old → new values, Outputs, Resources."""
    console = console or make_console()
    if earlier is None or plan is None:
        # Without both plans only the custom resources' diff is known: the old table view.
        console.print(diff_table(diff))
        console.print(f"{len(diff.creates)} to create, {len(diff.updates)} to update, {len(diff.deletes)} to delete")
        return
    changes = steps(earlier, plan)
    console.print(f"[bold]Previewing update[/] ({plan.project}/{plan.stack})"
                  + (f" against {escape(against)}" if against else "") + ":")
    console.print()
    console.print(_diff_tree(earlier, plan, changes))
    details = [s for s in changes if s.op in ("update", "replace")]
    if details:
        console.print()
        console.print("[bold]Changes:[/]")
        old = {_key(r): r for r in earlier.resources}
        for s in details:
            mark, colour = _MARK[s.op]
            console.print(f"  [{colour}]{mark} {s.resource['type']}[/] {escape(s.resource['name'])}: ({s.op})")
            before = old[_key(s.resource)]["inputs"]
            for p in s.paths[:20]:
                was, now = _value_at(before, p), _value_at(s.resource["inputs"], p)
                console.print(f"      [{colour}]~ {escape(p)}[/]: {escape(show_value(was, p))} => "
                              f"{escape(show_value(now, p))}", soft_wrap=True)
            if len(s.paths) > 20:
                console.print(f"      … {len(s.paths) - 20} more changed inputs")
    _outputs(console, earlier.outputs, plan.outputs)
    counts = Counter(s.op for s in changes)
    total = resource_count(plan)
    unchanged = total - counts["create"] - counts["update"] - counts["replace"]
    console.print()
    console.print("[bold]Resources:[/]")
    for op in ("create", "update", "replace", "delete"):
        if counts[op]:
            mark, colour = _MARK[op]
            console.print(f"    [{colour}]{mark:<2}{counts[op]} to {op}[/]")
    n = sum(counts.values())
    console.print(f"    {n} change{'s' if n != 1 else ''}. {unchanged} unchanged" if n else
                  f"    {unchanged} unchanged (no changes: the plan matches the earlier one)")


def _outputs(console: Console, old: dict[str, Any], new: dict[str, Any]) -> None:
    rows = []
    for k in sorted(set(old) | set(new)):
        if k not in old:
            rows.append(f"  [green]+ {escape(k)}[/]: {escape(show_value(new[k], k))}")
        elif k not in new:
            rows.append(f"  [red]- {escape(k)}[/]: {escape(show_value(old[k], k))}")
        else:
            for p in changed_paths(old[k], new[k]):
                full = f"{k}.{p}" if p != "(root)" else k
                where = p if p != "(root)" else ""
                was = _value_at(old[k], where) if where else old[k]
                now = _value_at(new[k], where) if where else new[k]
                rows.append(f"  [yellow]~ {escape(full)}[/]: {escape(show_value(was, full))} => "
                            f"{escape(show_value(now, full))}")
    console.print()
    console.print("[bold]Outputs:[/]")
    for row in rows:
        console.print(row, soft_wrap=True)
    unchanged = sum(1 for k in set(old) & set(new) if not changed_paths(old[k], new[k]))
    console.print(f"    ({unchanged} unchanged)" if rows else f"    (all {unchanged} unchanged)")


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
