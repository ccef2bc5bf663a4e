"""What Azure needs for the plan to deploy and to protect its data, checked on the plan before anyone deploys.

- Regions: zones, zone-redundant and geo-redundant storage only where the region offers them, read from the
  project's capability tables (stamps/config/capabilities.py, one Microsoft Learn source per table).
- Identities: a gateway starts only after its Key Vault role exists and has propagated (an app likewise after the
  roles of its user-assigned identity); a certificate it references from a vault
  this stack creates is provisioned by this stack; every identity the program or `stamps-ops` uses holds the
  data-plane role it needs where key/local auth is off (Cosmos DB, Application Insights, Storage), and every identity
  that reads a Key Vault a role whose data actions allow the read on that vault (stamps/access.py).
- Data protection: SQL auditing into Log Analytics (server level, `master` diagnostic setting), Microsoft
  Defender for SQL, Cosmos DB on restricted networks with continuous backup, CELL blobs geo-redundant where
  the CELL's database is geo-replicated, with versioning and point-in-time restore.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from typing import Any

from pulumi_policy import (
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)

from ._common import (
    CONTAINER_APP,
    DIAGNOSTIC_SETTING,
    MANDATORY,
    SQL_DATABASE,
    SQL_SERVER,
    STORAGE_ACCOUNT,
    UNKNOWN,
    known,
    lookup,
    resource_policy,
    same,
    short_type,
)
from .cells import Node, Topology, is_geo_secondary

COSMOS_ACCOUNT = "azure-native:cosmosdb:DatabaseAccount"
COSMOS_SQL_ROLE = "azure-native:cosmosdb:SqlResourceSqlRoleAssignment"
SQL_AUDIT = "azure-native:sql:ExtendedServerBlobAuditingPolicy"
SQL_ALERTS = "azure-native:sql:ServerSecurityAlertPolicy"
BLOB_SERVICE = "azure-native:storage:BlobServiceProperties"
APP_GATEWAY = "azure-native:network:ApplicationGateway"
ROLE_ASSIGNMENT = "azure-native:authorization:RoleAssignment"
KEY_VAULT = "azure-native:keyvault:Vault"
KV_SECRET = "azure-native:keyvault:Secret"
APP_INSIGHTS = "azure-native:applicationinsights:Component"
USER_IDENTITY = "azure-native:managedidentity:UserAssignedIdentity"
# The pulumiverse `time` provider's Sleep: the documented way for a Pulumi program to wait between two resources.
SLEEP = "time:index/sleep:Sleep"
# "It can take up to 10 minutes for changes to take effect" after a role assignment
# (learn.microsoft.com/azure/role-based-access-control/troubleshooting, "Role assignment changes are not being
# detected"): a consumer created sooner is refused (LinkedAccessCheckFailed, 403 AuthorizationPermissionMismatch).
ROLE_PROPAGATION_SECONDS = 600

# Built-in role definition ids (learn.microsoft.com/azure/role-based-access-control/built-in-roles) and the Cosmos DB
# data-plane contributor (learn.microsoft.com/azure/cosmos-db/nosql/security/reference-data-plane-roles).
KV_SECRETS_USER = "4633458b-17de-408a-b874-0445c86b69e6"
MONITORING_METRICS_PUBLISHER = "3913510d-42f4-4e42-8a64-420c390055eb"
STORAGE_BLOB_DATA_CONTRIBUTOR = "ba92f5b4-2d11-453d-a403-e96b0029c9fe"
COSMOS_DATA_CONTRIBUTOR = "00000000-0000-0000-0000-000000000002"
GEO_SKUS = ("Standard_GRS", "Standard_RAGRS", "Standard_GZRS", "Standard_RAGZRS")


def _capabilities() -> Any:
    # The project's cited tables; the pack runs in the project's venv (PulumiPolicy.yaml: virtualenv ../.venv).
    from stamps.config import capabilities

    return capabilities


# --- zones and storage redundancy per region ------------------------------------------------------------------
def _zone_support(args: ResourceValidationArgs, _cfg: dict[str, Any]) -> Iterator[str]:
    if not args.resource_type.startswith("azure-native:"):
        return
    cap = _capabilities()
    props = args.props
    region = str(known(lambda: props.get("location")) or "").replace(" ", "").lower()
    zones = known(lambda: props.get("zones"))
    if region and zones and not isinstance(zones, str) and zones is not UNKNOWN and not cap.has_zones(region):
        yield f"zones {[str(z) for z in zones]} in {region}, which has no availability zones ({cap.AZ_SOURCE})"
    if region and known(lambda: props.get("zoneRedundant")) is True and not cap.has_zones(region):
        yield f"zoneRedundant: true in {region}, which has no availability zones ({cap.AZ_SOURCE})"
    locations: Any = known(lambda: props.get("locations")) or []
    for i, loc in enumerate(locations):
        name = str(lookup(loc, "locationName") or "").replace(" ", "").lower()
        if lookup(loc, "isZoneRedundant") is True and name and not cap.has_zones(name):
            yield f"locations[{i}].isZoneRedundant: true in {name}, which has no availability zones ({cap.AZ_SOURCE})"
    if args.resource_type == STORAGE_ACCOUNT and region:
        sku = lookup(props, "sku", "name")
        if isinstance(sku, str) and (why := cap.storage_sku_offered(sku, region)):
            yield f"sku.name {sku}: {why}"


def _region_access(args: ResourceValidationArgs, _cfg: dict[str, Any]) -> Iterator[str]:
    """No regional resource in an access-restricted region (capabilities.RESTRICTED_REGIONS, cited there)."""
    if not args.resource_type.startswith("azure-native:"):
        return
    cap = _capabilities()
    region = str(known(lambda: args.props.get("location")) or "").replace(" ", "").lower()
    if region in cap.RESTRICTED_REGIONS:
        yield (f"location {region} is an access-restricted region: Azure refuses the deployment until Microsoft "
               f"grants the subscription access ({cap.RESTRICTED_SOURCE})")


# --- Cosmos DB --------------------------------------------------------------------------------------------------
def _cosmos_network(args: ResourceValidationArgs, _cfg: dict[str, Any]) -> Iterator[str]:
    p = args.props
    if same(p.get("publicNetworkAccess"), "Disabled"):
        return
    if not (p.get("ipRules") or p.get("virtualNetworkRules")):
        yield ("open to all networks: set publicNetworkAccess: Disabled (private endpoints) or restrict it with "
               "ipRules / virtualNetworkRules (an empty rule list allows every network)")
    elif p.get("isVirtualNetworkFilterEnabled") is not True and p.get("virtualNetworkRules"):
        yield "virtualNetworkRules are set but isVirtualNetworkFilterEnabled is not true: they are not enforced"


def _cosmos_backup(args: ResourceValidationArgs, _cfg: dict[str, Any]) -> Iterator[str]:
    kind = lookup(args.props, "backupPolicy", "type")
    if not same(kind, "Continuous"):
        yield (f"backupPolicy.type is {kind!r}: use Continuous, so the directory can be restored to a point in time "
               "by the runbook's data recovery (periodic backups restore only through a support request)")


# --- stack rules --------------------------------------------------------------------------------------------------
def _server_of(uri: Any) -> str | None:
    """`.../servers/<name>/databases/master` -> <name>."""
    if not isinstance(uri, str) or not uri.lower().endswith("/databases/master") or "/servers/" not in uri:
        return None
    return uri.split("/servers/")[1].split("/")[0]


def _sql_auditing(args: StackValidationArgs, report: ReportViolation) -> None:
    topo = Topology(args.resources)
    audits = {n.get("serverName"): n for n in topo.of_type(SQL_AUDIT)}
    master_logs: set[str] = set()
    for d in topo.of_type(DIAGNOSTIC_SETTING):
        server = _server_of(d.get("resourceUri"))
        logs = d.get("logs") or []
        if server and any(lookup(x, "category") == "SQLSecurityAuditEvents" and lookup(x, "enabled") is True
                          for x in logs):
            master_logs.add(server)
    for s in topo.of_type(SQL_SERVER):
        name = s.get("serverName")
        if not isinstance(name, str):
            continue
        a = audits.get(name)
        if a is None or not same(a.get("state"), "Enabled") or a.get("isAzureMonitorTargetEnabled") is not True:
            report(f"SQL server {name} has no auditing into Azure Monitor: add an ExtendedServerBlobAuditingPolicy "
                   "with state: Enabled and isAzureMonitorTargetEnabled: true", s.urn)
        if name not in master_logs:
            report(f"SQL server {name}: no diagnostic setting with SQLSecurityAuditEvents on its master database, "
                   "so server-level audit events reach no workspace", s.urn)


def _sql_defender(args: StackValidationArgs, report: ReportViolation) -> None:
    topo = Topology(args.resources)
    enabled = {n.get("serverName") for n in topo.of_type(SQL_ALERTS) if same(n.get("state"), "Enabled")}
    for s in topo.of_type(SQL_SERVER):
        name = s.get("serverName")
        if isinstance(name, str) and name not in enabled:
            report(f"SQL server {name} has no Microsoft Defender for SQL alerts: add a ServerSecurityAlertPolicy "
                   "with state: Enabled", s.urn)


def _storage_geo(args: StackValidationArgs, report: ReportViolation) -> None:
    topo = Topology(args.resources)
    replicated = {d.tags.get("cell") for d in topo.of_type(SQL_DATABASE) if is_geo_secondary(d)}
    for st in topo.of_type(STORAGE_ACCOUNT):
        cell = st.tags.get("cell")
        if cell not in replicated or st.tags.get("role", "primary") != "primary":
            continue
        sku = lookup(st.props, "sku", "name")
        if isinstance(sku, str) and sku not in GEO_SKUS:
            report(f"CELL {cell}: its database is geo-replicated but storage account {st.name} is {sku}; a failover "
                   f"would find the rows without their blobs: use one of {', '.join(GEO_SKUS)}", st.urn)


def _blob_restore(args: StackValidationArgs, report: ReportViolation) -> None:
    topo = Topology(args.resources)
    for st in topo.of_type(STORAGE_ACCOUNT):
        if not st.tags.get("cell"):
            continue
        mine = [b for b in topo.of_type(BLOB_SERVICE) if st.urn in b.deps]
        ok = any(b.get("isVersioningEnabled") is True and lookup(b.props, "changeFeed", "enabled") is True
                 and lookup(b.props, "restorePolicy", "enabled") is True
                 and isinstance(lookup(b.props, "restorePolicy", "days"), (int, float))
                 and isinstance(lookup(b.props, "deleteRetentionPolicy", "days"), (int, float))
                 and lookup(b.props, "restorePolicy", "days") < lookup(b.props, "deleteRetentionPolicy", "days")
                 for b in mine)
        if not ok:
            report(f"CELL {st.tags['cell']}: storage account {st.name} has no point-in-time restore: its blob service "
                   "needs versioning, change feed, soft delete and a restore policy shorter than soft delete", st.urn)


def _vault_name(secret_id: Any) -> tuple[str, str] | None:
    """`https://<vault>.vault.azure.net/secrets/<name>[/<version>]` -> (vault, name)."""
    if not isinstance(secret_id, str) or ".vault." not in secret_id or "/secrets/" not in secret_id:
        return None
    vault = secret_id.split("//", 1)[-1].split(".", 1)[0]
    return vault, secret_id.split("/secrets/", 1)[1].split("/")[0]


def _role_of(n: Node) -> str:
    rid = n.get("roleDefinitionId")
    return rid.rsplit("/", 1)[-1].lower() if isinstance(rid, str) else ""


def _gateway_certificates(args: StackValidationArgs, report: ReportViolation) -> None:
    """Each certificate a gateway reads from a vault this stack creates exists, and the gateway waits for it and for
    its `Key Vault Secrets User` role (an RBAC grant takes minutes to apply: LinkedAccessCheckFailed otherwise)."""
    topo = Topology(args.resources)
    vaults = {n.get("vaultName") for n in topo.of_type(KEY_VAULT)}
    secrets = {(n.get("vaultName"), n.get("secretName")): n for n in topo.of_type(KV_SECRET)}
    roles = {n.urn: n for n in topo.of_type(ROLE_ASSIGNMENT)}
    for gw in topo.of_type(APP_GATEWAY):
        certs = gw.get("sslCertificates") or []
        refs = [ref for c in certs if (ref := _vault_name(lookup(c, "keyVaultSecretId")))]
        for vault, name in refs:
            if vault not in vaults:
                continue  # a pre-existing, centrally managed vault: provisioned outside this stack
            secret = secrets.get((vault, name))
            if secret is None:
                report(f"gateway {gw.name} references certificate {name!r} in vault {vault}, which this stack "
                       "creates, but nothing provisions that secret (ApplicationGatewayKeyVaultSecretException)",
                       gw.urn)
            elif secret.urn not in gw.deps:
                report(f"gateway {gw.name} does not depend on the secret {name!r} it reads: it may be created first",
                       gw.urn)
        # A role granted by an earlier stack (the region's) has finished before this one starts.
        granted_here = any(_role_of(r) == KV_SECRETS_USER for r in roles.values())
        if refs and granted_here and not any(u in gw.deps and _role_of(r) == KV_SECRETS_USER
                                             for u, r in roles.items()):
            report(f"gateway {gw.name} reads its certificate from Key Vault but does not depend on a Key Vault "
                   "Secrets User role assignment: it can be created before its identity may read the secret",
                   gw.urn)


def _identities_of(topo: Topology, consumer: Node) -> set[str]:
    """The urns a consumer's roles are granted to: itself (system-assigned) and the user-assigned identities it
    depends on."""
    return {consumer.urn} | {i.urn for i in topo.of_type(USER_IDENTITY) if i.urn in consumer.deps}


def _roles_of(topo: Topology, consumer: Node, *types: str) -> list[Node]:
    """Role assignments (RBAC or Cosmos DB data plane) granted to the consumer's identities."""
    mine = _identities_of(topo, consumer)
    return [r for r in topo.of_type(*(types or (ROLE_ASSIGNMENT, COSMOS_SQL_ROLE))) if r.deps & mine]


def _seconds(duration: Any) -> float:
    """A Go duration (`10m`, `90s`, `1h30m`) in seconds; anything else is 0."""
    if not isinstance(duration, str) or not re.fullmatch(r"(\d+(\.\d+)?(h|m|s|ms))+", duration):
        return 0.0
    unit = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
    return sum(float(n) * unit[u] for n, _, u in re.findall(r"(\d+(\.\d+)?)(h|ms|m|s)", duration))


def _role_waits(args: StackValidationArgs, report: ReportViolation) -> None:
    """A resource that uses a data-plane role when it is created waits for the role's propagation, not only its
    creation: a gateway for its Key Vault role, an app for the roles of its identity."""
    topo = Topology(args.resources)
    sleeps = topo.of_type(SLEEP)

    def waited(consumer: Node, role: Node) -> bool:
        return any(s.urn in consumer.deps and role.urn in s.deps
                   and _seconds(s.get("createDuration")) >= ROLE_PROPAGATION_SECONDS for s in sleeps)

    for gw in topo.of_type(APP_GATEWAY):
        for role in (r for r in topo.of_type(ROLE_ASSIGNMENT) if r.urn in gw.deps and _role_of(r) == KV_SECRETS_USER):
            if not waited(gw, role):
                report(f"gateway {gw.name} reads its certificate as soon as it is created but does not wait for its "
                       f"Key Vault role {role.name} to propagate: depend on a {SLEEP} of at least "
                       f"{ROLE_PROPAGATION_SECONDS // 60} minutes that depends on the role", gw.urn)
    for app in topo.of_type(CONTAINER_APP):
        roles = _roles_of(topo, app)
        if any(app.urn in r.deps for r in roles):
            report(f"Container App {app.name}: its roles are granted to its system-assigned identity, which exists "
                   "only with the app, so its first revision starts before they apply: grant them to a user-assigned "
                   "identity the app depends on", app.urn)
            continue
        late = [r.name for r in roles if not waited(app, r)]
        if late:
            report(f"Container App {app.name} starts before its roles {', '.join(sorted(late))} have propagated: "
                   f"depend on a {SLEEP} of at least {ROLE_PROPAGATION_SECONDS // 60} minutes that depends on them",
                   app.urn)


# Types that write keys, secrets or certificates through a vault's data plane (https://<vault>.vault.azure.net), from
# the deploying machine: the Azure Classic provider's Key Vault resources.
VAULT_DATA_PLANE_WRITERS = ("azure:keyvault/secret:Secret", "azure:keyvault/certificate:Certificate",
                            "azure:keyvault/key:Key")


def _vault_writes(args: StackValidationArgs, report: ReportViolation) -> None:
    """Secrets go into a firewalled vault through ARM. "Key Vault firewalls and virtual network rules only apply to the
    data plane ... control plane operations (... deployment of secrets or keys through ARM templates) are not
    affected" (learn.microsoft.com/azure/key-vault/general/overview-vnet-service-endpoints): an ARM
    `vaults/secrets` write (azure-native:keyvault:Secret) reaches a vault that denies the deployer, a data-plane
    write from the deployer's address is refused (403 ForbiddenByFirewall)."""
    topo = Topology(args.resources)
    for vault in topo.of_type(KEY_VAULT):
        props = vault.get("properties") or {}
        closed = same(lookup(props, "networkAcls", "defaultAction"), "Deny") or \
            same(lookup(props, "publicNetworkAccess"), "Disabled")
        if not closed:
            continue
        for w in topo.of_type(*VAULT_DATA_PLANE_WRITERS):
            if vault.urn in w.deps:
                report(f"{w.type} {w.name} writes into vault {vault.get('vaultName')} through its data plane, which "
                       "the vault's firewall denies to the deployer (403 ForbiddenByFirewall): store it with "
                       "azure-native:keyvault:Secret, an ARM control-plane write the firewall does not apply to",
                       w.urn)


def _access() -> Any:
    # Azure's rules for a Key Vault data-plane call (role data actions, scopes), shared with the project's tests.
    from stamps import access

    return access


def _arm_tail(resource_id: Any) -> tuple[str, str] | None:
    """`.../resourceGroups/<rg>/providers/<ns>/<type>/<name>` -> (rg, name), lower-case; None if not such an id."""
    if not isinstance(resource_id, str) or "/resourcegroups/" not in resource_id.lower():
        return None
    parts = resource_id.rstrip("/").split("/")
    lowered = [x.lower() for x in parts]
    return lowered[lowered.index("resourcegroups") + 1], lowered[-1]


def _named_identities(topo: Topology, ids: Any) -> set[str]:
    """The user-assigned identities of this stack that these ARM ids name (across stacks the ids are known values
    where dependencies cannot link them)."""
    listed = ids if isinstance(ids, Sequence) and not isinstance(ids, str) else []
    wanted = set()
    for k in range(len(listed)):
        def item(k: int = k) -> Any:
            return listed[k]
        if tail := _arm_tail(known(item)):  # an identity created in this update has no id yet (preview)
            wanted.add(tail)
    return {n.urn for n in topo.of_type(USER_IDENTITY)
            if (str(n.get("resourceGroupName")).lower(), str(n.get("resourceName")).lower()) in wanted}


def _vault_readers(topo: Topology) -> Iterator[tuple[Node, set[str], str, str]]:
    """(consumer, the urns its roles are granted to, vault name, what it reads) for each Key Vault read the program
    makes: a gateway's listener certificate, a Container App's Key Vault secret references."""
    for gw in topo.of_type(APP_GATEWAY):
        mine = {i.urn for i in topo.of_type(USER_IDENTITY) if i.urn in gw.deps} | \
            _named_identities(topo, lookup(gw.props, "identity", "userAssignedIdentities"))
        for cert in gw.get("sslCertificates") or []:
            if ref := _vault_name(lookup(cert, "keyVaultSecretId")):
                yield gw, mine, ref[0], f"certificate {ref[1]!r}"
    for app in topo.of_type(CONTAINER_APP):
        for secret in lookup(app.props, "configuration", "secrets") or []:
            ref = _vault_name(lookup(secret, "keyVaultUrl"))
            if ref is None:
                continue
            who = lookup(secret, "identity")
            mine = {app.urn} if same(who, "system") else \
                _named_identities(topo, [who]) | {i.urn for i in topo.of_type(USER_IDENTITY) if i.urn in app.deps}
            yield app, mine, ref[0], f"secret {ref[1]!r}"


def _scope_reaches(role: Node, vault: Node | None, vault_name: str) -> bool:
    """Whether the role's scope is the vault or a parent of it: by dependency on the vault this stack creates, else
    by the scope's known value (an existing vault's id, its resource group, the subscription)."""
    if vault is not None and role.watches(vault.urn, "scope"):
        return True
    scope = role.get("scope")
    if not isinstance(scope, str):
        return False
    parts = [x.lower() for x in scope.rstrip("/").split("/")]
    if parts[-2:] == ["vaults", vault_name.lower()]:
        return True
    rg = str(vault.get("resourceGroupName")).lower() if vault is not None else None
    return len(parts) == 3 or (len(parts) == 5 and parts[3] == "resourcegroups" and parts[4] == rg)


def _keyvault_roles(args: StackValidationArgs, report: ReportViolation) -> None:
    """Every identity the program reads a Key Vault with holds a data-plane role there that allows the read. Key auth
    does not exist on an RBAC vault: without a role whose data actions include secrets/getSecret at the vault or a
    parent scope, Azure answers 403 (a gateway fails with LinkedAccessCheckFailed/ApplicationGatewayKeyVaultSecret
    Exception; an app's revision never starts)."""
    access = _access()
    topo = Topology(args.resources)
    vaults = {str(v.get("vaultName")).lower(): v for v in topo.of_type(KEY_VAULT)}
    roles = topo.of_type(ROLE_ASSIGNMENT)
    for consumer, identities, vault_name, what in _vault_readers(topo):
        if not identities - {consumer.urn} and consumer.type == APP_GATEWAY:
            continue  # its identity (and so its grant) belongs to another stack, deployed before this one
        vault = vaults.get(vault_name.lower())
        if vault is not None and lookup(vault.props, "properties", "enableRbacAuthorization") is not True:
            continue  # an access-policy vault: keyvault-rbac-authorization reports it
        granted = [r for r in roles if any(r.watches(i, "principalId") for i in identities)
                   and _scope_reaches(r, vault, vault_name) and access.role_allows(_role_of(r), access.READ_SECRET)]
        if not granted:
            report(f"{short_type(consumer.type)} {consumer.name} reads {what} from Key Vault {vault_name}, but no role "
                   "assignment in this stack grants its identity a role with secrets/getSecret there (Key Vault "
                   "Secrets User, at the vault or a parent scope): Azure answers 403 when it reads", consumer.urn)


def _data_plane_roles(args: StackValidationArgs, report: ReportViolation) -> None:
    topo = Topology(args.resources)
    for account in topo.of_type(COSMOS_ACCOUNT):
        if account.get("disableLocalAuth") is not True:
            continue
        writers = [g for g in topo.of_type(COSMOS_SQL_ROLE)
                   if account.urn in g.deps and _role_of(g) == COSMOS_DATA_CONTRIBUTOR]
        if not writers:
            report(f"Cosmos DB account {account.name} has key auth disabled but grants no principal the Built-in Data "
                   "Contributor role: stamps-ops directory writes get 403 (set stamps:operators)", account.urn)
    telemetry = any(c.get("disableLocalAuth") is True for c in topo.of_type(APP_INSIGHTS))
    for app in topo.of_type(CONTAINER_APP):
        granted = {_role_of(r) for r in _roles_of(topo, app, ROLE_ASSIGNMENT)}
        if STORAGE_BLOB_DATA_CONTRIBUTOR not in granted and app.tags.get("cell"):
            report(f"Container App {app.name} has no Storage Blob Data Contributor role: its storage has shared keys "
                   "off, so the app cannot read or write its blobs", app.urn)
        if telemetry and MONITORING_METRICS_PUBLISHER not in granted:
            report(f"Container App {app.name} has no Monitoring Metrics Publisher role on Application Insights, "
                   "whose local auth is off: its telemetry is rejected and the KPI queries see no data", app.urn)


def policies() -> list[ResourceValidationPolicy | StackValidationPolicy]:
    return [
        resource_policy("zone-support",
                        "Zones, zone-redundant and geo-redundant storage only in regions that offer them.",
                        None, _zone_support),
        resource_policy("region-access",
                        "No regional resource in an access-restricted Azure region.", None, _region_access),
        resource_policy("cosmos-network-restricted",
                        "Cosmos DB accounts are reachable only from restricted networks or private endpoints.",
                        [COSMOS_ACCOUNT], _cosmos_network),
        resource_policy("cosmos-continuous-backup",
                        "Cosmos DB accounts use continuous backup (point-in-time restore).",
                        [COSMOS_ACCOUNT], _cosmos_backup),
        StackValidationPolicy(
            name="sql-auditing",
            description="Every Azure SQL server audits into Log Analytics (policy + master diagnostic setting).",
            validate=_sql_auditing, enforcement_level=MANDATORY),
        StackValidationPolicy(
            name="sql-defender",
            description="Every Azure SQL server has Microsoft Defender for SQL alerts enabled.",
            validate=_sql_defender, enforcement_level=MANDATORY),
        StackValidationPolicy(
            name="storage-geo-redundancy",
            description="A CELL whose database is geo-replicated keeps its blobs geo-redundant.",
            validate=_storage_geo, enforcement_level=MANDATORY),
        StackValidationPolicy(
            name="blob-point-in-time-restore",
            description="CELL storage has blob versioning, change feed, soft delete and point-in-time restore.",
            validate=_blob_restore, enforcement_level=MANDATORY),
        StackValidationPolicy(
            name="gateway-certificate-and-role",
            description="Gateway certificates in this stack's vaults are provisioned; the gateway waits for them "
                        "and for its Key Vault role.",
            validate=_gateway_certificates, enforcement_level=MANDATORY),
        StackValidationPolicy(
            name="keyvault-writes-through-arm",
            description="Secrets and certificates go into a firewalled Key Vault through ARM, not its data plane.",
            validate=_vault_writes, enforcement_level=MANDATORY),
        StackValidationPolicy(
            name="role-propagation-wait",
            description="A gateway or app that uses a data-plane role at creation waits for the role to propagate.",
            validate=_role_waits, enforcement_level=MANDATORY),
        StackValidationPolicy(
            name="keyvault-data-plane-roles",
            description="Every identity that reads a Key Vault (a gateway's certificate, an app's secrets) holds a "
                        "role allowing the read on that vault in the same stack.",
            validate=_keyvault_roles, enforcement_level=MANDATORY),
        StackValidationPolicy(
            name="data-plane-roles",
            description="Every identity the program or stamps-ops uses holds its data-plane role where keys are off.",
            validate=_data_plane_roles, enforcement_level=MANDATORY),
    ]
