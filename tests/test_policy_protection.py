"""The pack's deploy-and-protect rules (policy/stamps_policies/protection.py), each with a plan it accepts and a
plan broken on purpose that it rejects by name, through the real analyzer protocol (as tests/test_policy.py)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from stamps.policycheck import PackProject, PolicyPackProcess, StackContext
from stamps.policycheck.config import reconcile, to_request
from tests.test_policy import AN, GOOD_TAGS, PACK, cell_tags, res
from tests.test_policy import analyze as analyze_some
from tests.test_policy import analyze_stack as analyze_stack_some


def analyze(pack: PolicyPackProcess, resource: dict[str, Any]) -> dict[str, list[str]]:
    return analyze_some(pack, resource, skip=frozenset())


def analyze_stack(pack: PolicyPackProcess, resources: list[dict[str, Any]]) -> dict[str, list[tuple[str, str]]]:
    return analyze_stack_some(pack, resources, skip=frozenset())


@pytest.fixture(scope="module")
def pack() -> Iterator[PolicyPackProcess]:
    with PolicyPackProcess(PackProject.load(PACK), StackContext(project="stamps", stack="unit")) as p:
        p.configure(to_request(reconcile(p.analyzer_info(), {})))
        yield p

KV_USER = "/providers/Microsoft.Authorization/roleDefinitions/4633458b-17de-408a-b874-0445c86b69e6"
PUBLISHER = "/providers/Microsoft.Authorization/roleDefinitions/3913510d-42f4-4e42-8a64-420c390055eb"
BLOB = "/providers/Microsoft.Authorization/roleDefinitions/ba92f5b4-2d11-453d-a403-e96b0029c9fe"


# --- zones and storage redundancy ------------------------------------------------------------------------------
# --- Cosmos DB ----------------------------------------------------------------------------------------------------
def cosmos(**overrides: Any) -> dict[str, Any]:
    inputs = {"location": "eastus", "tags": GOOD_TAGS, "publicNetworkAccess": "Enabled",
              "isVirtualNetworkFilterEnabled": True, "ipRules": [{"ipAddressOrRange": "203.0.113.0/24"}],
              "backupPolicy": {"type": "Continuous"}, "disableLocalAuth": True}
    inputs.update(overrides)
    return res(AN + "cosmosdb:DatabaseAccount", "cosmos", inputs)


def test_a_restricted_cosmos_account_with_continuous_backup_passes(pack: PolicyPackProcess) -> None:
    assert analyze(pack, cosmos()) == {}
    assert analyze(pack, cosmos(publicNetworkAccess="Disabled", ipRules=[])) == {}


@pytest.mark.parametrize(("overrides", "policy"), [
    ({"ipRules": []}, "cosmos-network-restricted"),
    ({"ipRules": None, "publicNetworkAccess": None}, "cosmos-network-restricted"),
    ({"backupPolicy": {"type": "Periodic"}}, "cosmos-continuous-backup"),
    ({"backupPolicy": None}, "cosmos-continuous-backup"),
])
def test_cosmos_violations(pack: PolicyPackProcess, overrides: dict[str, Any], policy: str) -> None:
    assert list(analyze(pack, cosmos(**overrides))) == [policy]


# --- SQL auditing and Defender ---------------------------------------------------------------------------------
def sql_stack(*, audit: bool = True, monitor: bool = True, master: bool = True,
              defender: bool = True) -> list[dict[str, Any]]:
    server = res(AN + "sql:Server", "sql", {"serverName": "sql-a", "location": "eastus", "tags": GOOD_TAGS})
    out = [server]
    if audit:
        out.append(res(AN + "sql:ExtendedServerBlobAuditingPolicy", "audit", {
            "serverName": "sql-a", "state": "Enabled", "isAzureMonitorTargetEnabled": monitor}))
    if master:
        out.append(res(AN + "monitor:DiagnosticSetting", "audit-diag", {
            "resourceUri": "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Sql/servers/sql-a/databases/master",
            "logs": [{"category": "SQLSecurityAuditEvents", "enabled": True}]}))
    if defender:
        out.append(res(AN + "sql:ServerSecurityAlertPolicy", "defender", {"serverName": "sql-a", "state": "Enabled"}))
    return out


def test_an_audited_and_defended_server_passes(pack: PolicyPackProcess) -> None:
    found = analyze_stack(pack, sql_stack())
    assert "sql-auditing" not in found and "sql-defender" not in found


@pytest.mark.parametrize(("broken", "policy", "fragment"), [
    ({"audit": False}, "sql-auditing", "no auditing into Azure Monitor"),
    ({"monitor": False}, "sql-auditing", "no auditing into Azure Monitor"),
    ({"master": False}, "sql-auditing", "SQLSecurityAuditEvents on its master database"),
    ({"defender": False}, "sql-defender", "no Microsoft Defender for SQL alerts"),
])
def test_sql_protection_violations(pack: PolicyPackProcess, broken: dict[str, bool], policy: str,
                                   fragment: str) -> None:
    found = analyze_stack(pack, sql_stack(**broken))
    assert found[policy] == [("sql", found[policy][0][1])] and fragment in found[policy][0][1]


# --- CELL storage ------------------------------------------------------------------------------------------------
def cell_storage(sku: str, *, blob: dict[str, Any] | None = None, secondary: bool = True) -> list[dict[str, Any]]:
    st = res(AN + "storage:StorageAccount", "retail-eus-st", {
        "location": "eastus", "sku": {"name": sku}, "tags": cell_tags("retail", "eastus")})
    out = [st]
    if secondary:
        out.append(res(AN + "sql:Database", "retail-wus-db", {
            "createMode": "Secondary", "tags": cell_tags("retail", "westus", "standby")}))
    service = {"isVersioningEnabled": True, "changeFeed": {"enabled": True},
               "deleteRetentionPolicy": {"enabled": True, "days": 14},
               "restorePolicy": {"enabled": True, "days": 7}}
    if blob is not None:
        service.update(blob)
    out.append(res(AN + "storage:BlobServiceProperties", "retail-eus-st-blob", service, deps=(st["urn"],)))
    return out


def test_geo_redundant_storage_with_point_in_time_restore_passes(pack: PolicyPackProcess) -> None:
    found = analyze_stack(pack, cell_storage("Standard_GZRS"))
    assert "storage-geo-redundancy" not in found and "blob-point-in-time-restore" not in found
    assert "storage-geo-redundancy" not in analyze_stack(pack, cell_storage("Standard_ZRS", secondary=False))


def test_zone_only_storage_under_a_geo_replicated_database_fails(pack: PolicyPackProcess) -> None:
    found = analyze_stack(pack, cell_storage("Standard_ZRS"))
    assert [n for n, _ in found["storage-geo-redundancy"]] == ["retail-eus-st"]
    assert "a failover would find the rows without their blobs" in found["storage-geo-redundancy"][0][1]


@pytest.mark.parametrize("blob", [{"isVersioningEnabled": False}, {"restorePolicy": {"enabled": True, "days": 14}},
                                  {"changeFeed": {"enabled": False}}])
def test_blobs_without_point_in_time_restore_fail(pack: PolicyPackProcess, blob: dict[str, Any]) -> None:
    found = analyze_stack(pack, cell_storage("Standard_GZRS", blob=blob))
    assert [n for n, _ in found["blob-point-in-time-restore"]] == ["retail-eus-st"]


# --- gateway certificate and its role ------------------------------------------------------------------------------
# --- data-plane roles ------------------------------------------------------------------------------------------------
def identity_stack(*, writer: bool = True, blob: bool = True, publisher: bool = True) -> list[dict[str, Any]]:
    account = cosmos()
    app = res(AN + "app:ContainerApp", "retail-eus-app", {"tags": cell_tags("retail", "eastus")})
    appi = res(AN + "applicationinsights:Component", "appi", {"disableLocalAuth": True, "tags": GOOD_TAGS})
    out = [account, app, appi]
    if writer:
        out.append(res(AN + "cosmosdb:SqlResourceSqlRoleAssignment", "writer", {
            "roleDefinitionId": "/x/sqlRoleDefinitions/00000000-0000-0000-0000-000000000002"}, deps=(account["urn"],)))
    if blob:
        out.append(res(AN + "authorization:RoleAssignment", "blob", {"roleDefinitionId": BLOB}, deps=(app["urn"],)))
    if publisher:
        out.append(res(AN + "authorization:RoleAssignment", "pub", {"roleDefinitionId": PUBLISHER},
                       deps=(app["urn"], appi["urn"])))
    return out


def test_identities_with_their_data_plane_roles_pass(pack: PolicyPackProcess) -> None:
    assert "data-plane-roles" not in analyze_stack(pack, identity_stack())


@pytest.mark.parametrize(("broken", "name", "fragment"), [
    ({"writer": False}, "cosmos", "stamps-ops directory writes get 403"),
    ({"blob": False}, "retail-eus-app", "no Storage Blob Data Contributor role"),
    ({"publisher": False}, "retail-eus-app", "no Monitoring Metrics Publisher role"),
])
def test_missing_data_plane_roles_fail(pack: PolicyPackProcess, broken: dict[str, bool], name: str,
                                       fragment: str) -> None:
    found = analyze_stack(pack, identity_stack(**broken))
    assert [n for n, _ in found["data-plane-roles"]] == [name] and fragment in found["data-plane-roles"][0][1]

@pytest.mark.parametrize(("typ", "inputs", "fragment"), [
    ("network:ApplicationGateway", {"location": "westus", "zones": ["1", "2", "3"]}, "westus, which has no"),
    ("network:PublicIPAddress", {"location": "West US", "zones": ["1"]}, "which has no availability zones"),
    ("app:ManagedEnvironment", {"location": "westus", "zoneRedundant": True}, "zoneRedundant: true in westus"),
    ("storage:StorageAccount", {"location": "westus", "sku": {"name": "Standard_ZRS"}}, "ZRS is not offered in westus"),
    ("storage:StorageAccount", {"location": "westus", "sku": {"name": "Standard_GZRS"}}, "GZRS is not offered"),
    ("storage:StorageAccount", {"location": "italynorth", "sku": {"name": "Standard_GRS"}}, "no paired region"),
    ("cosmosdb:DatabaseAccount", {"location": "eastus", "locations": [
        {"locationName": "westus", "isZoneRedundant": True, "failoverPriority": 0}]}, "locations[0].isZoneRedundant"),
])
def test_zone_support_rejects_what_the_region_does_not_offer(pack: PolicyPackProcess, typ: str,
                                                             inputs: dict[str, Any], fragment: str) -> None:
    found = analyze(pack, res(AN + typ, "r", {**inputs, "tags": GOOD_TAGS}))
    assert "zone-support" in found and any(fragment in m for m in found["zone-support"]), found
    assert all("learn.microsoft.com" in m for m in found["zone-support"])


@pytest.mark.parametrize(("typ", "inputs"), [
    ("network:ApplicationGateway", {"location": "eastus", "zones": ["1", "2", "3"]}),
    ("network:ApplicationGateway", {"location": "westus"}),
    ("storage:StorageAccount", {"location": "eastus", "sku": {"name": "Standard_GZRS"}}),
    ("storage:StorageAccount", {"location": "westus", "sku": {"name": "Standard_GRS"}}),
])
def test_zone_support_accepts_what_the_region_offers(pack: PolicyPackProcess, typ: str, inputs: dict[str, Any]) -> None:
    assert "zone-support" not in analyze(pack, res(AN + typ, "r", {**inputs, "tags": GOOD_TAGS}))


def gateway_stack(*, secret: bool = True, secret_dep: bool = True, role_dep: bool = True,
                  external: bool = False) -> list[dict[str, Any]]:
    vault = res(AN + "keyvault:Vault", "kv", {"vaultName": "kv-prod-eus", "location": "eastus", "tags": GOOD_TAGS})
    out = [vault]
    deps = []
    if secret:
        s = res(AN + "keyvault:Secret", "edge", {"vaultName": "kv-prod-eus", "secretName": "stamps-edge"})
        out.append(s)
        if secret_dep:
            deps.append(s["urn"])
    role = res(AN + "authorization:RoleAssignment", "agw-kv", {"roleDefinitionId": "/subscriptions/s" + KV_USER})
    out.append(role)
    if role_dep:
        deps.append(role["urn"])
    host = "central-kv" if external else "kv-prod-eus"
    out.append(res(AN + "network:ApplicationGateway", "agw", {
        "location": "eastus", "tags": GOOD_TAGS,
        "sslCertificates": [{"name": "edge", "keyVaultSecretId": f"https://{host}.vault.azure.net/secrets/stamps-edge"}],
    }, deps=tuple(deps)))
    return out


def test_a_provisioned_certificate_read_after_the_role_passes(pack: PolicyPackProcess) -> None:
    assert "gateway-certificate-and-role" not in analyze_stack(pack, gateway_stack())
    # A certificate in a pre-existing, centrally managed vault is provisioned outside the stack.
    assert "gateway-certificate-and-role" not in analyze_stack(pack, gateway_stack(external=True, secret=False))


@pytest.mark.parametrize(("broken", "fragment"), [
    ({"secret": False}, "nothing provisions that secret"),
    ({"secret_dep": False}, "does not depend on the secret"),
    ({"role_dep": False}, "does not depend on a Key Vault Secrets User role assignment"),
])
def test_gateway_certificate_violations(pack: PolicyPackProcess, broken: dict[str, bool], fragment: str) -> None:
    found = analyze_stack(pack, gateway_stack(**broken))
    assert [n for n, _ in found["gateway-certificate-and-role"]] == ["agw"]
    assert fragment in found["gateway-certificate-and-role"][0][1]



# --- role propagation -----------------------------------------------------------------------------------------------
SLEEP = "time:index/sleep:Sleep"


def waited_stack(*, gateway_wait: str | None = "10m", app_wait: str | None = "10m",
                 system_assigned: bool = False) -> list[dict[str, Any]]:
    """A gateway reading its certificate and an app with its roles, each behind a Sleep of the given duration."""
    out = gateway_stack()
    role = next(r for r in out if r["name"] == "agw-kv")
    gw = out[-1]
    if gateway_wait is not None:
        wait = res(SLEEP, "agw-wait", {"createDuration": gateway_wait}, deps=(role["urn"],))
        out.insert(-1, wait)
        gw["dependencies"].append(wait["urn"])
    identity = res(AN + "managedidentity:UserAssignedIdentity", "app-id", {"tags": GOOD_TAGS})
    app_deps = [] if system_assigned else [identity["urn"]]
    app = res(AN + "app:ContainerApp", "retail-eus-app", {"tags": cell_tags("retail", "eastus")}, deps=tuple(app_deps))
    grantee = app["urn"] if system_assigned else identity["urn"]
    roles = [res(AN + "authorization:RoleAssignment", "blob", {"roleDefinitionId": BLOB}, deps=(grantee,)),
             res(AN + "cosmosdb:SqlResourceSqlRoleAssignment", "reader", {
                 "roleDefinitionId": "/x/sqlRoleDefinitions/00000000-0000-0000-0000-000000000001"}, deps=(grantee,))]
    out += [identity, *roles]
    if app_wait is not None:
        wait = res(SLEEP, "app-wait", {"createDuration": app_wait}, deps=tuple(r["urn"] for r in roles))
        out.append(wait)
        app["dependencies"].append(wait["urn"])
    return [*out, app]


def test_consumers_that_wait_for_their_roles_to_propagate_pass(pack: PolicyPackProcess) -> None:
    assert "role-propagation-wait" not in analyze_stack(pack, waited_stack())
    assert "role-propagation-wait" not in analyze_stack(pack, waited_stack(gateway_wait="1h", app_wait="9m60s"))


@pytest.mark.parametrize(("broken", "name", "fragment"), [
    ({"gateway_wait": None}, "agw", "does not wait for its Key Vault role agw-kv to propagate"),
    ({"gateway_wait": "30s"}, "agw", "does not wait for its Key Vault role"),
    ({"app_wait": None}, "retail-eus-app", "starts before its roles blob, reader have propagated"),
    ({"app_wait": "5m"}, "retail-eus-app", "starts before its roles"),
    ({"app_wait": "ten minutes"}, "retail-eus-app", "starts before its roles"),
    ({"system_assigned": True}, "retail-eus-app", "granted to its system-assigned identity"),
])
def test_consumers_that_do_not_wait_for_propagation_fail(pack: PolicyPackProcess, broken: dict[str, Any], name: str,
                                                         fragment: str) -> None:
    found = analyze_stack(pack, waited_stack(**broken))
    assert [n for n, _ in found["role-propagation-wait"]] == [name]
    assert fragment in found["role-propagation-wait"][0][1]


# --- Key Vault data-plane roles --------------------------------------------------------------------------------------
KV = "azure-native:keyvault:Vault"
IDENTITY = AN + "managedidentity:UserAssignedIdentity"
ROLE = AN + "authorization:RoleAssignment"
READER = "/providers/Microsoft.Authorization/roleDefinitions/21090545-7ca7-4776-b22c-e363652d74d2"
SUB = "/subscriptions/00000000-0000-4000-8000-00000000c0de"


def reader_stack(*, consumer: str = "gateway", role: str | None = KV_USER, scope: str = "vault",
                 rbac: bool = True) -> list[dict[str, Any]]:
    """A vault, an identity, its role (on `scope`: vault, group, other) and a consumer reading a secret with it."""
    vault = res(KV, "kv", {"vaultName": "kv-prod-eus", "resourceGroupName": "rg-eus", "location": "eastus",
                           "tags": GOOD_TAGS, "properties": {"enableRbacAuthorization": rbac}})
    other = res(KV, "kv-other", {"vaultName": "kv-other", "resourceGroupName": "rg-other", "location": "eastus",
                                 "tags": GOOD_TAGS, "properties": {"enableRbacAuthorization": True}})
    ident = res(IDENTITY, "reader-id", {"resourceName": "id-reader", "resourceGroupName": "rg-eus", "tags": GOOD_TAGS})
    ident_id = f"{SUB}/resourceGroups/rg-eus/providers/Microsoft.ManagedIdentity/userAssignedIdentities/id-reader"
    out = [vault, other, ident]
    if role is not None:
        target = {"vault": vault, "other": other}.get(scope)
        out.append(res(ROLE, "reader-role", {
            "roleDefinitionId": f"{SUB}{role}",
            "scope": f"{SUB}/resourceGroups/rg-eus" if scope == "group" else "[unknown]"},
            deps=(ident["urn"],) + ((target["urn"],) if target else ())))
    secret_id = "https://kv-prod-eus.vault.azure.net/secrets/stamps-edge"
    if consumer == "gateway":
        out.append(res(AN + "network:ApplicationGateway", "agw", {
            "location": "eastus", "tags": GOOD_TAGS, "identity": {"userAssignedIdentities": [ident_id]},
            "sslCertificates": [{"name": "edge", "keyVaultSecretId": secret_id}]}))
    else:
        out.append(res(AN + "app:ContainerApp", "retail-eus-app", {
            "tags": cell_tags("retail", "eastus"), "identity": {"userAssignedIdentities": [ident_id]},
            "configuration": {"secrets": [{"name": "edge", "keyVaultUrl": secret_id, "identity": ident_id}]}}))
    return out


@pytest.mark.parametrize("consumer", ["gateway", "app"])
def test_readers_holding_a_secret_reading_role_on_their_vault_pass(pack: PolicyPackProcess, consumer: str) -> None:
    for ok in ({}, {"scope": "group"}, {"role": "/providers/Microsoft.Authorization/roleDefinitions/"
                                                "00482a5a-887f-4fb3-b363-3b7fe8e74483"}, {"rbac": False}):
        assert "keyvault-data-plane-roles" not in analyze_stack(pack, reader_stack(consumer=consumer, **ok)), ok


@pytest.mark.parametrize("consumer", ["gateway", "app"])
@pytest.mark.parametrize("broken", [{"role": None}, {"role": READER}, {"scope": "other"}])
def test_readers_without_a_secret_reading_role_on_their_vault_fail(pack: PolicyPackProcess, consumer: str,
                                                                   broken: dict[str, Any]) -> None:
    found = analyze_stack(pack, reader_stack(consumer=consumer, **broken))
    name = "agw" if consumer == "gateway" else "retail-eus-app"
    ((who, message),) = found["keyvault-data-plane-roles"]
    assert who == name and "Key Vault kv-prod-eus" in message and "403" in message


def test_a_gateway_whose_identity_lives_in_another_stack_is_left_to_that_stack(pack: PolicyPackProcess) -> None:
    # The edge unit stack: the gateway names its identity by id; the identity and its grant are the region stack's.
    edge_only = [r for r in reader_stack(role=None) if r["type"] not in (IDENTITY,)]
    assert "keyvault-data-plane-roles" not in analyze_stack(pack, edge_only)


# --- writes into a firewalled vault ---------------------------------------------------------------------------------
def vault_stack(writer: str, *, default_action: str = "Deny") -> list[dict[str, Any]]:
    vault = res(AN + "keyvault:Vault", "kv", {"vaultName": "kv-prod-eus", "location": "eastus", "tags": GOOD_TAGS,
                                              "properties": {"networkAcls": {"defaultAction": default_action}}})
    return [vault, res(writer, "edge", {"name": "stamps-edge"}, deps=(vault["urn"],))]


def test_a_secret_stored_through_arm_in_a_firewalled_vault_passes(pack: PolicyPackProcess) -> None:
    assert "keyvault-writes-through-arm" not in analyze_stack(pack, vault_stack(AN + "keyvault:Secret"))
    assert "keyvault-writes-through-arm" not in analyze_stack(
        pack, vault_stack("azure:keyvault/secret:Secret", default_action="Allow"))


@pytest.mark.parametrize("writer", ["azure:keyvault/secret:Secret", "azure:keyvault/certificate:Certificate"])
def test_a_data_plane_write_into_a_firewalled_vault_fails(pack: PolicyPackProcess, writer: str) -> None:
    found = analyze_stack(pack, vault_stack(writer))
    assert [n for n, _ in found["keyvault-writes-through-arm"]] == ["edge"]
    assert "ForbiddenByFirewall" in found["keyvault-writes-through-arm"][0][1]


@pytest.mark.parametrize(("location", "refused"), [("germanynorth", True), ("Switzerland West", True),
                                                   ("eastus", False), ("global", False)])
def test_a_resource_in_an_access_restricted_region_fails(pack: PolicyPackProcess, location: str,
                                                         refused: bool) -> None:
    found = analyze(pack, res(AN + "keyvault:Vault", "kv", {"location": location, "tags": GOOD_TAGS}))
    assert ("region-access" in found) is refused
    if refused:
        assert "access-restricted" in found["region-access"][0] and "regions-list" in found["region-access"][0]
