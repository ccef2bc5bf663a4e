"""The CELL layer: one stamp of compute, data and storage for its tenants.

Runbook: "CELL Monitoring - Container App performance, SQL Database metrics, Storage utilization" and
"DR Architecture": each CELL runs in its primary region with a standby twin in the DR region.
- Container Apps: an internal, VNet-integrated environment reached only through the regional App Gateway;
  multiple-revision mode so releases can shift traffic between revisions (blue-green).
- Azure SQL: Entra-only authentication, TLS 1.2, no public network access (a private endpoint instead).
  A standby's database is a geo-secondary of its primary; restores become new databases.
- Storage: HTTPS only, TLS 1.2, no public blob access, no shared keys (the app uses its managed identity).
Shared CELLs hold many tenants (row-level tenant column), dedicated CELLs exactly one.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_azure_native as azure

from stamps.components.base import COSMOS_ROLE_IDS, StampsComponent
from stamps.config.capabilities import sql_zone_redundant, storage_sku, zones_for
from stamps.config.model import AppConfig
from stamps.environment import CellInstance, Environment
from stamps.naming import revision_name, revision_suffix

# Slow operations: a zone-redundant Premium database or a geo-secondary seeds for a long time; the provider's
# default would give up while Azure is still working (and the retry then fails on the half-created resource).
SQL_TIMEOUTS = pulumi.CustomTimeouts(create="90m", update="90m", delete="60m")
# Blob soft delete must outlast point-in-time restore by at least a day
# (https://learn.microsoft.com/azure/storage/blobs/point-in-time-restore-manage).
BLOB_SOFT_DELETE_DAYS = 14
BLOB_RESTORE_DAYS = 7


@dataclass(frozen=True)
class CellNetwork:
    """What the regional layer hands a CELL: its subnet and the private endpoint plumbing."""

    subnet_id: pulumi.Input[str]
    vnet_id: pulumi.Input[str]
    endpoint_subnet_id: pulumi.Input[str]
    sql_dns_zone_id: pulumi.Input[str]
    blob_dns_zone_id: pulumi.Input[str]


@dataclass(frozen=True)
class Shared:
    """Global inputs every CELL needs."""

    workspace_id: pulumi.Input[str]
    workspace_customer_id: pulumi.Input[str]
    subscription_id: pulumi.Input[str]
    tenant_id: pulumi.Input[str]
    # Telemetry: Application Insights with local auth disabled takes Entra-authenticated ingestion only.
    app_insights_id: pulumi.Input[str] | None = None
    app_insights_connection_string: pulumi.Input[str] | None = None
    # The tenant directory (Cosmos DB, key auth disabled): CELL apps read it with a data-plane role.
    directory: Directory | None = None


@dataclass(frozen=True)
class Directory:
    resource_group_name: pulumi.Input[str]
    account_name: pulumi.Input[str]
    account_id: pulumi.Input[str]
    endpoint: pulumi.Input[str]
    container_scope: str  # data-plane scope of the tenants container: /dbs/<db>/colls/<container>


@dataclass(frozen=True)
class PrimaryData:
    """What a standby takes from its primary: the database it replicates and the storage account it uses."""

    database_id: pulumi.Input[str]
    storage_id: pulumi.Input[str]
    blob_endpoint: pulumi.Input[str]


@dataclass(frozen=True)
class Runtime:
    """What the app is told about its surroundings: its identity and where its blobs are."""

    client_id: pulumi.Input[str]
    blob_endpoint: pulumi.Input[str]
    telemetry: pulumi.Input[str] | None


def container_template(inst: CellInstance, app: AppConfig, version: str, runtime: Runtime) -> dict[str, Any]:
    """The CELL app's revision template as data: what the Container App deploys and what its suffix hashes.

    One function for both, so the suffix changes exactly when the template does (scale on failover, isolation,
    image, probes, env), and `Cell._traffic` can name the stable revision by the same rule.
    """
    cfg = inst.cell
    # An image given with a tag is pinned (e.g. a sample with only `latest`); otherwise the version is the tag.
    last = app.image.rsplit("/", 1)[-1]
    image = app.image if ":" in last else f"{app.image}:{version}"
    env: list[tuple[str, pulumi.Input[str]]] = [
        ("CELL_NAME", inst.name), ("CELL_ROLE", inst.role), ("TENANCY_MODEL", inst.model), ("APP_VERSION", version),
        # DefaultAzureCredential picks the user-assigned identity named by AZURE_CLIENT_ID (azure-identity).
        ("AZURE_CLIENT_ID", runtime.client_id),
        # The CELL's blobs: the primary's geo-redundant account, for a standby too; after a storage account
        # failover the same endpoint answers from the secondary region (Cell._blob_storage).
        ("STORAGE_BLOB_ENDPOINT", runtime.blob_endpoint),
    ]
    if runtime.telemetry is not None:
        # Entra-authenticated ingestion (local auth is disabled): the SDK reads the connection string and
        # authenticates with the user-assigned identity given by ClientId (Monitoring Metrics Publisher on the
        # component): learn.microsoft.com/azure/azure-monitor/app/azure-ad-authentication.
        env += [("APPLICATIONINSIGHTS_CONNECTION_STRING", runtime.telemetry),
                ("APPLICATIONINSIGHTS_AUTHENTICATION_STRING",
                 pulumi.Output.concat("Authorization=AAD;ClientId=", runtime.client_id))]
    return {
        "image": image,
        "cpu": cfg.cpu,
        "memory": cfg.memory,
        "env": env,
        "port": app.port,
        "liveness": app.liveness_path,
        "readiness": app.readiness_path,
        # An isolated CELL keeps no replica running: no code of it can serve or act.
        "minReplicas": 0 if inst.isolated else inst.replicas.min,
        "maxReplicas": inst.replicas.max,
        "concurrentRequests": "100",
    }


def template_suffix(version: str, template: dict[str, Any]) -> pulumi.Output[str]:
    """The revision suffix of a template; an Output because the template holds computed values (the identity's
    client id, the telemetry connection string)."""
    return pulumi.Output.from_input(template).apply(lambda t: revision_suffix(version, t))


class Cell(StampsComponent):
    """A CELL instance (primary or standby) with its app, database and storage."""

    def __init__(self, name: str, env: Environment, inst: CellInstance, net: CellNetwork, shared: Shared,
                 primary: PrimaryData | None = None,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("stamps:cell:Cell", name, opts)
        n = env.naming
        cfg = inst.cell
        # A dedicated CELL names its tenant: `stamps routes` proves no other tenant's traffic reaches it.
        dedicated = inst.tenants[0].id if inst.model == "dedicated" and len(inst.tenants) == 1 else ""
        tags = env.tags("cell", region=inst.region, cell=inst.name, tenancy=inst.model, role=inst.role,
                        tenant=dedicated)
        self.instance = inst
        # Zone redundancy: a choice per CELL (and per standby), on by default where the region offers zones.
        zone_choice = cfg.zone_redundant if inst.role == "primary" else (cfg.standby.zone_redundant
                                                                           if cfg.standby else None)
        zoned = zones_for(inst.region, zone_choice)
        app = env.config.app_for(cfg)
        if app is None:  # the loader refuses this config (stamps:app is required outside dev)
            raise ValueError(f"CELL {inst.name} has no container image and port")

        self.resource_group = azure.resources.ResourceGroup(
            self.child("rg"), resource_group_name=n.cell_group(inst.key), location=inst.region, tags=tags,
            opts=self.opts(),
        )
        rg = self.resource_group.name

        # --- Container Apps -------------------------------------------------------------------------
        self.environment = azure.app.ManagedEnvironment(
            self.child("cae"),
            environment_name=n.managed_env(inst.key),
            resource_group_name=rg,
            location=inst.region,
            vnet_configuration=azure.app.VnetConfigurationArgs(infrastructure_subnet_id=net.subnet_id, internal=True),
            workload_profiles=[azure.app.WorkloadProfileArgs(name="Consumption", workload_profile_type="Consumption")],
            app_logs_configuration=azure.app.AppLogsConfigurationArgs(destination="azure-monitor"),
            # Set at creation only; needs the VNet above (reliability-azure-container-apps).
            zone_redundant=zoned,
            tags=tags,
            opts=self.opts(),
        )
        self.diagnose(self.environment, shared.workspace_id)
        self._environment_dns(net, rg, tags)

        app_name = n.container_app(inst.key)
        # --- Identity, storage and the app's data-plane roles, propagated before the app starts ------------------
        # A user-assigned identity exists before the app: its roles are granted, and have propagated, before the
        # first revision starts. (A system-assigned one exists only with the app, whose first replicas would run
        # without their roles; Container Apps recommends user-assigned identities for the same reason when pulling
        # images: learn.microsoft.com/azure/container-apps/managed-identity-image-pull.)
        self.identity = azure.managedidentity.UserAssignedIdentity(
            self.child("app-id"), resource_name_=f"id-{app_name}", resource_group_name=rg, location=inst.region,
            tags=tags, opts=self.opts(),
        )
        principal = self.identity.principal_id
        # A standby keeps no account (self.storage stays None): its blobs are its primary's.
        self.storage: azure.storage.StorageAccount | None = None
        self.storage_id, self.blob_endpoint = self._blob_storage(env, inst, rg, tags, shared, zoned, primary)
        roles: list[pulumi.CustomResource] = [
            self.grant("app-blob-access", self.storage_id, principal, "Storage Blob Data Contributor",
                       shared.subscription_id)]
        if shared.app_insights_id is not None:
            roles.append(self.grant("app-telemetry", shared.app_insights_id, principal, "Monitoring Metrics Publisher",
                                    shared.subscription_id))
        if shared.directory is not None:
            d = shared.directory
            roles.append(azure.cosmosdb.SqlResourceSqlRoleAssignment(
                self.child("app-directory-read"),
                account_name=d.account_name,
                resource_group_name=d.resource_group_name,
                role_assignment_id=pulumi.Output.all(d.account_id, principal).apply(
                    lambda p: str(uuid.uuid5(uuid.NAMESPACE_URL, f"{p[0]}{d.container_scope}/{p[1]}/reader"))),
                principal_id=principal,
                role_definition_id=pulumi.Output.concat(
                    d.account_id, "/sqlRoleDefinitions/", COSMOS_ROLE_IDS["Cosmos DB Built-in Data Reader"]),
                scope=pulumi.Output.concat(d.account_id, d.container_scope),
                opts=self.opts(),
            ))
        self.roles_wait = self.propagation_wait("app-roles-wait", roles)

        version = cfg.canary.version if cfg.canary else cfg.version
        runtime = Runtime(client_id=self.identity.client_id,
                          blob_endpoint=self.blob_endpoint,
                          telemetry=shared.app_insights_connection_string)
        template = container_template(inst, app, version, runtime)
        self.revision_suffix = template_suffix(version, template)
        self.app = azure.app.ContainerApp(
            self.child("app"),
            container_app_name=app_name,
            resource_group_name=rg,
            location=inst.region,
            managed_environment_id=self.environment.id,
            workload_profile_name="Consumption",
            identity=azure.app.ManagedServiceIdentityArgs(type="UserAssigned",
                                                         user_assigned_identities=[self.identity.id]),
            configuration=azure.app.ConfigurationArgs(
                active_revisions_mode="Multiple",
                max_inactive_revisions=5,
                ingress=azure.app.IngressArgs(
                    external=True,  # external to the environment; the environment itself is VNet-internal
                    target_port=app.port,
                    transport="auto",
                    allow_insecure=False,
                    traffic=self._traffic(inst, app_name, app, runtime),
                    # Isolation: deny every caller at the ingress as well, so nothing reaches a revision.
                    ip_security_restrictions=[
                        azure.app.IpSecurityRestrictionRuleArgs(
                            name="isolated", action="Deny", ip_address_range="0.0.0.0/0",
                            description="CELL isolated by stamps-ops",
                        )
                    ] if inst.isolated else None,
                ),
            ),
            template=azure.app.TemplateArgs(
                revision_suffix=self.revision_suffix,
                containers=[
                    azure.app.ContainerArgs(
                        name="app",
                        image=template["image"],
                        resources=azure.app.ContainerResourcesArgs(cpu=template["cpu"], memory=template["memory"]),
                        env=[azure.app.EnvironmentVarArgs(name=k, value=v) for k, v in template["env"]],
                        probes=[
                            azure.app.ContainerAppProbeArgs(
                                type="Liveness", period_seconds=10, failure_threshold=3,
                                http_get=azure.app.ContainerAppProbeHttpGetArgs(path=template["liveness"],
                                                                                port=template["port"]),
                            ),
                            azure.app.ContainerAppProbeArgs(
                                type="Readiness", period_seconds=5, failure_threshold=3,
                                http_get=azure.app.ContainerAppProbeHttpGetArgs(path=template["readiness"],
                                                                                port=template["port"]),
                            ),
                        ],
                    )
                ],
                scale=azure.app.ScaleArgs(
                    min_replicas=template["minReplicas"],
                    max_replicas=template["maxReplicas"],
                    rules=[
                        azure.app.ScaleRuleArgs(
                            name="http-concurrency",
                            http=azure.app.HttpScaleRuleArgs(
                                metadata={"concurrentRequests": template["concurrentRequests"]}),
                        )
                    ],
                ),
            ),
            # Who isolated the CELL and why travels with its app, visible in the portal.
            tags=tags | {"isolated-by": cfg.isolation.by, "isolated-at": cfg.isolation.at,
                         "isolation-reason": cfg.isolation.reason[:256]}
            if inst.isolated and cfg.isolation is not None else tags,
            opts=self.opts(depends_on=[self.roles_wait]),
        )
        self.diagnose(self.app, shared.workspace_id)

        # --- Azure SQL --------------------------------------------------------------------------------
        admins = env.config.sql_admins
        self.sql_server = azure.sql.Server(
            self.child("sql"),
            server_name=n.sql_server(inst.key),
            resource_group_name=rg,
            location=inst.region,
            version="12.0",
            minimal_tls_version="1.2",
            public_network_access="Disabled",
            identity=azure.sql.ResourceIdentityArgs(type="SystemAssigned"),
            administrators=azure.sql.ServerExternalAdministratorArgs(
                administrator_type="ActiveDirectory",
                azure_ad_only_authentication=True,
                login=admins.login,
                sid=admins.object_id,
                principal_type=admins.principal_type,
                tenant_id=shared.tenant_id,
            ),
            tags=tags,
            opts=self.opts(custom_timeouts=SQL_TIMEOUTS),
        )
        self._audit_and_defend(shared)
        self.database = self._database(env, inst, rg, tags, primary.database_id if primary else None, zone_choice)
        self.diagnose(self.database, shared.workspace_id)
        self.restores = [
            azure.sql.Database(
                self.child(f"restore-{r.name}"),
                database_name=f"{n.sql_database(inst.name)}-{r.name}",
                resource_group_name=rg,
                server_name=self.sql_server.name,
                location=inst.region,
                create_mode="PointInTimeRestore",
                source_database_id=self.database.id,
                restore_point_in_time=r.point_in_time,
                tags={**tags, "restored-from": r.point_in_time},
                opts=self.opts(custom_timeouts=SQL_TIMEOUTS),
            )
            for r in (cfg.restores if inst.role == "primary" else [])
        ]

        # --- Private endpoints: the only network path to the CELL's data ---------------------------------
        self.private_endpoint("sql", self.sql_server.id, "sqlServer", net.endpoint_subnet_id, net.sql_dns_zone_id,
                               rg, inst.region, tags)
        # A standby's endpoint reaches its primary's account from the DR region's network (private endpoints may
        # sit in another region than their resource), registered in the DR region's privatelink.blob zone.
        self.private_endpoint("blob", self.storage_id, "blob", net.endpoint_subnet_id, net.blob_dns_zone_id,
                               rg, inst.region, tags)

        self.fqdn: pulumi.Output[str] = self.app.configuration.apply(
            lambda c: (c.ingress.fqdn if c and c.ingress else None) or ""
        )
        self.static_ip: pulumi.Output[str] = self.environment.static_ip
        self.register_outputs(
            {
                "appId": self.app.id,
                "fqdn": self.fqdn,
                "revisionSuffix": self.revision_suffix,
                "sqlServerId": self.sql_server.id,
                "databaseId": self.database.id,
                "storageId": self.storage_id,
            }
        )

    @staticmethod
    def _traffic(inst: CellInstance, app_name: str, app: AppConfig,
                 runtime: Runtime) -> list[azure.app.TrafficWeightArgs]:
        """Blue-green: the stable revision keeps the rest of the traffic while a canary takes its share.

        Both revisions are named by the one rule (revision_suffix of their template): the candidate's is the
        template deployed now, the stable one's the same template on the stable version.
        """
        cfg = inst.cell
        if cfg.canary is None:
            return [azure.app.TrafficWeightArgs(latest_revision=True, weight=100, label="stable")]

        def name(version: str) -> pulumi.Output[str]:
            suffix = template_suffix(version, container_template(inst, app, version, runtime))
            return suffix.apply(lambda s: revision_name(app_name, s))

        weights = [
            azure.app.TrafficWeightArgs(revision_name=name(cfg.canary.version), weight=cfg.canary.weight,
                                        label="candidate"),
            azure.app.TrafficWeightArgs(revision_name=name(cfg.version), weight=100 - cfg.canary.weight,
                                        label="stable"),
        ]
        return [w for w in weights if w.weight or w.label == "stable"]  # type: ignore[attr-defined]

    def _blob_storage(self, env: Environment, inst: CellInstance, rg: pulumi.Input[str], tags: dict[str, str],
                      shared: Shared, zoned: bool,
                      primary: PrimaryData | None) -> tuple[pulumi.Input[str], pulumi.Input[str]]:
        """The CELL's blobs (account id, blob endpoint): a primary's own account; a standby's is its primary's.

        A standby keeps no account of its own (it would be empty on the day it takes over). A primary whose database
        is geo-replicated keeps its blobs geo-redundant (GZRS where the region has zones, else GRS): Azure copies
        them to the paired region, and on a regional outage a customer-managed account failover makes that copy
        the primary, under the same account name and endpoints ("the secondary region becomes the new primary
        region ... DNS entries are updated", learn.microsoft.com/azure/storage/common/storage-disaster-recovery-
        guidance; POST .../storageAccounts/{name}/failover). A read-access secondary endpoint (RA-GZRS) would
        serve reads only: the app writes, so the standby uses the account's primary endpoint, reached over its own
        private endpoint, and the failover playbook fails the account over (ops/playbooks/failover.py).
        """
        n = env.naming
        cfg = inst.cell
        if inst.role == "standby":
            if primary is None:
                raise ValueError(f"standby CELL {inst.key} needs its primary's storage account")
            return primary.storage_id, primary.blob_endpoint
        choice = storage_sku(inst.region, zone_redundant=zoned, geo=cfg.standby is not None)
        storage = azure.storage.StorageAccount(
            self.child("st"),
            account_name=n.storage(inst.key),
            resource_group_name=rg,
            location=inst.region,
            kind="StorageV2",
            sku=azure.storage.SkuArgs(name=choice.sku),
            enable_https_traffic_only=True,
            minimum_tls_version="TLS1_2",
            allow_blob_public_access=False,
            allow_shared_key_access=False,
            default_to_o_auth_authentication=True,
            public_network_access="Disabled",
            tags=tags,
            # After an unplanned account failover (`stamps-ops failover-storage`) Azure reports the account in the
            # paired region and locally redundant. A location change could only be a replacement, which would delete
            # the CELL's blobs: never. While the region is failed over the program also leaves the redundancy as
            # Azure has it (the SKU above may not exist in the paired region); geo-redundancy is re-enabled, and the
            # account failed back, before failback (README, "DR: storage").
            opts=self.opts(ignore_changes=["location", "sku"] if env.failed_over(inst.region) else ["location"]),
        )
        self.storage = storage
        self.diagnose(storage, shared.workspace_id)
        # Versioning + change feed + soft delete are what point-in-time restore of blobs needs; restore stays a
        # day shorter than soft delete (point-in-time-restore-manage).
        blobs = azure.storage.BlobServiceProperties(
            self.child("st-blob"),
            account_name=storage.name,
            resource_group_name=rg,
            blob_services_name="default",
            is_versioning_enabled=True,
            change_feed=azure.storage.ChangeFeedArgs(enabled=True),
            delete_retention_policy=azure.storage.DeleteRetentionPolicyArgs(enabled=True,
                                                                            days=BLOB_SOFT_DELETE_DAYS),
            container_delete_retention_policy=azure.storage.DeleteRetentionPolicyArgs(
                enabled=True, days=BLOB_SOFT_DELETE_DAYS),
            restore_policy=azure.storage.RestorePolicyPropertiesArgs(enabled=True, days=BLOB_RESTORE_DAYS),
            opts=self.opts(),
        )
        # Read/write/delete logs of the blobs (the account-level setting carries only metrics).
        self.diagnose(storage, shared.workspace_id, name=self.child("st-blob-diag"),
                      resource_uri=pulumi.Output.concat(storage.id, "/blobServices/default"),
                      log_categories=("StorageRead", "StorageWrite", "StorageDelete"), metrics=("Transaction",),
                      depends_on=[blobs])
        return storage.id, storage.primary_endpoints.apply(lambda e: e.blob)

    def _audit_and_defend(self, shared: Shared) -> None:
        """Server-level SQL auditing into Log Analytics, and Microsoft Defender for SQL alerts.

        Auditing to Azure Monitor needs both the policy (state Enabled, isAzureMonitorTargetEnabled) and a
        diagnostic setting with SQLSecurityAuditEvents on the `master` database for server-level audit
        (https://learn.microsoft.com/rest/api/sql/server-blob-auditing-policies/create-or-update,
        "IsAzureMonitorTargetEnabled").
        """
        rg = self.resource_group.name
        audit = azure.sql.ExtendedServerBlobAuditingPolicy(
            self.child("sql-audit"),
            resource_group_name=rg,
            server_name=self.sql_server.name,
            blob_auditing_policy_name="default",
            state=azure.sql.BlobAuditingPolicyState.ENABLED,
            is_azure_monitor_target_enabled=True,
            opts=self.opts(),
        )
        self.diagnose(self.sql_server, shared.workspace_id, name=self.child("sql-audit-diag"),
                      resource_uri=pulumi.Output.concat(self.sql_server.id, "/databases/master"),
                      log_categories=("SQLSecurityAuditEvents",), metrics=(), depends_on=[audit])
        # Microsoft Defender for SQL on the server: threat detection alerts (SQL injection, anomalous access).
        azure.sql.ServerSecurityAlertPolicy(
            self.child("sql-defender"),
            resource_group_name=rg,
            server_name=self.sql_server.name,
            security_alert_policy_name="Default",
            state=azure.sql.SecurityAlertsPolicyState.ENABLED,
            email_account_admins=True,
            opts=self.opts(),
        )

    def _database(self, env: Environment, inst: CellInstance, rg: pulumi.Input[str], tags: dict[str, str],
                  primary_database_id: pulumi.Input[str] | None, zone_choice: bool | None) -> azure.sql.Database:
        n = env.naming
        cfg = inst.cell
        # A standby leads cross-edition upgrades (Azure wants the geo-secondary upgraded first).
        sku = (cfg.standby.sql_sku if inst.role == "standby" and cfg.standby and cfg.standby.sql_sku
               else cfg.sql.sku)
        common = dict(
            database_name=n.sql_database(inst.name),
            resource_group_name=rg,
            server_name=self.sql_server.name,
            location=inst.region,
            sku=azure.sql.SkuArgs(name=sku),
            # Premium / Business Critical / Hyperscale only, in regions with zones (capabilities.py).
            zone_redundant=sql_zone_redundant(sku, inst.region, zone_choice),
            tags=tags,
            opts=self.opts(custom_timeouts=SQL_TIMEOUTS),
        )
        if inst.role == "standby":
            if primary_database_id is None:
                raise ValueError(f"standby CELL {inst.key} needs its primary's database id")
            # A geo-secondary: the standby holds a live replica, so failover loses at most seconds of data.
            return azure.sql.Database(
                self.child("db"), create_mode="Secondary", secondary_type="Geo",
                source_database_id=primary_database_id, **common,  # type: ignore[arg-type]
            )
        return azure.sql.Database(
            self.child("db"),
            max_size_bytes=cfg.sql.max_size_gb * 1024**3,
            requested_backup_storage_redundancy="Geo",
            **common,  # type: ignore[arg-type]
        )

    def _environment_dns(self, net: CellNetwork, rg: pulumi.Input[str], tags: dict[str, str]) -> None:
        """An internal environment's domain resolves only through a private zone named after it, with every
        name pointing at the environment's static IP: the regional App Gateway reaches the app by its FQDN
        (learn.microsoft.com/azure/container-apps/waf-app-gateway)."""
        zone = azure.privatedns.PrivateZone(
            self.child("cae-dns"), private_zone_name=self.environment.default_domain, resource_group_name=rg,
            location="global", tags=tags, opts=self.opts(),
        )
        azure.privatedns.PrivateRecordSet(
            self.child("cae-dns-any"), private_zone_name=zone.name, relative_record_set_name="*", record_type="A",
            resource_group_name=rg, ttl=300,
            a_records=[azure.privatedns.ARecordArgs(ipv4_address=self.environment.static_ip)], opts=self.opts(),
        )
        azure.privatedns.VirtualNetworkLink(
            self.child("cae-dns-link"), virtual_network_link_name=f"link-{self._name}", private_zone_name=zone.name,
            resource_group_name=rg, location="global", registration_enabled=False,
            virtual_network=azure.privatedns.SubResourceArgs(id=net.vnet_id), tags=tags, opts=self.opts(),
        )
