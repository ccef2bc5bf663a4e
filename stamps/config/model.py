"""The environment's typed config: one pydantic section per concern of the runbook.

The stack file (`Pulumi.<stack>.yaml`) holds these sections under the `stamps:` namespace, in camelCase
as Pulumi users write them. Field-level rules live on the sections; rules that relate sections to each
other (references, capacity, DR pairing) live in `validate.py`, so every problem is reported at once.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel

from stamps.config.regions import AZURE_REGIONS
from stamps.config.sql_skus import SQL_SKUS

# Ids end up in Azure names, URLs and API Management policy XML: letters, digits and inner hyphens only,
# so nothing a user types can break out of a name, a path segment or an XML attribute.
ID_PATTERN = re.compile(r"^[a-z][a-z0-9-]{0,22}[a-z0-9]$")


def _check_id(value: str) -> str:
    if not ID_PATTERN.match(value) or "--" in value:
        raise ValueError(
            f"{value!r} is not a valid id: use 2-24 lowercase letters, digits and single inner hyphens, "
            "starting with a letter (ids become Azure names, URL segments and policy XML values)"
        )
    return value


def _check_region(value: str) -> str:
    if value not in AZURE_REGIONS:
        close = sorted(r for r in AZURE_REGIONS if r[:4] == value[:4]) or sorted(AZURE_REGIONS)[:6]
        raise ValueError(f"{value!r} is not an Azure region; valid names look like {', '.join(close)}")
    return value


Id = Annotated[str, AfterValidator(_check_id)]
Region = Annotated[str, AfterValidator(_check_region)]
Email = Annotated[str, Field(pattern=r"^[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}$", max_length=254)]
Duration = Literal["PT1M", "PT5M", "PT10M", "PT15M", "PT30M", "PT1H", "PT6H", "PT12H", "P1D"]
Compliance = Literal["pci-dss", "sox", "hipaa", "gdpr", "iso27001", "soc2", "fedramp"]
TenancyModel = Literal["shared", "dedicated"]



class Section(BaseModel):
    """Strict camelCase section: unknown keys are errors, so typos never pass silently."""

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True, validate_default=True
    )


class RegionConfig(Section):
    name: Region
    role: Literal["primary", "dr"]
    dr_region: Region | None = Field(None, description="The DR region holding this primary's standby CELLs.")
    address_space: str = Field(description="The region's virtual network, a /16 to /20 IPv4 CIDR.")
    traffic_enabled: bool = Field(True, description="false disables the region's Traffic Manager endpoint (DR drill)")
    serving_from: Literal["primary", "dr"] = Field(
        "primary",
        description="primary regions only: where this region's CELLs serve from now; `stamps-ops failover --region` "
                    "sets dr (its standbys in drRegion take its traffic), failback sets primary",
    )
    zone_redundant: bool | None = Field(
        None, description="App Gateway, its public IP and the Cosmos DB replica across availability zones; default: "
                          "on where the region has zones (stamps/config/capabilities.py), true elsewhere is an error")

    @model_validator(mode="after")
    def _check(self) -> RegionConfig:
        try:
            net = ipaddress.ip_network(self.address_space)
        except ValueError as exc:
            raise ValueError(f"addressSpace {self.address_space!r} is not a CIDR block like 10.10.0.0/16") from exc
        if not isinstance(net, ipaddress.IPv4Network) or not 16 <= net.prefixlen <= 20:
            raise ValueError(f"addressSpace {self.address_space!r} must be an IPv4 /16 to /20")
        if self.role == "primary" and self.dr_region is None:
            raise ValueError(f"primary region {self.name!r} needs a drRegion (a region with role: dr)")
        if self.role == "dr" and self.dr_region is not None:
            raise ValueError("drRegion is only set on primary regions")
        if self.dr_region == self.name:
            raise ValueError(f"drRegion must differ from the region itself ({self.name!r})")
        if self.role == "dr" and self.serving_from != "primary":
            raise ValueError("servingFrom is only set on primary regions (a DR region serves what fails over to it)")
        return self


class TrafficManagerConfig(Section):
    ttl: int = Field(300, ge=0, le=2147483647, description="DNS TTL in seconds in normal operation.")
    failover_ttl: int = Field(60, ge=0, le=300, description="DNS TTL while failed over, for fast failback.")
    probe_interval: Literal[10, 30] = 30
    tolerated_failures: int = Field(3, ge=0, le=9)


class ApiManagementConfig(Section):
    sku: Literal["Developer", "Basic", "Standard", "Premium"] = "Premium"
    capacity: int = Field(1, ge=1, le=12)
    publisher_email: Email
    publisher_name: str = Field(min_length=1, max_length=100)
    restore: bool = Field(
        False, description="undelete a soft-deleted instance of the same name (48 h after a destroy) instead of "
                           "failing on the reserved name")


def _check_cidr(value: str) -> str:
    try:
        net = ipaddress.ip_network(value, strict=True)
    except ValueError as exc:
        raise ValueError(f"{value!r} is not an IPv4 address or CIDR block like 203.0.113.0/24") from exc
    rfc1918 = [ipaddress.IPv4Network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16")]
    if not isinstance(net, ipaddress.IPv4Network) or any(net.subnet_of(p) for p in rfc1918):
        # The IP firewall sees public source addresses only; private traffic arrives over private endpoints.
        raise ValueError(f"{value!r} must be a public IPv4 address or range (Cosmos DB IP firewall rules)")
    return value


class DirectoryConfig(Section):
    """The Cosmos DB tenant directory's backup (runbook: "Data Recovery")."""

    backup_tier: Literal["Continuous7Days", "Continuous30Days"] = Field(
        "Continuous30Days", description="continuous backup: point-in-time restore window of the directory")


class FrontDoorConfig(Section):
    sku: Literal["Standard_AzureFrontDoor", "Premium_AzureFrontDoor"] = "Premium_AzureFrontDoor"


class SqlAdminsConfig(Section):
    """The Entra group that administers every CELL's SQL server (Entra-only auth: no SQL logins exist)."""

    login: str = Field(min_length=1, max_length=128)
    object_id: str = Field(pattern=r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
    principal_type: Literal["Group", "User", "Application"] = "Group"


_HOST = r"^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,}$"


_VAULT_ID = (r"^/subscriptions/[0-9a-fA-F-]{36}/resourceGroups/[-\w._()]{1,90}/providers/Microsoft\.KeyVault/"
             r"vaults/[a-zA-Z][a-zA-Z0-9-]{1,22}[a-zA-Z0-9]$")


class TlsConfig(Section):
    """Public and internal host names, and the App Gateway listener certificate, which must exist before the
    gateway is created.

    Two certificate sources (https://learn.microsoft.com/azure/application-gateway/key-vault-certs: a listener
    references an *existing* Key Vault certificate or secret):
    - `keyVaultId`: a pre-existing, centrally managed vault that holds `certificateName`; the gateways read it
      there (the program grants their identities "Key Vault Secrets User" on that vault);
    - otherwise the PFX given as the Pulumi secret `stamps:edgeCertificatePfx` (base64, no password), which the
      program stores as `certificateName` in each regional vault before creating the gateway.
    """

    certificate_name: str = Field("stamps-edge", pattern=r"^[A-Za-z0-9-]{1,127}$")
    key_vault_id: str | None = Field(
        None, pattern=_VAULT_ID,
        description="ARM id of an existing vault holding certificateName; omit to store stamps:edgeCertificatePfx")
    host_name: str = Field(
        max_length=253, pattern=_HOST,
        description="the public API host name: a Front Door custom domain (CNAME + TXT validation record printed "
                    "in the `dnsRecords` output)",
    )
    cells_host_name: str = Field(
        max_length=240, pattern=_HOST,
        description="the domain API Management reaches CELLs under: each primary region's CELLs answer at "
                    "<region>.<cellsHostName>, a CNAME to that region's Traffic Manager profile (printed in "
                    "`dnsRecords`); the App Gateway certificate must cover *.<cellsHostName>",
    )

    def secret_id(self, vault_uri: str | None = None) -> str:
        """The versionless secret id the gateway reads (it then follows certificate rotations)."""
        if self.key_vault_id is not None:
            vault_uri = f"https://{self.key_vault_id.rsplit('/', 1)[-1]}.vault.azure.net/"
        return f"{(vault_uri or '').rstrip('/')}/secrets/{self.certificate_name}"


class TierConfig(Section):
    name: Id
    model: TenancyModel
    calls_per_hour: int = Field(ge=1, le=100_000_000, description="rate-limit per subscription per hour")
    calls_per_day: int = Field(ge=1, le=2_000_000_000, description="quota per subscription per day")

    @model_validator(mode="after")
    def _check(self) -> TierConfig:
        if self.calls_per_day < self.calls_per_hour:
            raise ValueError("callsPerDay must be at least callsPerHour")
        return self


class Replicas(Section):
    min: int = Field(ge=0, le=300)
    max: int = Field(ge=1, le=300)

    @model_validator(mode="after")
    def _check(self) -> Replicas:
        if self.min > self.max:
            raise ValueError(f"min ({self.min}) must not exceed max ({self.max})")
        return self


class SqlConfig(Section):
    sku: str = "S2"
    max_size_gb: int = Field(250, ge=1, le=4096)

    @model_validator(mode="after")
    def _check(self) -> SqlConfig:
        if self.sku not in SQL_SKUS:
            raise ValueError(f"sku {self.sku!r} is not an Azure SQL service objective; valid: {', '.join(SQL_SKUS)}")
        return self


class StandbyConfig(Section):
    region: Region
    replicas: Replicas = Replicas(min=1, max=10)
    sql_sku: str | None = Field(
        None, description="the geo-secondary's SKU while it leads a cross-edition upgrade (set by `scale`)")
    zone_redundant: bool | None = Field(None, description="as the CELL's zoneRedundant, for the standby's region")

    @model_validator(mode="after")
    def _check(self) -> StandbyConfig:
        if self.sql_sku is not None and self.sql_sku not in SQL_SKUS:
            raise ValueError(f"sqlSku {self.sql_sku!r} is not an Azure SQL service objective")
        return self


class IsolationRecord(Section):
    reason: str = Field(min_length=1, max_length=500)
    by: str = Field(min_length=1, max_length=100)
    at: str = Field(description="ISO 8601 time the CELL was isolated")


class CanaryConfig(Section):
    version: str = Field(pattern=r"^[0-9A-Za-z][0-9A-Za-z.-]{0,30}$")
    weight: int = Field(ge=0, le=100, description="percent of traffic on the candidate revision")


class RestoreConfig(Section):
    name: Id
    point_in_time: str = Field(description="UTC ISO 8601 time to restore the CELL database to")

    @model_validator(mode="after")
    def _check(self) -> RestoreConfig:
        if not re.match(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2})?Z$", self.point_in_time):
            raise ValueError(f"pointInTime {self.point_in_time!r} must be UTC like 2026-01-15T03:00:00Z")
        return self


_PATH = r"^/[A-Za-z0-9/_.~-]*$"
DEV_IMAGE = "mcr.microsoft.com/azuredocs/containerapps-helloworld:latest"


class AppConfig(Section):
    """The container every CELL runs unless the CELL overrides `image`/`port`: the image, without a tag (the
    CELL's `version` is the tag) or pinned with one, the port it listens on and its probe paths."""

    image: str = Field(pattern=r"^[a-z0-9./_:-]+$", max_length=255)
    port: int = Field(ge=1, le=65535)
    liveness_path: str = Field("/health/live", pattern=_PATH)
    readiness_path: str = Field("/health/ready", pattern=_PATH)


# Outside `dev` there is no default: a wrong guess (an unpublished tag, a port the image does not listen on)
# deploys a revision that never becomes ready. In dev, Microsoft's sample image, which serves `/` on port 80
# (learn.microsoft.com/azure/container-apps/tutorial-deploy-first-app-cli: `--target-port 80`).
DEV_APP = AppConfig(image=DEV_IMAGE, port=80, liveness_path="/", readiness_path="/")


class OperatorConfig(Section):
    """An Entra principal that runs `stamps-ops` (or the pipeline): it gets the data-plane roles the playbooks use."""

    object_id: str = Field(pattern=r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
    principal_type: Literal["User", "Group", "ServicePrincipal"] = "Group"


class CellConfig(Section):
    name: Id
    region: Region
    model: TenancyModel
    capacity: int = Field(1, ge=1, le=1000, description="tenants the CELL can hold (1 for dedicated)")
    compliance: list[Compliance] = []
    replicas: Replicas = Replicas(min=2, max=10)
    cpu: float = Field(0.5, ge=0.25, le=4.0)
    memory: Literal["0.5Gi", "1Gi", "1.5Gi", "2Gi", "3Gi", "4Gi", "6Gi", "8Gi"] = "1Gi"
    image: str | None = Field(None, pattern=r"^[a-z0-9./_:-]+$", max_length=255,
                              description="overrides stamps:app.image for this CELL")
    port: int | None = Field(None, ge=1, le=65535, description="overrides stamps:app.port for this CELL")
    zone_redundant: bool | None = Field(
        None, description="Container Apps environment, SQL (Premium/Business Critical/Hyperscale) and Storage across "
                          "availability zones; default: on where the region has zones, true elsewhere is an error")
    version: str = Field("1.0.0", pattern=r"^[0-9A-Za-z][0-9A-Za-z.-]{0,30}$")
    canary: CanaryConfig | None = None
    sql: SqlConfig = SqlConfig()
    standby: StandbyConfig | None = None
    alerts_enabled: bool = True
    slot: int | None = Field(
        None, ge=0, le=253,
        description="the CELL's /24 among the CELL subnets of its regions, kept for life (the playbooks that add "
                    "CELLs write it); unset CELLs take the lowest free slots in list order",
    )
    isolation: IsolationRecord | None = None
    restores: list[RestoreConfig] = []


class TenantConfig(Section):
    id: Id
    tier: Id
    cell: Id | None = Field(None, description="omit to let placement choose a CELL")
    region: Region | None = Field(None, description="region for placement; default: the first primary")
    email: Email
    compliance: list[Compliance] = []
    frozen: bool = Field(False, description="writes blocked (read-only) during a migration")


class Kpi(Section):
    target: float
    alert: float


class GlobalKpis(Section):
    availability_percent: Kpi = Kpi(target=99.95, alert=99.9)
    latency_ms: Kpi = Kpi(target=100, alert=150)
    api_throughput_per_minute: Kpi = Kpi(target=50_000, alert=40_000)
    error_rate_percent: Kpi = Kpi(target=0.1, alert=0.5)
    api_latency_ms: Kpi = Kpi(target=50, alert=100)


class CellKpis(Section):
    tenant_latency_ms: Kpi = Kpi(target=200, alert=500)
    database_latency_ms: Kpi = Kpi(target=50, alert=100)
    storage_iops: Kpi = Kpi(target=1000, alert=500)
    container_cpu_percent: Kpi = Kpi(target=70, alert=85)


class KpiConfig(Section):
    """The runbook's KPI blocks: targets for dashboards, alert thresholds for the KPI alert rules."""

    global_: GlobalKpis = Field(GlobalKpis(), alias="global")
    cell: CellKpis = CellKpis()


class AlertRuleOverride(Section):
    threshold: float | None = None
    severity: int | None = Field(None, ge=0, le=4)
    window: Duration | None = None
    frequency: Duration | None = None
    enabled: bool | None = None


class AlertsConfig(Section):
    enabled: bool = True
    rules: dict[str, AlertRuleOverride] = Field(
        default_factory=dict, description="per-rule overrides keyed by catalog rule id (see `stamps alerts`)"
    )


class NotificationsConfig(Section):
    email: list[Email] = Field(min_length=1)
    slack_channel: str = Field("#operations", pattern=r"^#[a-z0-9_-]{1,80}$")


class ScalingConfig(Section):
    """The runbook's scaling triggers, plus hysteresis so a brief dip never flaps capacity."""

    cpu_percent: float = Field(80, gt=0, le=100)
    memory_percent: float = Field(85, gt=0, le=100)
    requests_per_replica: int = Field(5000, ge=1)
    scale_down_below_percent: float = Field(40, gt=0, le=100)
    quiet_minutes: int = Field(30, ge=5, le=1440)
    step: int = Field(2, ge=1, le=50)
    sql_ladder: list[str] = ["S2", "S3", "S4", "S6", "P1", "P2", "P4"]


class Projection(Section):
    cell_count: int = Field(ge=1)
    regions_active: int = Field(ge=1)
    avg_requests_per_second: int = Field(ge=0)
    avg_data_volume_gb: int = Field(ge=0)
    tenant_growth_percent: float = Field(0, ge=0, le=10_000)


class RolloutConfig(Section):
    """How `stamps-ops rollout` applies an infrastructure change to the CELL stacks: canary CELL first, then
    waves of these sizes (the last size repeats until every CELL is done), each followed by a health gate."""

    canary: Id | None = Field(None, description="the CELL updated first (default: the first CELL in stamps:cells)")
    wave_sizes: list[Annotated[int, Field(ge=1, le=1000)]] = Field(default_factory=lambda: [1, 2, 4], min_length=1)
    bake_minutes: int = Field(10, ge=0, le=1440, description="wait after a wave before its health gate")


class GrowthConfig(Section):
    """The runbook's CELL scaling matrix."""

    six_months: Projection = Field(
        Projection(cell_count=10, regions_active=3, avg_requests_per_second=2500, avg_data_volume_gb=1250,
                   tenant_growth_percent=150),
        alias="6months",
    )
    twelve_months: Projection = Field(
        Projection(cell_count=20, regions_active=4, avg_requests_per_second=5000, avg_data_volume_gb=2500,
                   tenant_growth_percent=400),
        alias="12months",
    )


class StampsConfig(Section):
    """The whole environment, as `stamps:` keys in the stack config."""

    environment: Literal["dev", "test", "staging", "prod"]
    cost_center: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{1,30}$")
    owner: str = Field(pattern=r"^[a-z0-9][a-z0-9.-]{1,60}$")
    name_suffix: str | None = Field(
        None, pattern=r"^[a-z0-9]{4,6}$", description="suffix for globally unique names; default: stable hash"
    )
    regions: list[RegionConfig] = Field(min_length=1)
    traffic_manager: TrafficManagerConfig = TrafficManagerConfig()
    front_door: FrontDoorConfig = FrontDoorConfig()
    api_management: ApiManagementConfig
    sql_admins: SqlAdminsConfig
    tls: TlsConfig
    app: AppConfig | None = Field(None, description="the CELL container (required outside dev)")
    operators: list[OperatorConfig] = Field(
        default_factory=list, description="Entra principals that run stamps-ops: Cosmos DB directory writes")
    operator_ip_ranges: list[Annotated[str, AfterValidator(_check_cidr)]] = Field(
        default_factory=list,
        description="public egress ranges of the operators/CI running stamps-ops, allowed through the Cosmos DB "
                    "and Key Vault firewalls; empty: public access disabled (private endpoints only)")
    directory: DirectoryConfig = DirectoryConfig()
    tiers: list[TierConfig] = Field(min_length=1)
    cells: list[CellConfig] = Field(min_length=1)
    tenants: list[TenantConfig] = []
    kpis: KpiConfig = KpiConfig()
    alerts: AlertsConfig = AlertsConfig()
    notifications: NotificationsConfig
    scaling: ScalingConfig = ScalingConfig()
    growth: GrowthConfig = GrowthConfig()
    rollout: RolloutConfig = RolloutConfig()
    layout: Literal["single", "units"] = Field(
        "single", description="how the fleet is deployed: one stack (`pulumi up -s prod`), or one stack per unit "
                              "(`prod.global`, `prod.cell.<cell>.<region>`, ...; stamps-ops deploy). "
                              "`stamps-ops split-state` moves a single stack to units and sets it")
    tags: dict[str, str] = Field(default_factory=dict, description="extra tags on every resource")

    def app_for(self, cell: CellConfig) -> AppConfig | None:
        """The container a CELL runs: its own image/port over `app`; dev falls back to DEV_APP; None = unset."""
        base = self.app or (DEV_APP if self.environment == "dev" else None)
        if base is None and not (cell.image and cell.port):
            return None
        if base is None:
            return AppConfig(image=cell.image, port=cell.port)  # type: ignore[arg-type]
        return base.model_copy(update={k: v for k, v in (("image", cell.image), ("port", cell.port)) if v})
