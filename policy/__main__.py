"""The policy pack's entry point: the Pulumi CLI runs `python -u -m pulumi.policy <engine-address> .` here.

`PolicyPack(...)` starts the analyzer gRPC server, prints its port and serves until the process is stopped,
so this file only builds the pack and nothing imports it; the policies live in `stamps_policies/`.
"""

from pulumi_policy import EnforcementLevel, PolicyPack
from stamps_policies import PACK_NAME, all_policies

PolicyPack(
    name=PACK_NAME,
    policies=all_policies(),
    enforcement_level=EnforcementLevel.MANDATORY,
)
