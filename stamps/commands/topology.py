"""`stamps topology`: draw regions, CELL instances and tenants as SVG (or an HTML page embedding it)."""

from __future__ import annotations

import argparse
from pathlib import Path

from stamps.config.stackfile import bare_stack, stack_config_path
from stamps.errors import UsageError
from stamps.monitoring.topology import environment_from_stack, topology_html, topology_svg


def run(args: argparse.Namespace) -> int:
    out = Path(args.out)
    if out.suffix not in (".svg", ".html"):
        raise UsageError(f"--out: {out} must end in .svg or .html")
    project_dir = Path(args.project_dir)
    stack = bare_stack(args.stack)
    env = environment_from_stack(project_dir, stack, stack_config_path(project_dir, stack, args.config_file))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(topology_svg(env) if out.suffix == ".svg" else topology_html(env), encoding="utf-8")
    print(out)
    return 0


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("topology", help="draw regions, CELLs and tenants as SVG or HTML")
    p.add_argument("--stack", default="prod", help="stack name (default: prod)")
    p.add_argument("--config-file", help="stack config file (default: Pulumi.<stack>.yaml)")
    p.add_argument("--project-dir", default=".", help="directory with Pulumi.yaml (default: .)")
    p.add_argument("--out", required=True, help="output file: .svg, or .html for a page embedding the SVG")
    p.set_defaults(func=run)
