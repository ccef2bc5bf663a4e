"""The runbook's "Custom Dashboards" as data: tiles, their grid layout and the KQL bound to real resource ids.

Runbook: "Global Operations Dashboard" (availability map, traffic distribution, response time trends, error
rate by region) and "CELL Operations Dashboard" (health status grid, database performance, storage
utilization). The runbook's KQL is illustrative and is fixed here for the tables the workspace really has:
- App Insights is workspace-based, so requests are in `AppRequests` (Success, DurationMs,
  ClientCountryOrRegion), filtered to the component's `_ResourceId`.
- `requests` has no `cloud_RegionName`: traffic and errors by region come from each regional App Gateway's
  platform metrics (TotalRequests = requests served, FailedRequests = 5xx) in `AzureMetrics`.
- `Heartbeat` needs VM agents; CELLs run on Container Apps, so health reads the CELL resources' metrics
  (Replicas, SQL `availability`, storage `Availability`) from `AzureMetrics`.
- Storage `UsedCapacity` is not exportable to logs (catalog.EXPORTED_TO_LOGS): utilization is transactions
  (IOPS against the KPI floor), bytes in/out and end-to-end latency.
Every query names the ids of the resources it reads, so a tile always shows its own CELL's data.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from stamps.config.model import KpiConfig

Chart = Literal["markdown", "grid", "line", "pie", "bar"]
Size = Literal["banner", "large", "medium", "small", "wide"]

GRID_COLUMNS = 12
# Dashboard grid units (columns x rows) per runbook tile size.
SIZES: dict[Size, tuple[int, int]] = {
    "banner": (12, 2), "large": (8, 4), "medium": (4, 4), "small": (4, 3), "wide": (8, 3),
}

LOGS_PART = "Extension/Microsoft_OperationsManagementSuite_Workspace/PartType/LogsDashboardPart"
MARKDOWN_PART = "Extension/HubsExtension/PartType/MarkdownPart"
_CHARTS: dict[Chart, tuple[str, str | None]] = {
    # chart → (ControlType, SpecificChart) of the Logs part.
    "grid": ("AnalyticsGrid", None),
    "line": ("FrameControlChart", "Line"),
    "pie": ("FrameControlChart", "Pie"),
    "bar": ("FrameControlChart", "StackedColumn"),
}

GLOBAL_TITLE = "Stamps Pattern – Global Operations"


@dataclass(frozen=True)
class GlobalIds:
    """What the global dashboard reads: the workspace, App Insights and each region's App Gateway."""

    workspace_id: str
    app_insights_id: str
    gateways: dict[str, str]


@dataclass(frozen=True)
class CellIds:
    """What a CELL dashboard reads: the CELL instance's own app, database and storage account."""

    workspace_id: str
    app_id: str
    database_id: str
    storage_id: str


@dataclass(frozen=True)
class CellFacts:
    """Static facts shown in a CELL dashboard's banner (nothing that changes on failover)."""

    cell: str
    key: str
    region: str
    role: str
    model: str
    capacity: int
    tenants: tuple[str, ...]
    isolated: bool
    alerts_enabled: bool
    sql_sku: str
    sql_metric: str


@dataclass(frozen=True)
class Tile:
    """One dashboard tile; `build` turns the resolved ids into the tile's KQL (or markdown)."""

    title: str
    chart: Chart
    size: Size
    build: Callable[[Any], str]
    subtitle: str = ""
    time_range: str = "P1D"
    x_axis: tuple[str, str] | None = None
    y_axis: tuple[tuple[str, str], ...] = ()
    split_by: tuple[str, str] | None = None


@dataclass(frozen=True)
class Placed:
    tile: Tile
    x: int
    y: int
    col_span: int
    row_span: int


@dataclass
class Dashboard:
    name: str
    title: str
    tiles: list[Tile] = field(default_factory=list)


def layout(tiles: Sequence[Tile]) -> list[Placed]:
    """Row-major packing on the 12-column grid: each tile goes right of the last one or starts a new row."""
    out: list[Placed] = []
    x = y = row_h = 0
    for t in tiles:
        w, h = SIZES[t.size]
        if x + w > GRID_COLUMNS:
            x, y, row_h = 0, y + row_h, 0
        out.append(Placed(t, x, y, w, h))
        x, row_h = x + w, max(row_h, h)
    return out


def _q(value: str) -> str:
    """A KQL string literal (ids and names never hold quotes, but never let one end the literal)."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _datatable(columns: str, rows: Sequence[Sequence[str | float]]) -> str:
    cells = ",\n    ".join(", ".join(_q(c) if isinstance(c, str) else repr(float(c)) for c in row) for row in rows)
    return f"datatable({columns}) [\n    {cells}\n]"


def _gateways(ids: GlobalIds) -> str:
    rows = [(rid.lower(), region) for region, rid in sorted(ids.gateways.items())]
    return "let gateways = " + _datatable("ResourceId: string, Region: string", rows) + ";\n"


def _leaf(resource_id: str) -> str:
    return resource_id.rsplit("/", 1)[-1]


def _num(v: float) -> str:
    return f"{v:g}"


# --- Global Operations -------------------------------------------------------------------------------------
def global_dashboard(name: str, kpis: KpiConfig, regions: Sequence[str]) -> Dashboard:
    g = kpis.global_

    def banner(ids: GlobalIds) -> str:
        return "\n".join([
            f"## {GLOBAL_TITLE}",
            f"Regions: {', '.join(regions)} · Application Insights `{_leaf(ids.app_insights_id)}` "
            f"· Log Analytics `{_leaf(ids.workspace_id)}`",
            "",
            f"- **Availability** target {_num(g.availability_percent.target)}% · alert below "
            f"{_num(g.availability_percent.alert)}%",
            f"- **Latency** target {_num(g.latency_ms.target)} ms · alert above {_num(g.latency_ms.alert)} ms",
            f"- **Error rate** target {_num(g.error_rate_percent.target)}% · alert above "
            f"{_num(g.error_rate_percent.alert)}%",
            f"- **API latency** target {_num(g.api_latency_ms.target)} ms · alert above "
            f"{_num(g.api_latency_ms.alert)} ms",
            f"- **API throughput** target {g.api_throughput_per_minute.target:,.0f}/min · alert below "
            f"{g.api_throughput_per_minute.alert:,.0f}/min",
        ])

    def availability(ids: GlobalIds) -> str:
        return (
            "AppRequests\n"
            f"| where _ResourceId =~ {_q(ids.app_insights_id)}\n"
            "| summarize Requests = count(), Succeeded = countif(Success == true) by ClientCountryOrRegion\n"
            "| extend AvailabilityPercent = round(100.0 * Succeeded / Requests, 3)\n"
            f"| extend BelowKpi = AvailabilityPercent < {_num(g.availability_percent.alert)}\n"
            "| project ClientCountryOrRegion, AvailabilityPercent, Requests, BelowKpi\n"
            "| order by AvailabilityPercent asc"
        )

    def traffic(ids: GlobalIds) -> str:
        return (
            _gateways(ids)
            + "AzureMetrics\n"
            '| where ResourceProvider == "MICROSOFT.NETWORK" and MetricName == "TotalRequests"\n'
            "| extend ResourceId = tolower(_ResourceId)\n"
            "| lookup kind=inner gateways on ResourceId\n"
            "| summarize Requests = sum(Total) by Region"
        )

    def response_time(ids: GlobalIds) -> str:
        return (
            "AppRequests\n"
            f"| where _ResourceId =~ {_q(ids.app_insights_id)}\n"
            "| summarize AvgDurationMs = avg(DurationMs) by bin(TimeGenerated, 5m)\n"
            f"| extend TargetMs = {_num(g.latency_ms.target)}, AlertMs = {_num(g.latency_ms.alert)}\n"
            "| order by TimeGenerated asc"
        )

    def errors(ids: GlobalIds) -> str:
        # TotalRequests counts requests served successfully, FailedRequests the 5xx ones: both make the total.
        return (
            _gateways(ids)
            + "AzureMetrics\n"
            '| where ResourceProvider == "MICROSOFT.NETWORK" and MetricName in ("TotalRequests", "FailedRequests")\n'
            "| extend ResourceId = tolower(_ResourceId)\n"
            "| lookup kind=inner gateways on ResourceId\n"
            '| summarize Served = sumif(Total, MetricName == "TotalRequests"), '
            'Failed = sumif(Total, MetricName == "FailedRequests") by Region\n'
            "| extend ErrorRatePercent = iff(Served + Failed == 0, 0.0, round(100.0 * Failed / (Served + Failed), 3))\n"
            "| project Region, ErrorRatePercent, Failed, Served"
        )

    return Dashboard(name, GLOBAL_TITLE, [
        Tile("Global Operations", "markdown", "banner", banner),
        Tile("Global Availability by Country", "grid", "large", availability,
             subtitle="AppRequests: % successful requests per client country, worst first"),
        Tile("Traffic Distribution by Region", "pie", "medium", traffic,
             subtitle="App Gateway TotalRequests per region", x_axis=("Region", "string"),
             y_axis=(("Requests", "real"),)),
        Tile("Response Time Trend (5-minute bins)", "line", "large", response_time,
             subtitle="AppRequests: average duration vs latency KPI", x_axis=("TimeGenerated", "datetime"),
             y_axis=(("AvgDurationMs", "real"), ("TargetMs", "real"), ("AlertMs", "real"))),
        Tile("Error Rate by Region", "bar", "medium", errors,
             subtitle="App Gateway 5xx share of requests per region", x_axis=("Region", "string"),
             y_axis=(("ErrorRatePercent", "real"),)),
    ])


# --- CELL Operations ---------------------------------------------------------------------------------------
def cell_title(facts: CellFacts) -> str:
    return f"Stamps Pattern – CELL Operations: {facts.cell} ({facts.region}, {facts.role})"


def cell_dashboard(name: str, kpis: KpiConfig, facts: CellFacts) -> Dashboard:
    c = kpis.cell

    def banner(ids: CellIds) -> str:
        state = "ISOLATED (no traffic, alerts disabled)" if facts.isolated else (
            "alerts disabled" if not facts.alerts_enabled else "in service")
        # A shared CELL lists no tenants: onboarding must not rewrite two dashboards per tenant (its change stays
        # two API Management objects and one routing value); `stamps capacity` and the directory list them.
        tenants = (", ".join(facts.tenants) if facts.model == "dedicated" and facts.tenants else
                   "`stamps capacity` (placement) and the tenant directory (Cosmos DB `globaldb/tenants`)")
        return "\n".join([
            f"## CELL {facts.cell} · {facts.region} · {facts.role}",
            f"{facts.model} CELL · capacity {facts.capacity} tenants · state: **{state}**",
            "",
            f"- **Tenants**: {tenants}",
            f"- **Resources**: app `{_leaf(ids.app_id)}` · database `{_leaf(ids.database_id)}` ({facts.sql_sku}) "
            f"· storage `{_leaf(ids.storage_id)}`",
            f"- **KPIs**: tenant latency alert above {_num(c.tenant_latency_ms.alert)} ms · database above "
            f"{_num(c.database_latency_ms.alert)} ms · storage below {_num(c.storage_iops.alert)} IOPS · "
            f"container CPU above {_num(c.container_cpu_percent.alert)}%",
        ])

    def health(ids: CellIds) -> str:
        # Each CELL resource's health signal and the value it must reach; "no data" rows stay visible.
        signals = _datatable(
            "ResourceId: string, Component: string, Signal: string, HealthyAtLeast: real",
            [(ids.app_id.lower(), "Container App", "Replicas", 1),
             (ids.database_id.lower(), "SQL database", "availability", 99.99),
             (ids.storage_id.lower(), "Storage account", "Availability", 99.9)],
        )
        return (
            f"let signals = {signals};\n"
            "let latest = AzureMetrics\n"
            "    | where TimeGenerated > ago(15m)\n"
            "    | extend ResourceId = tolower(_ResourceId)\n"
            "    | join kind=inner signals on $left.ResourceId == $right.ResourceId, "
            "$left.MetricName == $right.Signal\n"
            "    | summarize arg_max(TimeGenerated, Average, Maximum) by Component, Signal\n"
            '    | project Component, LastSeen = TimeGenerated, Value = iff(Signal == "Replicas", Maximum, Average);\n'
            "signals\n"
            "| join kind=leftouter latest on Component\n"
            '| extend Status = case(isnull(LastSeen), "no data", Value >= HealthyAtLeast, "healthy", "unhealthy")\n'
            "| project Component, Signal, Value, HealthyAtLeast, LastSeen, Status"
        )

    def database(ids: CellIds) -> str:
        return (
            "AzureMetrics\n"
            f"| where _ResourceId =~ {_q(ids.database_id)}\n"
            f'| where MetricName in ("{facts.sql_metric}", "physical_data_read_percent", "log_write_percent")\n'
            "| summarize AvgPercent = avg(Average) by bin(TimeGenerated, 5m), MetricName\n"
            "| order by TimeGenerated asc"
        )

    def storage(ids: CellIds) -> str:
        return (
            "AzureMetrics\n"
            f"| where _ResourceId =~ {_q(ids.storage_id)}\n"
            '| where MetricName in ("Transactions", "Ingress", "Egress", "SuccessE2ELatency")\n'
            '| summarize Transactions = sumif(Total, MetricName == "Transactions"), '
            'Minutes = dcountif(TimeGenerated, MetricName == "Transactions"),\n'
            '    IngressBytes = sumif(Total, MetricName == "Ingress"),\n'
            '    EgressBytes = sumif(Total, MetricName == "Egress"),\n'
            '    AvgE2ELatencyMs = avgif(Average, MetricName == "SuccessE2ELatency")\n'
            "| extend AvgIops = iff(Minutes == 0, 0.0, round(Transactions / (60.0 * Minutes), 1))\n"
            f"| extend IopsAlertBelow = {_num(c.storage_iops.alert)}\n"
            "| project AvgIops, IopsAlertBelow, AvgE2ELatencyMs, IngressBytes, EgressBytes"
        )

    def app(ids: CellIds) -> str:
        return (
            "AzureMetrics\n"
            f"| where _ResourceId =~ {_q(ids.app_id)}\n"
            '| where MetricName in ("Requests", "ResponseTime")\n'
            '| summarize Requests = sumif(Total, MetricName == "Requests"), '
            'AvgResponseMs = avgif(Average, MetricName == "ResponseTime") by bin(TimeGenerated, 5m)\n'
            f"| extend AlertMs = {_num(c.tenant_latency_ms.alert)}\n"
            "| order by TimeGenerated asc"
        )

    return Dashboard(name, cell_title(facts), [
        Tile(f"CELL {facts.cell} ({facts.role})", "markdown", "banner", banner),
        Tile("CELL Health Status", "grid", "large", health, time_range="PT1H",
             subtitle="Latest health signal of each CELL resource (AzureMetrics, last 15 min)"),
        Tile("Database Performance", "line", "medium", database, time_range="PT1H",
             subtitle=f"{facts.sql_metric}, data IO and log IO (%)", x_axis=("TimeGenerated", "datetime"),
             y_axis=(("AvgPercent", "real"),), split_by=("MetricName", "string")),
        Tile("Storage Utilization", "grid", "small", storage, time_range="PT1H",
             subtitle="IOPS vs KPI floor, latency, bytes in/out"),
        # Not in the runbook's CELL dashboard, but it charts the tenant latency KPI the CELL is alerted on.
        Tile("Tenant Traffic and Response Time", "line", "wide", app, time_range="PT1H",
             subtitle="Container App requests and average response time vs tenant latency KPI",
             x_axis=("TimeGenerated", "datetime"),
             y_axis=(("AvgResponseMs", "real"), ("AlertMs", "real"), ("Requests", "real"))),
    ])


# --- Azure dashboard JSON ----------------------------------------------------------------------------------
def part_id(dashboard: str, index: int) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"stamps/dashboard/{dashboard}/{index}"))


def markdown_settings(tile: Tile, content: str) -> dict[str, Any]:
    return {"content": {"settings": {"content": content, "title": tile.title, "subtitle": tile.subtitle}}}


def logs_inputs(dashboard: str, index: int, tile: Tile, workspace_id: str, query: str) -> list[dict[str, Any]]:
    """The Logs part's inputs as the portal exports them: scope, query, chart type and title."""
    control, specific = _CHARTS[tile.chart]
    inputs: list[dict[str, Any]] = [
        {"name": "resourceTypeMode", "isOptional": True, "value": "workspace"},
        {"name": "ComponentId", "isOptional": True, "value": workspace_id},
        {"name": "Scope", "isOptional": True, "value": {"resourceIds": [workspace_id]}},
        {"name": "PartId", "isOptional": True, "value": part_id(dashboard, index)},
        {"name": "Version", "isOptional": True, "value": "2.0"},
        {"name": "TimeRange", "isOptional": True, "value": tile.time_range},
        {"name": "Query", "isOptional": True, "value": query},
        {"name": "ControlType", "isOptional": True, "value": control},
        {"name": "PartTitle", "isOptional": True, "value": tile.title},
        {"name": "PartSubTitle", "isOptional": True, "value": tile.subtitle},
        {"name": "IsQueryContainTimeRange", "isOptional": True, "value": False},
    ]
    if specific is not None:
        inputs.append({"name": "SpecificChart", "isOptional": True, "value": specific})
        dims: dict[str, Any] = {"aggregation": "Sum"}
        if tile.x_axis:
            dims["xAxis"] = {"name": tile.x_axis[0], "type": tile.x_axis[1]}
        dims["yAxis"] = [{"name": n, "type": t} for n, t in tile.y_axis]
        dims["splitBy"] = [{"name": tile.split_by[0], "type": tile.split_by[1]}] if tile.split_by else []
        inputs.append({"name": "Dimensions", "isOptional": True, "value": dims})
    return inputs


def time_range_metadata(hours: int) -> dict[str, Any]:
    """The dashboard-level time filter (the portal's "Last N hours")."""
    return {"model": {"timeRange": {"value": {"relative": {"duration": hours, "timeUnit": 1}},
                                    "type": "MsPortalFx.Composition.Configuration.ValueTypes.TimeRange"}}}
