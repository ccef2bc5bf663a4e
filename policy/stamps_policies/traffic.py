"""Traffic policy: nothing public reaches a CELL except through API Management.

The stack policy walks the same request paths `stamps routes` walks (`stamps.routes`): every Front Door origin
must be an API Management gateway, every public IP's App Gateway must block the internet on every CELL path
(health paths may stay open to probes), and no Container App may take internet traffic directly. Values not
known yet during preview are skipped here; `pulumi up` runs the policy again on the outputs.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pulumi_policy import ReportViolation, StackValidationArgs, StackValidationPolicy
from pulumi_policy.proxy import UnknownValueError

from ._common import MANDATORY

UNKNOWN_MARK = "[unknown]"  # what the offline plan writes for a value the engine does not know yet


def plain(value: Any) -> Any:
    """A policy proxy value as plain data, unknown parts replaced by the plan's unknown marker."""
    try:
        if isinstance(value, Mapping):
            out = {}
            for key in value:
                try:
                    out[str(key)] = plain(value[key])
                except UnknownValueError:
                    out[str(key)] = UNKNOWN_MARK
            return out
        if isinstance(value, (list, tuple)):
            return [plain(v) for v in value]
        return value
    except UnknownValueError:
        return UNKNOWN_MARK


def _bypass(args: StackValidationArgs, report: ReportViolation) -> None:
    from stamps.routes.walk import Walker

    resources = [{"type": r.resource_type, "name": r.name, "urn": r.urn, "inputs": plain(r.props)}
                 for r in args.resources]
    walker = Walker(resources, {})
    walker.check_entries()
    for finding in walker.findings:
        if finding.code == "bypass-api-management":
            report(finding.message, finding.path[0] if finding.path else None)


def policies() -> list[StackValidationPolicy]:
    return [
        StackValidationPolicy(
            name="traffic-through-api-management",
            description="No public entry (Front Door origin, App Gateway public listener, Container App ingress) "
                        "reaches a CELL without passing API Management.",
            validate=_bypass, enforcement_level=MANDATORY),
    ]
