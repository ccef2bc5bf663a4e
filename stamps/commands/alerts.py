"""`stamps alerts`: the alert catalog, or a stack's effective rules (config overrides and KPIs applied)."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

from rich.table import Table

from stamps.config.regions import region_code
from stamps.config.stackfile import bare_stack, stack_config_path
from stamps.environment import Environment
from stamps.monitoring.catalog import CATALOG, SCOPES, AlertRule, EffectiveRule, priority, resolve, sql_variant
from stamps.monitoring.topology import environment_from_stack
from stamps.terminal import make_console

_OPS = {"GreaterThan": ">", "GreaterThanOrEqual": ">=", "LessThan": "<", "LessThanOrEqual": "<="}


@dataclass(frozen=True)
class Deployment:
    """Where one rule is deployed in a stack and on which targets it is switched on."""

    effective: EffectiveRule
    enabled: tuple[str, ...]
    disabled: tuple[str, ...]


def deployments(env: Environment) -> list[Deployment]:
    out = []
    for rule in CATALOG:
        eff = resolve(rule, env.config)
        on = env.config.alerts.enabled
        if rule.layer == "global":
            targets = [("global", on)]
        elif rule.layer == "regional":
            targets = [(region_code(r), on) for r in env.deployed_regions]
        else:
            targets = [(i.key, i.alerts_enabled) for i in env.instances
                       if rule.variant is None or sql_variant(i.cell.sql.sku) == rule.variant]
        out.append(Deployment(
            eff,
            tuple(t for t, ok in targets if ok and eff.enabled),
            tuple(t for t, ok in targets if not (ok and eff.enabled)),
        ))
    return out


def _value(value: float, unit: str) -> str:
    if unit == "bytes" and value >= 1024**3:
        return f"{value / 1024**3:g} GiB"
    return f"{value:,.6g} {unit}"


def _condition(rule: AlertRule, threshold: float | None) -> str:
    metric = f"{rule.metric} (log query)" if rule.kind == "log" else rule.metric
    value = "KPI" if threshold is None else _value(threshold, rule.unit)
    return f"{metric} {rule.aggregation} {_OPS[rule.operator]} {value}"


def _targets(d: Deployment) -> str:
    on = f"{len(d.enabled)} on" if len(d.enabled) + len(d.disabled) > 1 else ("on" if d.enabled else "off")
    return on + (f"; off: {', '.join(d.disabled)}" if d.disabled and len(d.enabled) + len(d.disabled) > 1 else "")


def catalog_table() -> Table:
    table = Table(title="alert catalog (defaults; `stamps:kpis` and `stamps:alerts.rules.<id>` override)")
    table.add_column("rule", no_wrap=True)
    for col in ("scope", "condition", "window/every", "severity", "source"):
        table.add_column(col, overflow="fold")
    for r in CATALOG:
        cond = _condition(r, r.threshold) + (f" ({r.kpi_key})" if r.kpi_key else "")
        table.add_row(r.id, f"{r.layer}: {SCOPES[r.scope].label}", cond, f"{r.window}/{r.frequency}",
                      f"{r.severity} → {priority(r.severity)}", r.source)
    return table


def effective_table(env: Environment) -> Table:
    table = Table(title=f"effective alert rules of {env.project}/{env.stack}")
    table.add_column("rule", no_wrap=True)
    for col in ("scope", "condition", "window/every", "severity", "threshold from", "targets"):
        table.add_column(col, overflow="fold")
    for d in deployments(env):
        e, r = d.effective, d.effective.rule
        if not d.enabled and not d.disabled:
            continue  # e.g. the vCore rule in a stack of DTU databases
        table.add_row(r.id, f"{r.layer}: {SCOPES[r.scope].label}", _condition(r, e.threshold),
                      f"{e.window}/{e.frequency}", f"{e.severity} → {e.priority}", e.threshold_from, _targets(d))
    return table


def run(args: argparse.Namespace) -> int:
    console = make_console()
    if args.catalog:
        console.print(catalog_table())
        return 0
    project_dir = Path(args.project_dir)
    stack = bare_stack(args.stack)
    env = environment_from_stack(project_dir, stack, stack_config_path(project_dir, stack, args.config_file))
    table = effective_table(env)
    console.print(table)
    total = sum(len(d.enabled) + len(d.disabled) for d in deployments(env))
    off = sum(len(d.disabled) for d in deployments(env))
    console.print(f"{total} alert rules deployed, {off} disabled")
    return 0


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("alerts", help="print the alert catalog or a stack's effective alert rules")
    p.add_argument("--stack", default="prod", help="stack name (default: prod)")
    p.add_argument("--config-file", help="stack config file (default: Pulumi.<stack>.yaml)")
    p.add_argument("--project-dir", default=".", help="directory with Pulumi.yaml (default: .)")
    p.add_argument("--catalog", action="store_true", help="print the catalog's defaults and sources only")
    p.set_defaults(func=run)
