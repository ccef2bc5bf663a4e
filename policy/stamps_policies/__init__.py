"""The stamps policy pack's policies, importable without starting the analyzer server.

Modules import each other relatively, so the package loads both as `stamps_policies` (the Pulumi CLI runs
the pack with this directory as the program: `python -m pulumi.policy <engine> .`) and as
`policy.stamps_policies` (tests, with the repository root on sys.path).
"""

from __future__ import annotations

from pulumi_policy import Policy

from . import apim, cells, cost, protection, regions, security, tagging, traffic

PACK_NAME = "stamps-policies"


def all_policies() -> list[Policy]:
    """Every policy of the pack, mandatory unless it says otherwise (the cost guards are advisory)."""
    return [
        *security.policies(),
        *tagging.policies(),
        *regions.policies(),
        *apim.policies(),
        *cells.policies(),
        *traffic.policies(),
        *protection.policies(),
        *cost.policies(),
    ]


__all__ = ["PACK_NAME", "all_policies"]
