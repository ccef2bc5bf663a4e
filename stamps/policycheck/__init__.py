"""Policy-as-code offline: run the real policy pack (policy/) on offline plans over the analyzer protocol.

`check_plans` is what `stamps plan --policy` and `stamps policy check` call: one pack process per plan,
started as the Pulumi CLI starts it, violations printed grouped by policy. Exit code 3 when a mandatory
policy is violated, else 0 (advisory violations are printed, not failed on). The policies themselves live
only in the pack.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from rich.console import Console

from stamps.offline.plan import Plan
from stamps.policycheck.analyzer import PackProject, PolicyPackError, PolicyPackProcess, StackContext, find_pack
from stamps.policycheck.check import check_plan
from stamps.policycheck.config import PolicyConfig, PolicyConfigError
from stamps.policycheck.config import load as load_config
from stamps.policycheck.report import EXIT_OK, EXIT_POLICY, PackReport, Violation, render


def check_plans(plans: Sequence[Plan], console: Console, *, pack_dir: Path | None = None,
                config_file: Path | None = None) -> int:
    """Check each plan, print its report; 3 if any plan violates a mandatory policy, else 0."""
    given = load_config(config_file) if config_file else {}
    pack = Path(pack_dir) if pack_dir else find_pack()
    code = EXIT_OK
    for plan in plans:
        report = check_plan(plan, pack, given)
        render(report, console)
        code = max(code, report.exit_code)
    return code


def check_fleet(plans: Sequence[Plan], fleet: str, console: Console, *, pack_dir: Path | None = None,
                config_file: Path | None = None) -> int:
    """The pack on each stack of a fleet (as `pulumi up --policy-pack` runs it per stack), then its fleet-wide
    policies on the fleet view: every stack's resources in one plan. 3 on any mandatory violation, else 0."""
    from stamps.offline.plan import merge_plans
    from stamps.stacks.units import FLEET_WIDE_POLICIES

    given = load_config(config_file) if config_file else {}
    pack = Path(pack_dir) if pack_dir else find_pack()
    code = check_plans(plans, console, pack_dir=pack, config_file=config_file)
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
    "find_pack",
    "load_config",
    "render",
]
