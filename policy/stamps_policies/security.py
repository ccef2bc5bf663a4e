"""Data-plane hardening of the CELL stores and the regional vaults: Azure SQL, Storage, Key Vault.

Each setting must be set explicitly even where today's Azure default is already safe: defaults have
changed between API versions before, and an explicit value is what a reviewer can see in a diff.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from pulumi_policy import ResourceValidationArgs, ResourceValidationPolicy

from ._common import KEY_VAULT, SQL_SERVER, STORAGE_ACCOUNT, lookup, resource_policy, same


def _sql_public_network(args: ResourceValidationArgs, _cfg: dict[str, Any]) -> Iterator[str]:
    value = args.props.get("publicNetworkAccess")
    if not same(value, "Disabled"):
        yield (f"publicNetworkAccess is {value!r}: set it to \"Disabled\"; the CELL reaches the server "
               "through its private endpoint")


def _sql_entra_only(args: ResourceValidationArgs, _cfg: dict[str, Any]) -> Iterator[str]:
    admins = args.props.get("administrators")
    if lookup(admins, "azureADOnlyAuthentication") is not True:
        yield ("administrators.azureADOnlyAuthentication is not true: SQL logins stay usable; set an Entra "
               "admin group with azureADOnlyAuthentication: true")
    elif not same(lookup(admins, "administratorType"), "ActiveDirectory"):
        yield "administrators.administratorType must be \"ActiveDirectory\""
    if args.props.get("administratorLoginPassword") is not None:
        yield "administratorLoginPassword is set: Entra-only servers have no SQL admin password"


def _sql_tls(args: ResourceValidationArgs, _cfg: dict[str, Any]) -> Iterator[str]:
    value = args.props.get("minimalTlsVersion")
    if not same(value, "1.2", "1.3"):
        yield f"minimalTlsVersion is {value!r}: set it to \"1.2\" (or \"1.3\")"


def _storage_https(args: ResourceValidationArgs, _cfg: dict[str, Any]) -> Iterator[str]:
    value = args.props.get("enableHttpsTrafficOnly")
    if value is not True:
        yield f"enableHttpsTrafficOnly is {value!r}: set it to true"


def _storage_tls(args: ResourceValidationArgs, _cfg: dict[str, Any]) -> Iterator[str]:
    value = args.props.get("minimumTlsVersion")
    if not same(value, "TLS1_2", "TLS1_3"):
        yield f"minimumTlsVersion is {value!r}: set it to \"TLS1_2\""


def _storage_public_blob(args: ResourceValidationArgs, _cfg: dict[str, Any]) -> Iterator[str]:
    value = args.props.get("allowBlobPublicAccess")
    if value is not False:
        yield f"allowBlobPublicAccess is {value!r}: set it to false; blobs are read with the app's identity"


def _vault_flag(key: str, advice: str) -> Any:
    def check(args: ResourceValidationArgs, _cfg: dict[str, Any]) -> Iterator[str]:
        value = lookup(args.props, "properties", key)
        if value is not True:
            yield f"properties.{key} is {value!r}: {advice}"

    return check


def policies() -> list[ResourceValidationPolicy]:
    return [
        resource_policy(
            "sql-public-network-disabled",
            "Azure SQL servers accept no traffic from public networks.",
            [SQL_SERVER], _sql_public_network),
        resource_policy(
            "sql-entra-only-auth",
            "Azure SQL servers use Microsoft Entra-only authentication.",
            [SQL_SERVER], _sql_entra_only),
        resource_policy(
            "sql-min-tls-1-2",
            "Azure SQL servers require TLS 1.2 or newer.",
            [SQL_SERVER], _sql_tls),
        resource_policy(
            "storage-https-only",
            "Storage accounts accept HTTPS traffic only.",
            [STORAGE_ACCOUNT], _storage_https),
        resource_policy(
            "storage-min-tls-1-2",
            "Storage accounts require TLS 1.2 or newer.",
            [STORAGE_ACCOUNT], _storage_tls),
        resource_policy(
            "storage-no-public-blob-access",
            "Storage accounts allow no anonymous public blob access.",
            [STORAGE_ACCOUNT], _storage_public_blob),
        resource_policy(
            "keyvault-purge-protection",
            "Key Vaults have purge protection enabled.",
            [KEY_VAULT], _vault_flag("enablePurgeProtection",
                                     "set it to true so deleted secrets cannot be purged before retention ends")),
        resource_policy(
            "keyvault-soft-delete",
            "Key Vaults have soft delete enabled.",
            [KEY_VAULT], _vault_flag("enableSoftDelete", "set it to true")),
        resource_policy(
            "keyvault-rbac-authorization",
            "Key Vaults authorize data access with Azure RBAC, not access policies.",
            [KEY_VAULT], _vault_flag("enableRbacAuthorization", "set it to true")),
    ]
