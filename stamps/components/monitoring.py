"""Monitoring: action groups per incident priority, the catalog's alert rules per scope, and the dashboards.

Runbook: "Alert Configuration", "Key Performance Indicators", "Custom Dashboards", "Incident Classification".
- `ActionGroups`: one group per priority (P0-P3). Email to `stamps:notifications.email`; the ops webhook
  (`stamps:alertWebhookUrl`) for P0-P2; the paging webhook (`stamps:pagerDutyWebhookUrl`) for P0 only.
  Both URLs are read as secrets and stay secret Outputs end to end.
- `AlertSet`: the catalog's rules of one layer for one scope instance (global, a region, a CELL instance).
  A CELL whose alerts are off (`alertsEnabled: false`, isolation, `stamps:alerts.enabled: false`) keeps its
  rules with `enabled: false`, so the rules and their tags stay visible to policy and to operators.
- `Monitoring`: wires the above to the global, regional and CELL resources and adds the dashboards.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from string import Template
from typing import Any

import pulumi
import pulumi_azure_native as azure

from stamps.components.base import StampsComponent
from stamps.components.cell import Cell
from stamps.components.global_layer import Global, TrafficRouting
from stamps.components.regional import Region
from stamps.config.errors import ConfigError
from stamps.config.loader import NAMESPACE
from stamps.config.regions import region_code
from stamps.environment import Environment
from stamps.monitoring import catalog
from stamps.monitoring.catalog import AlertRule, EffectiveRule, Layer, ScopeKind
from stamps.monitoring.dashboards import (
    LOGS_PART,
    MARKDOWN_PART,
    CellFacts,
    CellIds,
    Dashboard,
    GlobalIds,
    cell_dashboard,
    global_dashboard,
    layout,
    logs_inputs,
    markdown_settings,
    time_range_metadata,
)

PRIORITIES = ("P0", "P1", "P2", "P3")


def _secret(key: str) -> pulumi.Output[str]:
    """A secret config value as a secret Output; a missing key is a config error naming the key."""
    try:
        return pulumi.Config(NAMESPACE).require_secret(key)
    except pulumi.ConfigMissingError:
        raise ConfigError(
            [f"{NAMESPACE}:{key}: missing; set it with `pulumi config set --secret {NAMESPACE}:{key} <url>`"]
        ) from None


class ActionGroups(StampsComponent):
    """One action group per incident priority; `ids[priority]` is what alert rules notify."""

    def __init__(self, name: str, env: Environment, resource_group_name: pulumi.Input[str],
                 opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("stamps:monitoring:ActionGroups", name, opts)
        tags = env.tags("monitoring", region="global")
        webhook = _secret("alertWebhookUrl")
        pager = _secret("pagerDutyWebhookUrl")
        emails = [
            azure.monitor.MicrosoftCommonEmailReceiverArgs(name=f"email-{i}", email_address=addr,
                                                           use_common_alert_schema=True)
            for i, addr in enumerate(env.config.notifications.email)
        ]
        self.ids: dict[str, pulumi.Output[str]] = {}
        for p in PRIORITIES:
            hooks = []
            if p != "P3":  # P3 is the ticket queue: email only, no chat noise.
                hooks.append(azure.monitor.WebhookReceiverArgs(name="ops-webhook", service_uri=webhook,
                                                               use_common_alert_schema=True))
            if p == "P0":  # Only a complete outage pages someone.
                hooks.append(azure.monitor.WebhookReceiverArgs(name="pager", service_uri=pager,
                                                               use_common_alert_schema=True))
            group = azure.monitor.ActionGroup(
                self.child(p.lower()),
                action_group_name=f"ag-stamps-{env.config.environment}-{p.lower()}",
                resource_group_name=resource_group_name,
                location="global",
                group_short_name=f"stamps-{p.lower()}",
                enabled=True,
                email_receivers=emails,
                webhook_receivers=hooks,
                tags={**tags, "priority": p},
                opts=self.opts(),
            )
            self.ids[p] = group.id
        self.register_outputs({f"{p.lower()}Id": i for p, i in self.ids.items()})


@dataclass(frozen=True)
class Target:
    """A resource an alert set watches; `params` fill the `$placeholders` of log-rule queries."""

    scope: ScopeKind
    resource_id: pulumi.Input[str]
    variant: str | None = None
    params: Mapping[str, str] = field(default_factory=dict)


class AlertSet(StampsComponent):
    """The catalog's rules of one layer for one scope instance: one alert rule per catalog rule."""

    def __init__(self, name: str, env: Environment, layer: Layer, label: str, targets: Sequence[Target],
                 resource_group_name: pulumi.Input[str], log_location: str, groups: ActionGroups,
                 tags: dict[str, str], enabled: bool, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("stamps:monitoring:AlertSet", name, opts)
        self.rule_ids: list[str] = []
        for rule in catalog.rules_for(layer):
            target = next((t for t in targets if t.scope == rule.scope
                           and (rule.variant is None or rule.variant == t.variant)), None)
            if target is None:
                continue
            eff = catalog.resolve(rule, env.config)
            common: dict[str, Any] = dict(
                rule_name=f"{rule.id}-{label}",
                resource_group_name=resource_group_name,
                description=_describe(eff, label),
                severity=eff.severity,
                enabled=enabled and eff.enabled,
                scopes=[target.resource_id],
                evaluation_frequency=eff.frequency,
                window_size=eff.window,
                auto_mitigate=True,
                tags={**tags, "alert-rule": rule.id, "priority": eff.priority},
                opts=self.opts(),
            )
            if rule.kind == "metric":
                self._metric_alert(rule, eff, groups, common)
            else:
                self._log_alert(rule, eff, target, log_location, groups, common)
            self.rule_ids.append(rule.id)
        self.register_outputs({"rules": self.rule_ids, "enabled": enabled})

    def _metric_alert(self, rule: AlertRule, eff: EffectiveRule, groups: ActionGroups,
                      common: dict[str, Any]) -> None:
        # One criterion per alert: criteria in `allOf` are ANDed, so merging rules would silence them.
        azure.monitor.MetricAlert(
            self.child(rule.id),
            location="global",
            criteria=azure.monitor.MetricAlertSingleResourceMultipleMetricCriteriaArgs(
                odata_type="Microsoft.Azure.Monitor.SingleResourceMultipleMetricCriteria",
                all_of=[azure.monitor.MetricCriteriaArgs(
                    criterion_type="StaticThresholdCriterion",
                    name=rule.id,
                    metric_namespace=rule.namespace,
                    metric_name=rule.metric,
                    time_aggregation=rule.aggregation,
                    operator=rule.operator,
                    threshold=eff.criterion_threshold,
                )],
            ),
            actions=[azure.monitor.MetricAlertActionArgs(action_group_id=groups.ids[eff.priority])],
            **common,
        )

    def _log_alert(self, rule: AlertRule, eff: EffectiveRule, target: Target, location: str,
                   groups: ActionGroups, common: dict[str, Any]) -> None:
        azure.monitor.ScheduledQueryRule(
            self.child(rule.id),
            location=location,
            kind="LogAlert",
            display_name=common["rule_name"],
            criteria=azure.monitor.ScheduledQueryRuleCriteriaArgs(all_of=[azure.monitor.ConditionArgs(
                query=Template(rule.query or "").substitute(target.params),
                time_aggregation=rule.aggregation,
                metric_measure_column=rule.metric,
                operator=rule.operator,
                threshold=eff.criterion_threshold,
                failing_periods=azure.monitor.ConditionFailingPeriodsArgs(
                    number_of_evaluation_periods=1, min_failing_periods_to_alert=1),
            )]),
            actions=azure.monitor.ActionsArgs(action_groups=[groups.ids[eff.priority]]),
            **common,
        )


def _describe(eff: EffectiveRule, label: str) -> str:
    r = eff.rule
    op = {"GreaterThan": ">", "GreaterThanOrEqual": ">=", "LessThan": "<", "LessThanOrEqual": "<="}[r.operator]
    return (f"[{eff.priority}] {r.description} ({label}): {r.metric} {op} {eff.threshold:g} {r.unit} "
            f"over {eff.window}; threshold from {eff.threshold_from}. Source: {r.source}")


class Monitoring(StampsComponent):
    """Alerts for every global, regional and CELL resource, plus the global and per-CELL dashboards."""

    def __init__(self, name: str, env: Environment, glob: Global, routing: TrafficRouting,
                 regions: Mapping[str, Region], opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("stamps:monitoring:Monitoring", name, opts)
        home = env.primary_regions[0]
        on = env.config.alerts.enabled
        self.groups = ActionGroups(self.child("notify"), env, glob.resource_group.name, opts=self.opts())
        self.alert_sets: list[AlertSet] = [
            AlertSet(
                self.child("global"), env, "global", "global",
                [Target("front-door", routing.front_door.id),
                 Target("api-management", glob.apim.id), Target("cosmos", glob.cosmos.id),
                 Target("app-insights", glob.app_insights.id)],
                glob.resource_group.name, home, self.groups, env.tags("monitoring", region="global"), on,
                opts=self.opts(),
            )
        ] + [
            # One Traffic Manager profile per primary region: "no healthy endpoint" pages for that region.
            AlertSet(
                self.child(f"tm-{primary}"), env, "global", region_code(primary),
                [Target("traffic-manager", profile.id)],
                glob.resource_group.name, home, self.groups, env.tags("monitoring", region=primary), on,
                opts=self.opts(),
            )
            for primary, profile in routing.profiles.items()
        ]
        for region in regions.values():
            code = region_code(region.region)
            self.alert_sets.append(AlertSet(
                self.child(f"region-{region.region}"), env, "regional", code,
                [Target("app-gateway", region.app_gateway.id), Target("key-vault", region.key_vault.id)],
                region.resource_group.name, home, self.groups, env.tags("monitoring", region=region.region), on,
                opts=self.opts(),
            ))
            for cell in region.cells:
                self.alert_sets.append(self._cell_alerts(env, cell, glob, home))

        self.dashboards: list[azure.portal.Dashboard] = [self._global_dashboard(env, glob, regions, home)]
        for region in regions.values():
            self.dashboards += [self._cell_dashboard(env, cell, glob) for cell in region.cells]
        self.register_outputs({"dashboards": [d.id for d in self.dashboards],
                               "alertSets": len(self.alert_sets)})

    def _cell_alerts(self, env: Environment, cell: Cell, glob: Global, home: str) -> AlertSet:
        inst = cell.instance
        return AlertSet(
            self.child(f"cell-{inst.key}"), env, "cell", inst.key,
            [Target("container-app", cell.app.id),
             Target("sql-database", cell.database.id, variant=catalog.sql_variant(inst.cell.sql.sku)),
             # A standby's blobs are its primary's account, which the primary's alert set watches already.
             *([Target("storage", cell.storage.id)] if cell.instance.role == "primary" else []),
             Target("app-insights", glob.app_insights.id, params={"sql_server": env.naming.sql_server(inst.key)})],
            cell.resource_group.name, home, self.groups,
            env.tags("monitoring", region=inst.region, cell=inst.name, tenancy=inst.model, role=inst.role),
            inst.alerts_enabled,
            opts=self.opts(),
        )

    def _global_dashboard(self, env: Environment, glob: Global, regions: Mapping[str, Region],
                          home: str) -> azure.portal.Dashboard:
        dash = global_dashboard(f"dash-stamps-{env.config.environment}-global", env.config.kpis,
                                list(regions))
        gateways = {r: reg.app_gateway.id for r, reg in regions.items()}
        ids = pulumi.Output.all(glob.workspace.id, glob.app_insights.id, pulumi.Output.all(**gateways)).apply(
            lambda a: GlobalIds(workspace_id=a[0], app_insights_id=a[1], gateways=dict(a[2]))
        )
        return self._dashboard(self.child("dash-global"), dash, ids, glob.resource_group.name, home,
                               env.tags("monitoring", region="global"))

    def _cell_dashboard(self, env: Environment, cell: Cell, glob: Global) -> azure.portal.Dashboard:
        inst = cell.instance
        variant = catalog.sql_variant(inst.cell.sql.sku)
        facts = CellFacts(
            cell=inst.name, key=inst.key, region=inst.region, role=inst.role, model=inst.model,
            capacity=inst.cell.capacity, tenants=tuple(t.id for t in inst.tenants), isolated=inst.isolated,
            alerts_enabled=inst.alerts_enabled, sql_sku=inst.cell.sql.sku,
            sql_metric="dtu_consumption_percent" if variant == "dtu" else "cpu_percent",
        )
        dash = cell_dashboard(f"dash-stamps-{env.config.environment}-{inst.key}", env.config.kpis, facts)
        ids = pulumi.Output.all(glob.workspace.id, cell.app.id, cell.database.id, cell.storage.id).apply(
            lambda a: CellIds(workspace_id=a[0], app_id=a[1], database_id=a[2], storage_id=a[3])
        )
        return self._dashboard(
            self.child(f"dash-{inst.key}"), dash, ids, cell.resource_group.name, inst.region,
            env.tags("monitoring", region=inst.region, cell=inst.name, tenancy=inst.model, role=inst.role),
        )

    def _dashboard(self, name: str, dash: Dashboard, ids: pulumi.Output[Any], rg: pulumi.Input[str],
                   location: str, tags: dict[str, str]) -> azure.portal.Dashboard:
        parts = []
        for i, placed in enumerate(layout(dash.tiles)):
            tile = placed.tile
            content = ids.apply(tile.build)
            if tile.chart == "markdown":
                meta = azure.portal.DashboardPartMetadataArgs(
                    type=MARKDOWN_PART, inputs=[], settings=content.apply(lambda c, t=tile: markdown_settings(t, c)))
            else:
                meta = azure.portal.DashboardPartMetadataArgs(
                    type=LOGS_PART,
                    inputs=pulumi.Output.all(ids, content).apply(
                        lambda a, i=i, t=tile: logs_inputs(dash.name, i, t, a[0].workspace_id, a[1])),
                    settings={"content": {"PartTitle": tile.title, "PartSubTitle": tile.subtitle}},
                )
            parts.append(azure.portal.DashboardPartsArgs(
                position=azure.portal.DashboardPartsPositionArgs(
                    x=placed.x, y=placed.y, col_span=placed.col_span, row_span=placed.row_span),
                metadata=meta,
            ))
        return azure.portal.Dashboard(
            name,
            dashboard_name=dash.name,
            resource_group_name=rg,
            location=location,
            properties=azure.portal.DashboardPropertiesWithProvisioningStateArgs(
                lenses=[azure.portal.DashboardLensArgs(order=0, parts=parts)],
                metadata=time_range_metadata(24),
            ),
            # The portal shows `hidden-title` as the dashboard's display name.
            tags={**tags, "hidden-title": dash.title},
            opts=self.opts(),
        )
