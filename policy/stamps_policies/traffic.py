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

from stamps.offline.plan import UNKNOWN as UNKNOWN_MARK  # the plan's marker for a value not known yet

from ._common import ADVISORY, CONTAINER_APP, MANDATORY, safe_tags, spans_fleet


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

    if not spans_fleet(args.resources):
        return

    resources = [{"type": r.resource_type, "name": r.name, "urn": r.urn, "inputs": plain(r.props)}
                 for r in args.resources]
    walker = Walker(resources, {})
    walker.check_entries()
    for finding in walker.findings:
        if finding.code == "bypass-api-management":
            report(finding.message, finding.path[0] if finding.path else None)


def _unprotected(args: StackValidationArgs, report: ReportViolation) -> None:
    """CELLs with no standby: a failover of their region leaves their tenants unreachable until failback."""
    if not spans_fleet(args.resources):
        return
    roles: dict[str, dict[str, Any]] = {}
    for r in args.resources:
        if r.resource_type != CONTAINER_APP:
            continue
        tags = safe_tags(r.props) or {}
        if tags.get("cell") and tags.get("role"):
            roles.setdefault(tags["cell"], {})[tags["role"]] = r
    for cell, by_role in sorted(roles.items()):
        primary = by_role.get("primary")
        if primary is not None and "standby" not in by_role:
            region = (safe_tags(primary.props) or {}).get("region", "its region")
            report(f"CELL {cell} has no standby: a failover of {region} strands its tenants (stamps-ops failover "
                   f"refuses without --accept-unprotected {cell})", primary.urn)


def policies() -> list[StackValidationPolicy]:
    return [
        StackValidationPolicy(
            name="traffic-through-api-management",
            description="No public entry (Front Door origin, App Gateway public listener, Container App ingress) "
                        "reaches a CELL without passing API Management.",
            validate=_bypass, enforcement_level=MANDATORY),
        # Advisory by default: a prod policy config makes it mandatory with {"cells-without-standby":
        # "mandatory"} (`stamps policy check --config`, `pulumi preview --policy-pack-config`).
        StackValidationPolicy(
            name="cells-without-standby",
            description="Every CELL has a standby in its region's DR region, or its tenants go dark in a failover.",
            validate=_unprotected, enforcement_level=ADVISORY),
    ]
