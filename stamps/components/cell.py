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

from dataclasses import dataclass

import pulumi
import pulumi_azure_native as azure

from stamps.components.base import StampsComponent, role_assignment_name, role_definition_id
from stamps.environment import CellInstance, Environment


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


def revision_suffix(version: str) -> str:
    """Container Apps revision suffixes allow lowercase letters, digits and hyphens."""
    return "v" + version.lower().replace(".", "-")


class Cell(StampsComponent):
    """A CELL instance (primary or standby) with its app, database and storage."""

    def __init__(self, name: str, env: Environment, inst: CellInstance, net: CellNetwork, shared: Shared,
                 primary_database_id: pulumi.Input[str] | None = None,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("stamps:cell:Cell", name, opts)
        n = env.naming
        cfg = inst.cell
        # A dedicated CELL names its tenant: `stamps routes` proves no other tenant's traffic reaches it.
        dedicated = inst.tenants[0].id if inst.model == "dedicated" and len(inst.tenants) == 1 else ""
        tags = env.tags("cell", region=inst.region, cell=inst.name, tenancy=inst.model, role=inst.role,
                        tenant=dedicated)
        self.instance = inst

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
            zone_redundant=False,
            tags=tags,
            opts=self.opts(),
        )
        self.diagnose(self.environment, shared.workspace_id)
        self._environment_dns(net, rg, tags)

        self.app = azure.app.ContainerApp(
            self.child("app"),
            container_app_name=n.container_app(inst.key),
            resource_group_name=rg,
            location=inst.region,
            managed_environment_id=self.environment.id,
            workload_profile_name="Consumption",
            identity=azure.app.ManagedServiceIdentityArgs(type="SystemAssigned"),
            configuration=azure.app.ConfigurationArgs(
                active_revisions_mode="Multiple",
                max_inactive_revisions=5,
                ingress=azure.app.IngressArgs(
                    external=True,  # external to the environment; the environment itself is VNet-internal
                    target_port=8080,
                    transport="auto",
                    allow_insecure=False,
                    traffic=self._traffic(inst, n.container_app(inst.key)),
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
                revision_suffix=revision_suffix(cfg.canary.version if cfg.canary else cfg.version),
                containers=[
                    azure.app.ContainerArgs(
                        name="app",
                        image=f"{cfg.image}:{cfg.canary.version if cfg.canary else cfg.version}",
                        resources=azure.app.ContainerResourcesArgs(cpu=cfg.cpu, memory=cfg.memory),
                        env=[
                            azure.app.EnvironmentVarArgs(name="CELL_NAME", value=inst.name),
                            azure.app.EnvironmentVarArgs(name="CELL_ROLE", value=inst.role),
                            azure.app.EnvironmentVarArgs(name="TENANCY_MODEL", value=inst.model),
                        ],
                        probes=[
                            azure.app.ContainerAppProbeArgs(
                                type="Liveness", period_seconds=10, failure_threshold=3,
                                http_get=azure.app.ContainerAppProbeHttpGetArgs(path="/health/live", port=8080),
                            ),
                            azure.app.ContainerAppProbeArgs(
                                type="Readiness", period_seconds=5, failure_threshold=3,
                                http_get=azure.app.ContainerAppProbeHttpGetArgs(path="/health/ready", port=8080),
                            ),
                        ],
                    )
                ],
                scale=azure.app.ScaleArgs(
                    # An isolated CELL keeps no replica running: no code of it can serve or act.
                    min_replicas=0 if inst.isolated else inst.replicas.min,
                    max_replicas=inst.replicas.max,
                    rules=[
                        azure.app.ScaleRuleArgs(
                            name="http-concurrency",
                            http=azure.app.HttpScaleRuleArgs(metadata={"concurrentRequests": "100"}),
                        )
                    ],
                ),
            ),
            # Who isolated the CELL and why travels with its app, visible in the portal.
            tags=tags | {"isolated-by": cfg.isolation.by, "isolated-at": cfg.isolation.at,
                         "isolation-reason": cfg.isolation.reason[:256]}
            if inst.isolated and cfg.isolation is not None else tags,
            opts=self.opts(),
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
            opts=self.opts(),
        )
        self.database = self._database(env, inst, rg, tags, primary_database_id)
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
                opts=self.opts(),
            )
            for r in (cfg.restores if inst.role == "primary" else [])
        ]

        # --- Storage -----------------------------------------------------------------------------------
        self.storage = azure.storage.StorageAccount(
            self.child("st"),
            account_name=n.storage(inst.key),
            resource_group_name=rg,
            location=inst.region,
            kind="StorageV2",
            sku=azure.storage.SkuArgs(name="Standard_ZRS"),
            enable_https_traffic_only=True,
            minimum_tls_version="TLS1_2",
            allow_blob_public_access=False,
            allow_shared_key_access=False,
            default_to_o_auth_authentication=True,
            public_network_access="Disabled",
            tags=tags,
            opts=self.opts(),
        )
        self.diagnose(self.storage, shared.workspace_id)
        azure.authorization.RoleAssignment(
            self.child("app-blob-access"),
            role_assignment_name=role_assignment_name(inst.key, "app", "blob"),
            scope=self.storage.id,
            principal_id=self.app.identity.apply(lambda i: i.principal_id if i else ""),
            principal_type="ServicePrincipal",
            role_definition_id=role_definition_id(shared.subscription_id, "Storage Blob Data Contributor"),
            opts=self.opts(),
        )

        # --- Private endpoints: the only network path to the CELL's data ---------------------------------
        self._private_endpoint("sql", self.sql_server.id, "sqlServer", net.endpoint_subnet_id, net.sql_dns_zone_id,
                               rg, inst.region, tags)
        self._private_endpoint("blob", self.storage.id, "blob", net.endpoint_subnet_id, net.blob_dns_zone_id,
                               rg, inst.region, tags)

        self.fqdn: pulumi.Output[str] = self.app.configuration.apply(
            lambda c: (c.ingress.fqdn if c and c.ingress else None) or ""
        )
        self.static_ip: pulumi.Output[str] = self.environment.static_ip
        self.register_outputs(
            {
                "appId": self.app.id,
                "fqdn": self.fqdn,
                "sqlServerId": self.sql_server.id,
                "databaseId": self.database.id,
                "storageId": self.storage.id,
            }
        )

    @staticmethod
    def _traffic(inst: CellInstance, app_name: str) -> list[azure.app.TrafficWeightArgs]:
        """Blue-green: the stable revision keeps the rest of the traffic while a canary takes its share."""
        cfg = inst.cell
        if cfg.canary is None:
            return [azure.app.TrafficWeightArgs(latest_revision=True, weight=100, label="stable")]
        weights = [
            azure.app.TrafficWeightArgs(
                revision_name=f"{app_name}--{revision_suffix(cfg.canary.version)}",
                weight=cfg.canary.weight, label="candidate",
            ),
            azure.app.TrafficWeightArgs(
                revision_name=f"{app_name}--{revision_suffix(cfg.version)}",
                weight=100 - cfg.canary.weight, label="stable",
            ),
        ]
        return [w for w in weights if w.weight or w.label == "stable"]  # type: ignore[attr-defined]

    def _database(self, env: Environment, inst: CellInstance, rg: pulumi.Input[str], tags: dict[str, str],
                  primary_database_id: pulumi.Input[str] | None) -> azure.sql.Database:
        n = env.naming
        cfg = inst.cell
        common = dict(
            database_name=n.sql_database(inst.name),
            resource_group_name=rg,
            server_name=self.sql_server.name,
            location=inst.region,
            # A standby leads cross-edition upgrades (Azure wants the geo-secondary upgraded first).
            sku=azure.sql.SkuArgs(
                name=(cfg.standby.sql_sku if inst.role == "standby" and cfg.standby and cfg.standby.sql_sku
                      else cfg.sql.sku)),
            tags=tags,
            opts=self.opts(),
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
            zone_redundant=False,
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

    def _private_endpoint(self, what: str, target_id: pulumi.Input[str], group: str,
                          subnet_id: pulumi.Input[str], zone_id: pulumi.Input[str], rg: pulumi.Input[str],
                          region: str, tags: dict[str, str]) -> None:
        pe = azure.network.PrivateEndpoint(
            self.child(f"pe-{what}"),
            private_endpoint_name=f"pe-{self._name}-{what}",
            resource_group_name=rg,
            location=region,
            subnet=azure.network.SubnetArgs(id=subnet_id),
            private_link_service_connections=[
                azure.network.PrivateLinkServiceConnectionArgs(
                    name=f"{self._name}-{what}", private_link_service_id=target_id, group_ids=[group]
                )
            ],
            tags=tags,
            opts=self.opts(),
        )
        azure.network.PrivateDnsZoneGroup(
            self.child(f"pe-{what}-dns"),
            private_dns_zone_group_name="default",
            private_endpoint_name=pe.name,
            resource_group_name=rg,
            private_dns_zone_configs=[azure.network.PrivateDnsZoneConfigArgs(name=what, private_dns_zone_id=zone_id)],
            opts=self.opts(),
        )

