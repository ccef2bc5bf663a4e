"""What Azure decides when a principal calls a Key Vault's data plane (`https://<vault>.vault.azure.net`).

Two gates, both from the vault's planned properties and the planned role assignments:
- authorization: on an RBAC vault (`enableRbacAuthorization: true`), a role assignment to the principal at the
  vault's scope or a parent scope (resource group, subscription) whose role's data actions cover the call; on an
  access-policy vault, an access policy for the principal with the matching permission;
- network: `publicNetworkAccess: Disabled` admits private endpoints only; `networkAcls.defaultAction: Deny` admits
  callers whose address is in `ipRules` or whose subnet is in `virtualNetworkRules`, and trusted Azure services when
  `bypass` is `AzureServices` (https://learn.microsoft.com/azure/key-vault/general/network-security). The firewall
  applies to the data plane only: a secret written through ARM (`Microsoft.KeyVault/vaults/secrets`) is not subject
  to it (https://learn.microsoft.com/azure/key-vault/general/overview-vnet-service-endpoints).

The tests that check who can reach the edge certificate and the policy pack's `keyvault-data-plane-roles` rule both
decide with these functions, so Azure's rules live in one table.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any

ROLES_SOURCE = "https://learn.microsoft.com/azure/role-based-access-control/built-in-roles/security"
# Built-in Key Vault roles (id -> data actions), as their role definitions list them (ROLES_SOURCE). Roles without
# data actions (Owner, Contributor, Key Vault Contributor) grant nothing on the data plane of an RBAC vault.
KEY_VAULT_ROLE_DATA_ACTIONS: dict[str, tuple[str, ...]] = {
    # Key Vault Administrator
    "00482a5a-887f-4fb3-b363-3b7fe8e74483": ("Microsoft.KeyVault/vaults/*",),
    # Key Vault Certificates Officer
    "a4417e6f-fecd-4de8-b567-7b0420556985": ("Microsoft.KeyVault/vaults/certificatecas/*",
                                             "Microsoft.KeyVault/vaults/certificates/*",
                                             "Microsoft.KeyVault/vaults/certificatecontacts/write"),
    # Key Vault Certificate User
    "db79e9a7-68ee-4b58-9aeb-b90e7c24fcba": ("Microsoft.KeyVault/vaults/certificates/read",
                                             "Microsoft.KeyVault/vaults/secrets/getSecret/action",
                                             "Microsoft.KeyVault/vaults/secrets/readMetadata/action",
                                             "Microsoft.KeyVault/vaults/keys/read"),
    # Key Vault Secrets Officer
    "b86a8fe4-44ce-4948-aee5-eccb2c155cd7": ("Microsoft.KeyVault/vaults/secrets/*",),
    # Key Vault Secrets User
    "4633458b-17de-408a-b874-0445c86b69e6": ("Microsoft.KeyVault/vaults/secrets/getSecret/action",
                                             "Microsoft.KeyVault/vaults/secrets/readMetadata/action"),
    # Key Vault Reader
    "21090545-7ca7-4776-b22c-e363652d74d2": ("Microsoft.KeyVault/vaults/*/read",
                                             "Microsoft.KeyVault/vaults/secrets/readMetadata/action"),
}

# The data actions of the calls made on the edge certificate: App Gateway reads the PFX through the secret endpoint
# (key-vault-certs); an operator stores a new PFX as the secret, or imports it as a certificate, and reads it back.
READ_SECRET = "Microsoft.KeyVault/vaults/secrets/getSecret/action"
WRITE_SECRET = "Microsoft.KeyVault/vaults/secrets/setSecret/action"
IMPORT_CERTIFICATE = "Microsoft.KeyVault/vaults/certificates/import/action"
READ_CERTIFICATE = "Microsoft.KeyVault/vaults/certificates/read"
OPERATOR_CERTIFICATE_ACTIONS = (WRITE_SECRET, IMPORT_CERTIFICATE, READ_CERTIFICATE, READ_SECRET)

# The same calls under an access-policy vault: (permission group, permission).
_POLICY_PERMISSIONS = {
    READ_SECRET: ("secrets", "get"), WRITE_SECRET: ("secrets", "set"),
    IMPORT_CERTIFICATE: ("certificates", "import"), READ_CERTIFICATE: ("certificates", "get"),
}


@dataclass(frozen=True)
class Grant:
    """One Azure RBAC role assignment: who, where, which role (the role definition's trailing GUID suffices)."""

    scope: str
    principal_id: str
    role_definition_id: str

    @property
    def role(self) -> str:
        return self.role_definition_id.rsplit("/", 1)[-1].lower()


@dataclass(frozen=True)
class Caller:
    """Who calls and from where: a public address, a subnet (service endpoint), or a trusted Azure service."""

    principal_id: str
    ip: str | None = None
    subnet_id: str | None = None
    trusted_service: bool = False


def role_allows(role_definition_id: str, action: str) -> bool:
    """Whether a built-in Key Vault role's data actions cover `action` (`*` matches any run of characters, and
    Azure compares actions case-insensitively)."""
    patterns = KEY_VAULT_ROLE_DATA_ACTIONS.get(role_definition_id.rsplit("/", 1)[-1].lower(), ())
    return any(fnmatchcase(action.lower(), p.lower()) for p in patterns)


def covers(scope: str, resource_id: str) -> bool:
    """Whether a role assignment at `scope` applies to `resource_id`: the same resource or an ancestor of it."""
    s, r = scope.rstrip("/").lower(), resource_id.rstrip("/").lower()
    return bool(s) and (r == s or r.startswith(s + "/"))


def authorization_refusals(vault_id: str, props: Mapping[str, Any], grants: Iterable[Grant], principal_id: str,
                           actions: Iterable[str]) -> list[str]:
    """The calls Azure would answer 403 Forbidden (not authorized), one line each; empty when every one is allowed."""
    actions = list(actions)
    if props.get("enableRbacAuthorization") is True:
        mine = [g for g in grants if g.principal_id.lower() == principal_id.lower() and covers(g.scope, vault_id)]
        return [f"{action}: no role assignment to {principal_id} at the vault or above grants it"
                for action in actions if not any(role_allows(g.role, action) for g in mine)]
    policies = [p for p in props.get("accessPolicies") or []
                if str(p.get("objectId", "")).lower() == principal_id.lower()]
    out = []
    for action in actions:
        group, permission = _POLICY_PERMISSIONS.get(action, ("", ""))
        granted = {str(x).lower() for p in policies for x in (p.get("permissions") or {}).get(group) or []}
        if permission not in granted and "all" not in granted:
            out.append(f"{action}: the vault uses access policies and none gives {principal_id} {group}/{permission}")
    return out


def network_refusal(props: Mapping[str, Any], caller: Caller) -> str | None:
    """Why the vault's firewall would refuse the caller's data-plane request (403 ForbiddenByFirewall); None if it
    lets the request through."""
    if str(props.get("publicNetworkAccess", "Enabled")).lower() == "disabled":
        return "public network access is disabled: only private endpoints reach the vault"
    acls = props.get("networkAcls") or {}
    if str(acls.get("defaultAction") or "Allow").lower() == "allow":
        return None
    if caller.trusted_service and str(acls.get("bypass") or "").lower() == "azureservices":
        return None
    if caller.subnet_id and any(str(r.get("id", "")).lower() == caller.subnet_id.lower()
                                for r in acls.get("virtualNetworkRules") or []):
        return None
    if caller.ip:
        address = ipaddress.ip_address(caller.ip)
        for rule in acls.get("ipRules") or []:
            try:
                if address in ipaddress.ip_network(str(rule.get("value", "")), strict=False):
                    return None
            except ValueError:
                continue
    where = caller.ip or caller.subnet_id or "its network"
    return f"the firewall denies by default and no ipRules/virtualNetworkRules entry admits {where}"


def vault_refusals(vault_id: str, props: Mapping[str, Any], grants: Iterable[Grant], caller: Caller,
                   actions: Iterable[str]) -> list[str]:
    """Everything that would stop `caller` making `actions` on the vault's data plane; empty when Azure serves it."""
    out = authorization_refusals(vault_id, props, grants, caller.principal_id, actions)
    blocked = network_refusal(props, caller)
    return out + ([blocked] if blocked else [])
