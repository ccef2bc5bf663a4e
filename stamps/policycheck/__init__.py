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


__all__ = [
    "EXIT_OK", "EXIT_POLICY", "PackProject", "PackReport", "PolicyConfig", "PolicyConfigError", "PolicyPackError",
    "PolicyPackProcess", "StackContext", "Violation", "check_plan", "check_plans", "find_pack", "load_config",
    "render",
]
