"""Policy-as-code offline: run the real policy pack (policy/) on offline plans over the analyzer protocol.

`check_plans` is what `stamps plan --policy` and `stamps policy check` call: one pack process per plan,
started as the Pulumi CLI starts it, violations printed grouped by policy. Exit code 3 when a mandatory
policy is violated, else 0 (advisory violations are printed, not failed on). The policies themselves live
only in the pack.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from rich.console import Console

from stamps.offline.plan import Plan
from stamps.policycheck.analyzer import PackProject, PolicyPackError, PolicyPackProcess, StackContext, find_pack
from stamps.policycheck.check import check_plan
from stamps.policycheck.config import PolicyConfig, PolicyConfigError
from stamps.policycheck.config import load as load_config
from stamps.policycheck.report import EXIT_OK, EXIT_POLICY, PackReport, Violation, render


def check_plans(plans: Sequence[Plan], console: Console, *, pack_dir: Path | None = None,
                config_file: Path | None = None, progress: TextIO | None = None) -> int:
    """Check each plan, print its report; 3 if any plan violates a mandatory policy, else 0.

    With `progress` (a terminal stream), a progress line counts the resources analyzed; see `check_reports`.
    """
    given = load_config(config_file) if config_file else {}
    code = EXIT_OK
    for report in check_reports(plans, pack_dir, given, progress=progress):
        render(report, console)
        code = max(code, report.exit_code)
    return code


def check_reports(plans: Sequence[Plan], pack_dir: Path | None = None, given: dict[str, PolicyConfig] | None = None,
                  *, progress: TextIO | None = None) -> list[PackReport]:
    """Every plan's report; on a terminal `progress` stream, `checking policies on <stack>: N of M resources
    analyzed` after two seconds (a fleet's check takes tens of seconds), erased before anything is printed."""
    from stamps.offline.progress import progress_line

    pack = Path(pack_dir) if pack_dir else find_pack()
    with progress_line(progress or sys.stdout, len(plans), enabled=progress is not None,
                       verb="checking policies on", noun="resources analyzed") as line:
        # +1: the stack itself is analyzed too (its resource opens the list the pack sees).
        return [check_plan(plan, pack, given, on_analyze=line.stack(plan.stack, of=len(plan.resources) + 1))
                for plan in plans]


def check_fleet(plans: Sequence[Plan], fleet: str, console: Console, *, pack_dir: Path | None = None,
                config_file: Path | None = None, progress: TextIO | None = None) -> int:
    """The pack on each stack of a fleet (as `pulumi up --policy-pack` runs it per stack), then its fleet-wide
    policies on the fleet view: every stack's resources in one plan. 3 on any mandatory violation, else 0."""
    from stamps.offline.plan import merge_plans
    from stamps.stacks.units import FLEET_WIDE_POLICIES

    given = load_config(config_file) if config_file else {}
    pack = Path(pack_dir) if pack_dir else find_pack()
    code = check_plans(plans, console, pack_dir=pack, config_file=config_file, progress=progress)
    view = merge_plans(list(plans), f"{fleet} (fleet view)")
    # Every other policy already ran on the stack that owns its resources; across stacks they would see
    # dependencies the engine keeps per stack as missing.
    report = check_plan(view, pack, given, only=FLEET_WIDE_POLICIES)
    render(report, console)
    return max(code, report.exit_code)


__all__ = [
    "EXIT_OK",
    "EXIT_POLICY",
    "PackProject",
    "PackReport",
    "PolicyConfig",
    "PolicyConfigError",
    "PolicyPackError",
    "PolicyPackProcess",
    "StackContext",
    "Violation",
    "check_fleet",
    "check_plan",
    "check_plans",
    "check_reports",
    "find_pack",
    "load_config",
    "render",
]
