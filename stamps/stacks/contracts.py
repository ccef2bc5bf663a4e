"""What each stack exports and its downstream stacks read: one typed model per unit, used both ways.

A contract's fields are Outputs. The stack that owns the values builds the model from its resources and
calls `export()`; a downstream stack calls `read(reference)` and gets the same model back, each field read
from the export of the same name. No downstream code guesses an output name or shape: adding a field here
adds it on both sides. In the single-stack layout the producer's model is handed to consumers in-process.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any, ClassVar, TypeVar

import pulumi

C = TypeVar("C", bound="Contract")


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(p.title() for p in rest)


@dataclass(frozen=True)
class Contract:
    """Base of the unit output models. `PREFIX` keeps each model's export names apart in one stack."""

    PREFIX: ClassVar[str] = ""

    @classmethod
    def keys(cls) -> dict[str, str]:
        """Field name → stack output name."""
        return {f.name: _camel(f"{cls.PREFIX}_{f.name}" if cls.PREFIX else f.name) for f in fields(cls)}

    def export(self) -> None:
        for attr, key in self.keys().items():
            pulumi.export(key, getattr(self, attr))

    @classmethod
    def read(cls: type[C], ref: pulumi.StackReference) -> C:
        return cls(**{attr: ref.get_output(key) for attr, key in cls.keys().items()})

    @classmethod
    def names(cls) -> list[str]:
        return list(cls.keys().values())


Out = pulumi.Input[Any]


def pick(value: pulumi.Input[Mapping[str, Any]], key: str) -> pulumi.Output[Any]:
    """`value[key]` of a map field: a map of Outputs in-process (depending on that one entry only), or one
    Output holding the whole map when read through a StackReference."""
    if isinstance(value, Mapping):
        return pulumi.Output.from_input(value[key])
    return pulumi.Output.from_input(value).apply(lambda m: m[key])  # type: ignore[arg-type]  # from_input takes any Input; the stub names only Output


@dataclass(frozen=True)
class GlobalOutputs(Contract):
    """The global stack: observability sinks, the tenant directory, API Management, alert routing."""

    PREFIX: ClassVar[str] = "global"
    resource_group_name: Out
    workspace_id: Out
    workspace_customer_id: Out
    app_insights_id: Out
    app_insights_connection_string: Out
    directory_account_name: Out
    directory_account_id: Out
    directory_endpoint: Out
    apim_id: Out
    apim_name: Out
    apim_gateway_url: Out
    apim_gateways: Out  # region → regional gateway host
    apim_addresses: Out  # the addresses API Management calls backends from
    action_groups: Out  # priority → action group id


@dataclass(frozen=True)
class RegionOutputs(Contract):
    """A region stack: the network CELLs join, the vault, and the gateway's address, identity, certificate."""

    PREFIX: ClassVar[str] = "region"
    resource_group_name: Out
    vnet_id: Out
    subnet_ids: Out  # subnet name → id
    dns_zone_ids: Out  # private zone kind (sql, blob, ...) → id
    key_vault_id: Out
    key_vault_uri: Out
    public_ip_id: Out
    entry_fqdn: Out
    identity_id: Out


@dataclass(frozen=True)
class CellOutputs(Contract):
    """A CELL instance stack: what the edge routes to, what a standby replicates, what alerts watch."""

    PREFIX: ClassVar[str] = "cell"
    resource_group_name: Out
    app_id: Out
    fqdn: Out
    database_id: Out
    storage_id: Out  # a standby's is its primary's account
    storage_blob_endpoint: Out


@dataclass(frozen=True)
class EdgeOutputs(Contract):
    PREFIX: ClassVar[str] = "edge"
    app_gateway_id: Out


@dataclass(frozen=True)
class RoutingOutputs(Contract):
    PREFIX: ClassVar[str] = "routing"
    front_door_id: Out  # the X-Azure-FDID value API Management admits
    front_door_profile_id: Out
    front_door_host: Out
    traffic_manager_profiles: Out  # primary region → profile id


@dataclass(frozen=True)
class ApiOutputs(Contract):
    PREFIX: ClassVar[str] = "api"
    api_id: Out
    product_ids: Out  # tier → product id
    routing_named_values: Out


CONTRACTS: dict[str, type[Contract]] = {
    "global": GlobalOutputs, "region": RegionOutputs, "cell": CellOutputs, "edge": EdgeOutputs,
    "routing": RoutingOutputs, "api": ApiOutputs,
}
