"""The alert catalog: every alert rule the stamps deploy, as data, with the source each metric was checked in.

Runbook (OPERATIONS_GUIDE.md): "Alert Configuration" (the six critical alerts), "Key Performance Indicators"
(the global and CELL-level KPI blocks) and "Incident Classification" (P0-P3). The runbook's commands are
illustrative: `endpoint_status` and `Gateway.Duration` are not metrics Azure publishes, so every rule here
names the metric as the Azure Monitor REST API spells it, verified against the sources below.

Metric names ("Name in REST API" column), checked against:
- Microsoft Learn, "Supported metrics for <type>" (generated from Azure's metric definitions), one page per type:
  https://learn.microsoft.com/azure/azure-monitor/reference/supported-metrics/<page> (see METRIC_SOURCES)
- Azure Monitor Baseline Alerts (AMBA), repo Azure/azure-monitor-baseline-alerts, services/<provider>/<type>/
  alerts.yaml: the metric namespace/name pairs and, for rules the runbook does not size, the default
  thresholds, windows and severities (see each rule's `source`).

Thresholds, windows, frequencies and severities are defaults: `stamps:kpis` sets the KPI rules' thresholds and
`stamps:alerts.rules.<id>` overrides the rest (see `resolve`). `stamps alerts` prints the effective rules.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from stamps.config.model import AlertRuleOverride, StampsConfig

Layer = Literal["global", "regional", "cell"]
Kind = Literal["metric", "log"]
Aggregation = Literal["Average", "Minimum", "Maximum", "Total", "Count"]
Operator = Literal["GreaterThan", "GreaterThanOrEqual", "LessThan", "LessThanOrEqual"]
ScopeKind = Literal[
    "traffic-manager", "front-door", "api-management", "cosmos", "app-insights",
    "app-gateway", "key-vault", "container-app", "sql-database", "storage",
]

_LEARN = "https://learn.microsoft.com/azure/azure-monitor/reference/supported-metrics/"
_AMBA = "Azure/azure-monitor-baseline-alerts services/"


@dataclass(frozen=True)
class Scope:
    """A kind of resource an alert watches: its ARM type (= the metric namespace) and a display label."""

    kind: ScopeKind
    arm_type: str
    label: str


SCOPES: dict[ScopeKind, Scope] = {
    s.kind: s
    for s in (
        Scope("traffic-manager", "Microsoft.Network/trafficManagerProfiles", "Traffic Manager"),
        Scope("front-door", "Microsoft.Cdn/profiles", "Front Door"),
        Scope("api-management", "Microsoft.ApiManagement/service", "API Management"),
        Scope("cosmos", "Microsoft.DocumentDB/databaseAccounts", "Cosmos DB tenant directory"),
        Scope("app-insights", "Microsoft.Insights/components", "Application Insights"),
        Scope("app-gateway", "Microsoft.Network/applicationGateways", "Application Gateway"),
        Scope("key-vault", "Microsoft.KeyVault/vaults", "Key Vault"),
        Scope("container-app", "Microsoft.App/containerApps", "Container App"),
        Scope("sql-database", "Microsoft.Sql/servers/databases", "SQL database"),
        Scope("storage", "Microsoft.Storage/storageAccounts", "Storage account"),
    )
}

# Where each type's metric names were verified (the "Supported metrics" reference page of that type).
METRIC_SOURCES: dict[str, str] = {
    "Microsoft.Network/trafficManagerProfiles": _LEARN + "microsoft-network-trafficmanagerprofiles-metrics",
    "Microsoft.Cdn/profiles": _LEARN + "microsoft-cdn-profiles-metrics",
    "Microsoft.ApiManagement/service": _LEARN + "microsoft-apimanagement-service-metrics",
    "Microsoft.DocumentDB/databaseAccounts": _LEARN + "microsoft-documentdb-databaseaccounts-metrics",
    "Microsoft.Network/applicationGateways": _LEARN + "microsoft-network-applicationgateways-metrics",
    "Microsoft.KeyVault/vaults": _LEARN + "microsoft-keyvault-vaults-metrics",
    "Microsoft.App/containerApps": _LEARN + "microsoft-app-containerapps-metrics",
    "Microsoft.Sql/servers/databases": _LEARN + "microsoft-sql-servers-databases-metrics",
    "Microsoft.Storage/storageAccounts": _LEARN + "microsoft-storage-storageaccounts-metrics",
}

# Allow-list: metric names Azure publishes per type, as verified in METRIC_SOURCES (a subset of each page:
# the metrics this project alerts on or charts). A rule or dashboard naming anything else fails the tests.
ALLOWED_METRICS: dict[str, frozenset[str]] = {
    "Microsoft.Network/trafficManagerProfiles": frozenset(
        {"ProbeAgentCurrentEndpointStateByProfileResourceId", "QpsByEndpoint"}),
    "Microsoft.Cdn/profiles": frozenset(
        {"OriginLatency", "TotalLatency", "OriginHealthPercentage", "ByteHitRatio", "Percentage4XX",
         "Percentage5XX", "RequestCount", "OriginRequestCount"}),
    "Microsoft.ApiManagement/service": frozenset({"Capacity", "Duration", "BackendDuration", "Requests"}),
    "Microsoft.DocumentDB/databaseAccounts": frozenset(
        {"NormalizedRUConsumption", "ServiceAvailability", "TotalRequests", "TotalRequestUnits",
         "ReplicationLatency"}),
    "Microsoft.Network/applicationGateways": frozenset(
        {"UnhealthyHostCount", "HealthyHostCount", "TotalRequests", "FailedRequests", "ResponseStatus",
         "BackendLastByteResponseTime", "ApplicationGatewayTotalTime", "CapacityUnits", "CpuUtilization"}),
    "Microsoft.KeyVault/vaults": frozenset(
        {"Availability", "ServiceApiLatency", "ServiceApiHit", "ServiceApiResult", "SaturationShoebox"}),
    "Microsoft.App/containerApps": frozenset(
        {"CpuPercentage", "MemoryPercentage", "Replicas", "Requests", "ResponseTime", "RestartCount",
         "UsageNanoCores", "WorkingSetBytes"}),
    "Microsoft.Sql/servers/databases": frozenset(
        {"cpu_percent", "dtu_consumption_percent", "availability", "physical_data_read_percent",
         "log_write_percent", "storage_percent", "workers_percent", "sessions_percent", "connection_failed"}),
    "Microsoft.Storage/storageAccounts": frozenset(
        {"Availability", "Transactions", "Ingress", "Egress", "SuccessE2ELatency", "SuccessServerLatency",
         "UsedCapacity"}),
}

# Metrics a diagnostic setting can export to the workspace's `AzureMetrics` table ("DS Export: Yes" on the
# same pages). Dashboards read metrics through AzureMetrics, so they may only chart these: storage
# `UsedCapacity` (the runbook's "Storage Utilization" query) is "DS Export: No" and never reaches the table.
EXPORTED_TO_LOGS: dict[str, frozenset[str]] = {
    "Microsoft.Network/applicationGateways": frozenset(
        {"UnhealthyHostCount", "HealthyHostCount", "TotalRequests", "FailedRequests", "ResponseStatus"}),
    "Microsoft.App/containerApps": ALLOWED_METRICS["Microsoft.App/containerApps"],
    "Microsoft.Sql/servers/databases": ALLOWED_METRICS["Microsoft.Sql/servers/databases"],
    "Microsoft.Storage/storageAccounts": ALLOWED_METRICS["Microsoft.Storage/storageAccounts"] - {"UsedCapacity"},
}

# Log tables the log-query rules read. Rules are scoped to the (workspace-based) Application Insights
# component, which exposes the classic schema: requests(success, resultCode, duration) and
# dependencies(type, target, duration). Source: "Application Insights telemetry data model",
# https://learn.microsoft.com/azure/azure-monitor/app/data-model-complete
LOG_TABLES: dict[str, str] = {
    "requests": "https://learn.microsoft.com/azure/azure-monitor/app/data-model-complete#request",
    "dependencies": "https://learn.microsoft.com/azure/azure-monitor/app/data-model-complete#dependency",
}

# The values Azure accepts (restricted to the config's `Duration` choices). Metric alerts: windowSize
# PT1M/5M/15M/30M/1H/6H/12H/P1D and evaluationFrequency PT1M/5M/15M/30M/1H, frequency <= window; log alerts:
# PT1M, PT5M, PT10M, ... PT6H, P1D (no PT12H). Source: the azurerm provider's `azurerm_monitor_metric_alert`
# and `azurerm_monitor_scheduled_query_rules_alert_v2` argument references, which mirror the ARM API.
METRIC_WINDOWS = ("PT1M", "PT5M", "PT15M", "PT30M", "PT1H", "PT6H", "PT12H", "P1D")
METRIC_FREQUENCIES = ("PT1M", "PT5M", "PT15M", "PT30M", "PT1H")
LOG_WINDOWS = ("PT1M", "PT5M", "PT10M", "PT15M", "PT30M", "PT1H", "PT6H", "P1D")
LOG_FREQUENCIES = ("PT1M", "PT5M", "PT10M", "PT15M", "PT30M", "PT1H", "PT6H", "P1D")

# Runbook "Incident Classification": Azure severity → incident priority.
PRIORITIES: dict[int, str] = {0: "P0", 1: "P1", 2: "P2", 3: "P3", 4: "P3"}


def priority(severity: int) -> str:
    return PRIORITIES[severity]


def seconds(duration: str) -> int:
    """ISO 8601 durations as used here (PTnM, PTnH, PnD) → seconds."""
    m = re.fullmatch(r"P(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?)?", duration)
    if not m or duration in ("P", "PT"):
        raise ValueError(f"unsupported duration {duration!r}")
    d, h, mins = (int(x or 0) for x in m.groups())
    return ((d * 24 + h) * 60 + mins) * 60


@dataclass(frozen=True)
class AlertRule:
    """One alert rule, deployed once per scope instance (per CELL instance, per region, or once globally).

    `threshold` is the default in `unit`; KPI rules leave it None and read `stamps:kpis.<kpi>.alert`.
    `per_seconds`: the threshold is a rate per that many seconds (requests/minute, IOPS) and is multiplied
    by the window for the metric's Total. `variant` restricts the rule to targets of that variant (DTU vs
    vCore databases). `query` is the KQL of log rules ($placeholders filled per target); `metric` is then
    the query's measure column.
    """

    id: str
    layer: Layer
    scope: ScopeKind
    kind: Kind
    metric: str
    aggregation: Aggregation
    operator: Operator
    window: str
    frequency: str
    severity: int
    description: str
    source: str
    unit: str
    threshold: float | None = None
    kpi: str | None = None
    per_seconds: int | None = None
    variant: str | None = None
    min_window: str | None = None
    query: str | None = None

    def __post_init__(self) -> None:
        if (self.threshold is None) == (self.kpi is None):
            raise ValueError(f"rule {self.id}: set exactly one of threshold and kpi")
        if (self.kind == "log") != (self.query is not None):
            raise ValueError(f"rule {self.id}: log rules, and only they, carry a query")

    @property
    def namespace(self) -> str:
        return SCOPES[self.scope].arm_type

    @property
    def kpi_key(self) -> str | None:
        """The config key a KPI rule reads, as a user writes it: `stamps:kpis.cell.containerCpuPercent.alert`."""
        if self.kpi is None:
            return None
        scope, field = self.kpi.split(".")
        camel = field.split("_")[0] + "".join(p.title() for p in field.split("_")[1:])
        return f"stamps:kpis.{scope}.{camel}.alert"


def _src(arm_type: str, amba: str | None = None) -> str:
    out = METRIC_SOURCES[arm_type]
    return out + (f"; AMBA {_AMBA}{amba}/alerts.yaml" if amba else "")


CATALOG: tuple[AlertRule, ...] = (
    # --- Global: runbook critical alerts -----------------------------------------------------------------
    AlertRule(
        # Runbook "endpoint_status" → the endpoint probe state (1 up, 0 down). Without a dimension split the
        # Maximum over all endpoints is < 1 only when every endpoint is down: the runbook's P0 example.
        "tm-endpoints-down", "global", "traffic-manager", "metric",
        "ProbeAgentCurrentEndpointStateByProfileResourceId", "Maximum", "LessThan", "PT5M", "PT1M", 0,
        "Traffic Manager has no healthy endpoints", _src("Microsoft.Network/trafficManagerProfiles",
                                                          "Network/trafficmanagerprofiles"),
        "state", threshold=1),
    AlertRule(
        "afd-origin-latency", "global", "front-door", "metric", "OriginLatency", "Average", "GreaterThan",
        "PT15M", "PT5M", 2, "Front Door origin latency exceeds the threshold",
        _src("Microsoft.Cdn/profiles", "Cdn/profiles"), "ms", threshold=500),
    AlertRule(
        # Runbook "Gateway.Duration" → `Duration` ("Overall Duration of Gateway Requests").
        "apim-gateway-latency", "global", "api-management", "metric", "Duration", "Average", "GreaterThan",
        "PT5M", "PT1M", 1, "API Management gateway latency exceeds the threshold",
        _src("Microsoft.ApiManagement/service", "ApiManagement/service"), "ms", threshold=1000),
    AlertRule(
        # Runbook "Gateway.Requests" → `Requests` (Total); 10,000 per minute, scaled to the window.
        "apim-requests-high", "global", "api-management", "metric", "Requests", "Total", "GreaterThan",
        "PT1M", "PT1M", 2, "API Management request rate exceeds the threshold",
        _src("Microsoft.ApiManagement/service", "ApiManagement/service"), "requests/min", threshold=10_000,
        per_seconds=60),
    # --- Global: KPI alerts ------------------------------------------------------------------------------
    AlertRule(
        # "Global endpoint uptime": the share of requests not failing server-side (5xx) at the app.
        "kpi-availability", "global", "app-insights", "log", "AvailabilityPercent", "Average", "LessThan",
        "PT15M", "PT5M", 1, "Global availability (requests without a server error) below the KPI",
        LOG_TABLES["requests"], "%", kpi="global.availability_percent",
        query=("requests\n| summarize Total = count(), ServerErrors = countif(toint(resultCode) >= 500)\n"
               "| where Total > 0\n| extend AvailabilityPercent = 100.0 * (Total - ServerErrors) / Total")),
    AlertRule(
        # "DNS resolution + Front Door + APIM response": Front Door's client-observed `TotalLatency`.
        "kpi-latency", "global", "front-door", "metric", "TotalLatency", "Average", "GreaterThan", "PT15M",
        "PT5M", 2, "Global end-to-end latency above the KPI", _src("Microsoft.Cdn/profiles", "Cdn/profiles"),
        "ms", kpi="global.latency_ms"),
    AlertRule(
        "kpi-error-rate", "global", "app-insights", "log", "ErrorRatePercent", "Average", "GreaterThan",
        "PT15M", "PT5M", 2, "Global error rate (failed requests) above the KPI", LOG_TABLES["requests"], "%",
        kpi="global.error_rate_percent",
        query=("requests\n| summarize Total = count(), Failed = countif(success == false)\n"
               "| where Total > 0\n| extend ErrorRatePercent = 100.0 * Failed / Total")),
    AlertRule(
        "kpi-api-latency", "global", "api-management", "metric", "Duration", "Average", "GreaterThan", "PT5M",
        "PT1M", 2, "API Management gateway response time above the KPI",
        _src("Microsoft.ApiManagement/service", "ApiManagement/service"), "ms", kpi="global.api_latency_ms"),
    AlertRule(
        # "Cross-region APIM aggregate": the service-level `Requests` sums every gateway location.
        "kpi-api-throughput", "global", "api-management", "metric", "Requests", "Total", "LessThan", "PT15M",
        "PT5M", 3, "API throughput below the KPI floor", _src("Microsoft.ApiManagement/service",
                                                             "ApiManagement/service"),
        "requests/min", kpi="global.api_throughput_per_minute", per_seconds=60),
    # --- Global: tenant directory ------------------------------------------------------------------------
    AlertRule(
        "cosmos-normalized-ru", "global", "cosmos", "metric", "NormalizedRUConsumption", "Average",
        "GreaterThan", "PT5M", "PT1M", 3, "Cosmos DB tenant directory RU consumption high",
        _src("Microsoft.DocumentDB/databaseAccounts", "DocumentDB/databaseAccounts"), "%", threshold=70),
    AlertRule(
        # ServiceAvailability is only published hourly (time grain PT1H): shorter windows never evaluate.
        "cosmos-availability", "global", "cosmos", "metric", "ServiceAvailability", "Average", "LessThan",
        "PT1H", "PT5M", 2, "Cosmos DB tenant directory availability low",
        _src("Microsoft.DocumentDB/databaseAccounts", "DocumentDB/databaseAccounts"), "%", threshold=99.9,
        min_window="PT1H"),
    # --- Regional -------------------------------------------------------------------------------------------
    AlertRule(
        # A CELL backend failing its probes: its tenants get 502s until it recovers.
        "agw-unhealthy-hosts", "regional", "app-gateway", "metric", "UnhealthyHostCount", "Average",
        "GreaterThan", "PT5M", "PT1M", 1, "Application Gateway has unhealthy CELL backends",
        _src("Microsoft.Network/applicationGateways", "Network/applicationGateways"), "hosts", threshold=0),
    AlertRule(
        "kv-availability", "regional", "key-vault", "metric", "Availability", "Average", "LessThan", "PT5M",
        "PT1M", 1, "Key Vault availability low", _src("Microsoft.KeyVault/vaults", "KeyVault/vaults"), "%",
        threshold=90),
    # --- CELL: runbook critical alerts ------------------------------------------------------------------------
    # The runbook evaluates these over PT10M; metric alerts accept PT5M or PT15M, so PT15M (never shorter).
    AlertRule(
        "sql-dtu-high", "cell", "sql-database", "metric", "dtu_consumption_percent", "Average", "GreaterThan",
        "PT15M", "PT5M", 1, "SQL database DTU utilization above the threshold",
        _src("Microsoft.Sql/servers/databases", "Sql/servers"), "%", threshold=80, variant="dtu"),
    AlertRule(
        # vCore databases publish no DTU metric; the runbook's "DTU/CPU" is `cpu_percent` there.
        "sql-cpu-high", "cell", "sql-database", "metric", "cpu_percent", "Average", "GreaterThan", "PT15M",
        "PT5M", 1, "SQL database CPU utilization above the threshold",
        _src("Microsoft.Sql/servers/databases", "Sql/servers"), "%", threshold=80, variant="vcore"),
    AlertRule(
        "ca-memory-high", "cell", "container-app", "metric", "WorkingSetBytes", "Average", "GreaterThan",
        "PT15M", "PT5M", 2, "Container App memory working set above the threshold",
        _src("Microsoft.App/containerApps", "App/containerApps"), "bytes", threshold=1024**3),
    AlertRule(
        # A CELL with no replica serves nothing: for a dedicated CELL that is its tenant's full outage.
        "ca-replicas-low", "cell", "container-app", "metric", "Replicas", "Maximum", "LessThan", "PT5M",
        "PT1M", 1, "Container App has no running replica", _src("Microsoft.App/containerApps",
                                                                 "App/containerApps"),
        "replicas", threshold=1),
    # --- CELL: KPI alerts ------------------------------------------------------------------------------------
    AlertRule(
        "kpi-tenant-latency", "cell", "container-app", "metric", "ResponseTime", "Average", "GreaterThan",
        "PT5M", "PT1M", 2, "CELL app response time above the tenant latency KPI",
        _src("Microsoft.App/containerApps"), "ms", kpi="cell.tenant_latency_ms"),
    AlertRule(
        # Azure SQL publishes no query-latency metric: the app's SQL dependency calls measure it.
        "kpi-db-latency", "cell", "app-insights", "log", "AvgDurationMs", "Average", "GreaterThan", "PT15M",
        "PT5M", 2, "CELL SQL query response time above the database KPI", LOG_TABLES["dependencies"], "ms",
        kpi="cell.database_latency_ms",
        query=('dependencies\n| where type == "SQL" and target contains "$sql_server"\n'
               "| summarize AvgDurationMs = avg(duration)")),
    AlertRule(
        "kpi-storage-throughput", "cell", "storage", "metric", "Transactions", "Total", "LessThan", "PT15M",
        "PT5M", 3, "CELL storage throughput below the IOPS KPI floor",
        _src("Microsoft.Storage/storageAccounts", "Storage/storageAccounts"), "IOPS", kpi="cell.storage_iops",
        per_seconds=1),
    AlertRule(
        "storage-latency", "cell", "storage", "metric", "SuccessE2ELatency", "Average", "GreaterThan", "PT5M",
        "PT1M", 2, "CELL storage end-to-end latency high",
        _src("Microsoft.Storage/storageAccounts", "Storage/storageAccounts"), "ms", threshold=1000),
    AlertRule(
        "kpi-container-cpu", "cell", "container-app", "metric", "CpuPercentage", "Average", "GreaterThan",
        "PT5M", "PT1M", 2, "CELL container CPU above the KPI", _src("Microsoft.App/containerApps"), "%",
        kpi="cell.container_cpu_percent"),
)

RULES: dict[str, AlertRule] = {r.id: r for r in CATALOG}


def rules_for(layer: Layer) -> list[AlertRule]:
    return [r for r in CATALOG if r.layer == layer]


def sql_variant(sku: str) -> str:
    """DTU service objectives (Basic, S*, P*) vs vCore ones (GP_/BC_/HS_...)."""
    from stamps.config.sql_skus import dtu_model

    return "dtu" if dtu_model(sku) else "vcore"


@dataclass(frozen=True)
class EffectiveRule:
    """A catalog rule with the config applied: what is deployed for every target of the rule."""

    rule: AlertRule
    threshold: float
    severity: int
    window: str
    frequency: str
    enabled: bool
    threshold_from: str

    @property
    def priority(self) -> str:
        return priority(self.severity)

    @property
    def criterion_threshold(self) -> float:
        """The threshold in the metric's own terms: rates become totals over the window."""
        if self.rule.per_seconds is None:
            return self.threshold
        return self.threshold * seconds(self.window) / self.rule.per_seconds


def kpi_value(cfg: StampsConfig, kpi: str) -> float:
    scope, field = kpi.split(".")
    section = cfg.kpis.global_ if scope == "global" else cfg.kpis.cell
    return float(getattr(section, field).alert)


def resolve(rule: AlertRule, cfg: StampsConfig) -> EffectiveRule:
    over = cfg.alerts.rules.get(rule.id, AlertRuleOverride())
    if rule.kpi is not None:
        threshold, origin = kpi_value(cfg, rule.kpi), rule.kpi_key or ""
    elif over.threshold is not None:
        threshold, origin = over.threshold, f"stamps:alerts.rules.{rule.id}.threshold"
    else:
        threshold, origin = float(rule.threshold or 0), "catalog default"
    return EffectiveRule(
        rule=rule,
        threshold=threshold,
        severity=rule.severity if over.severity is None else over.severity,
        window=over.window or rule.window,
        frequency=over.frequency or rule.frequency,
        enabled=over.enabled is not False,
        threshold_from=origin,
    )


def check_overrides(cfg: StampsConfig) -> list[str]:
    """Problems with `stamps:alerts.rules`, each naming its key and what would be valid."""
    out: list[str] = []
    for rule_id, over in cfg.alerts.rules.items():
        key = f"stamps:alerts.rules.{rule_id}"
        rule = RULES.get(rule_id)
        if rule is None:
            out.append(f"{key}: unknown alert rule; valid: {', '.join(sorted(RULES))}")
            continue
        if rule.kpi is not None and over.threshold is not None:
            out.append(f"{key}.threshold: this KPI rule reads its threshold from {rule.kpi_key}; set it there")
        eff = resolve(rule, cfg)
        windows, freqs = (METRIC_WINDOWS, METRIC_FREQUENCIES) if rule.kind == "metric" else (
            LOG_WINDOWS, LOG_FREQUENCIES)
        if eff.window not in windows:
            out.append(f"{key}.window: {eff.window} is not accepted by {rule.kind} alerts; valid: "
                       f"{', '.join(windows)}")
        if eff.frequency not in freqs:
            out.append(f"{key}.frequency: {eff.frequency} is not accepted by {rule.kind} alerts; valid: "
                       f"{', '.join(freqs)}")
        elif eff.window in windows and seconds(eff.frequency) > seconds(eff.window):
            out.append(f"{key}.frequency: {eff.frequency} is longer than the window {eff.window}; "
                       "evaluate at least once per window")
        if rule.min_window and eff.window in windows and seconds(eff.window) < seconds(rule.min_window):
            out.append(f"{key}.window: {rule.metric} is published every {rule.min_window}; use a window of "
                       f"at least {rule.min_window}")
    return out
