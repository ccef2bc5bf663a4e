"""`stamps policy`: run the policy pack (policy/) offline, over the analyzer protocol, as `pulumi preview` would.

    stamps policy check prod.plan.json [--config policy-config.json] [--pack policy] [--json]
    stamps policy list [--pack policy]

The config file is the Pulumi CLI's `--policy-pack-config` format: policy names (or `all`) mapped to an
enforcement level, or to an object of the policy's properties with an optional `enforcementLevel`:
    {"allowed-regions": {"allowedRegions": ["eastus", "westus"]}, "cost-sql-sku-ceiling": "mandatory"}
Exit codes: 0 no mandatory violation, 3 a mandatory policy is violated, 2 bad input or a broken pack.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from rich.markup import escape
from rich.table import Table

from stamps.errors import UsageError
from stamps.offline import Plan
from stamps.offline.planfile import load_plan
from stamps.terminal import make_console


def _plans(paths: list[str]) -> list[Plan]:
    return [load_plan(p, "PLAN") for p in paths]


def check_config_names(config: dict, pack: Path | None) -> None:
    """Every property the config gives a policy must exist in its schema: a typo (`allowedRegion`) would
    otherwise leave the policy on its default, silently. (A policy name the pack lacks is reported as a
    warning in the report, as the Pulumi CLI ignores it.)"""
    import difflib

    from google.protobuf import json_format

    from stamps.policycheck import PackProject, PolicyPackProcess, StackContext, find_pack

    if not config:
        return
    project = PackProject.load(pack or find_pack())
    with PolicyPackProcess(project, StackContext(project="stamps", stack="config-check")) as proc:
        info = proc.analyzer_info()
    policies = {p.name: p for p in info.policies}
    for name, value in config.items():
        if name not in policies:
            continue
        p = policies[name]
        props = json_format.MessageToDict(p.configSchema.properties) if p.HasField("configSchema") else {}
        for key in value.properties:
            if key not in props:
                close = difflib.get_close_matches(key, list(props), n=1)
                raise UsageError(f"--config: {name}.{key}: the policy has no property {key!r}"
                                 + (f" (did you mean {close[0]!r}?)" if close else "")
                                 + f"; valid: {', '.join(sorted(props)) or '(none)'}, enforcementLevel")


def _pack(args: argparse.Namespace) -> Path | None:
    if args.pack is None:
        return None
    if not (Path(args.pack) / "PulumiPolicy.yaml").is_file():
        raise UsageError(f"--pack: {args.pack} has no PulumiPolicy.yaml")
    return Path(args.pack)


def run_check(args: argparse.Namespace) -> int:
    from stamps.policycheck import check_plans, check_reports, load_config

    plans = _plans(args.plans)
    pack = _pack(args)
    config_file = Path(args.config) if args.config else None
    given = load_config(config_file) if config_file else {}
    check_config_names(given, pack)
    if not args.json:
        return check_plans(plans, make_console(), pack_dir=pack, config_file=config_file, progress=sys.stdout)
    reports = check_reports(plans, pack, given, progress=sys.stdout)
    print(json.dumps([r.to_dict() for r in reports], indent=2))
    return max(r.exit_code for r in reports)


def run_list(args: argparse.Namespace) -> int:
    from google.protobuf import json_format
    from pulumi.runtime.proto import analyzer_pb2

    from stamps.policycheck import PackProject, PolicyPackProcess, StackContext, find_pack
    from stamps.policycheck.config import LEVEL_NAMES

    project = PackProject.load(_pack(args) or find_pack())
    with PolicyPackProcess(project, StackContext(project="stamps", stack="list")) as pack:
        info = pack.analyzer_info()
    table = Table(title=f"policy pack {info.name} {project.version or info.version} ({project.directory})")
    table.add_column("policy", no_wrap=True)
    for col in ("level", "kind", "description", "config (default)"):
        table.add_column(col)
    for p in sorted(info.policies, key=lambda p: p.name):
        props = json_format.MessageToDict(p.configSchema.properties) if p.HasField("configSchema") else {}
        shown = ", ".join(f"{k} = {json.dumps(v.get('default'))}" for k, v in props.items())
        kind = "stack" if p.policy_type == analyzer_pb2.POLICY_TYPE_STACK else "resource"
        table.add_row(p.name, LEVEL_NAMES.get(p.enforcementLevel, "?"), kind, escape(p.description), escape(shown))
    make_console().print(table)
    return 0


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("policy", help="run the policy pack on offline plans (the analyzer protocol, no CLI)")
    verbs = p.add_subparsers(dest="verb", required=True, metavar="VERB")
    c = verbs.add_parser("check", help="check plan JSON files; exit 3 on a mandatory violation")
    c.add_argument("plans", nargs="+", metavar="PLAN", help="plan JSON written by `stamps plan --out`")
    c.add_argument("--config", help="policy config JSON (the `pulumi preview --policy-pack-config` format)")
    c.add_argument("--pack", help="policy pack directory (default: ./policy)")
    c.add_argument("--json", action="store_true", help="print the reports as JSON instead of tables")
    c.set_defaults(func=run_check)
    lst = verbs.add_parser("list", help="the pack's policies, enforcement levels and config defaults")
    lst.add_argument("--pack", help="policy pack directory (default: ./policy)")
    lst.set_defaults(func=run_list)
