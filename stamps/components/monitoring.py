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
from stamps.config.errors import ConfigError
from stamps.config.loader import NAMESPACE
from stamps.config.regions import region_code
from stamps.environment import CellInstance, Environment
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
from stamps.stacks.contracts import CellOutputs, GlobalOutputs, RegionOutputs, pick

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
                 resource_group_name: pulumi.Input[str], log_location: str, groups: pulumi.Input[Mapping[str, str]],
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

    def _metric_alert(self, rule: AlertRule, eff: EffectiveRule, groups: pulumi.Input[Mapping[str, str]],
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
            actions=[azure.monitor.MetricAlertActionArgs(action_group_id=_group(groups, eff.priority))],
            **common,
        )

    def _log_alert(self, rule: AlertRule, eff: EffectiveRule, target: Target, location: str,
                   groups: pulumi.Input[Mapping[str, str]], common: dict[str, Any]) -> None:
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
            actions=azure.monitor.ActionsArgs(action_groups=[_group(groups, eff.priority)]),
            **common,
        )


def _group(groups: pulumi.Input[Mapping[str, str]], priority: str) -> pulumi.Output[str]:
    """The action group of a priority, from the global layer's map (in-process or through a StackReference)."""
    return pick(groups, priority)


def _describe(eff: EffectiveRule, label: str) -> str:
    r = eff.rule
    op = {"GreaterThan": ">", "GreaterThanOrEqual": ">=", "LessThan": "<", "LessThanOrEqual": "<="}[r.operator]
    return (f"[{eff.priority}] {r.description} ({label}): {r.metric} {op} {eff.threshold:g} {r.unit} "
            f"over {eff.window}; threshold from {eff.threshold_from}. Source: {r.source}")


class Monitoring(StampsComponent):
    """Alerts for every global, regional and CELL resource, plus the global and per-CELL dashboards.

    Declared in parts, each in the stack that owns what it watches (stamps/stacks/units.py): the action
    groups with the global layer, a CELL's alerts and dashboard with that CELL, a region's with its edge, the
    global ones with routing. Every stack declares this component under one name, so alert URNs are the
    same in the single-stack layout. `done()` registers the outputs, last.
    """

    def __init__(self, name: str, env: Environment, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("stamps:monitoring:Monitoring", name, opts)
        self.env = env
        self.home = env.primary_regions[0]
        self.alert_sets: list[AlertSet] = []
        self.dashboards: list[azure.portal.Dashboard] = []

    def done(self) -> None:
        self.register_outputs({"dashboards": [d.id for d in self.dashboards], "alertSets": len(self.alert_sets)})

    def action_groups(self, resource_group_name: pulumi.Input[str]) -> dict[str, pulumi.Output[str]]:
        return ActionGroups(self.child("notify"), self.env, resource_group_name, opts=self.opts()).ids

    def global_alerts(self, glob: GlobalOutputs, front_door_profile_id: pulumi.Input[str],
                      profiles: Mapping[str, pulumi.Input[str]]) -> None:
        env, on = self.env, self.env.config.alerts.enabled
        rg = glob.resource_group_name
        self.alert_sets.append(AlertSet(
            self.child("global"), env, "global", "global",
            [Target("front-door", front_door_profile_id),
             Target("api-management", glob.apim_id), Target("cosmos", glob.directory_account_id),
             Target("app-insights", glob.app_insights_id)],
            rg, self.home, glob.action_groups, env.tags("monitoring", region="global"), on, opts=self.opts(),
        ))
        # One Traffic Manager profile per primary region: "no healthy endpoint" pages for that region.
        for primary, profile_id in profiles.items():
            self.alert_sets.append(AlertSet(
                self.child(f"tm-{primary}"), env, "global", region_code(primary),
                [Target("traffic-manager", profile_id)],
                rg, self.home, glob.action_groups, env.tags("monitoring", region=primary), on, opts=self.opts(),
            ))

    def region_alerts(self, region: str, glob: GlobalOutputs, net: RegionOutputs,
                      app_gateway_id: pulumi.Input[str]) -> None:
        env = self.env
        self.alert_sets.append(AlertSet(
            self.child(f"region-{region}"), env, "regional", region_code(region),
            [Target("app-gateway", app_gateway_id), Target("key-vault", net.key_vault_id)],
            net.resource_group_name, self.home, glob.action_groups, env.tags("monitoring", region=region),
            env.config.alerts.enabled, opts=self.opts(),
        ))

    def cell(self, inst: CellInstance, glob: GlobalOutputs, cell: CellOutputs) -> None:
        """A CELL instance's alerts and dashboard: they deploy, and wave, with the CELL."""
        env = self.env
        self.alert_sets.append(AlertSet(
            self.child(f"cell-{inst.key}"), env, "cell", inst.key,
            [Target("container-app", cell.app_id),
             Target("sql-database", cell.database_id, variant=catalog.sql_variant(inst.cell.sql.sku)),
             # A standby's blobs are its primary's account, which the primary's alert set watches already.
             *([Target("storage", cell.storage_id)] if inst.role == "primary" else []),
             Target("app-insights", glob.app_insights_id, params={"sql_server": env.naming.sql_server(inst.key)})],
            cell.resource_group_name, self.home, glob.action_groups,
            env.tags("monitoring", region=inst.region, cell=inst.name, tenancy=inst.model, role=inst.role),
            inst.alerts_enabled,
            opts=self.opts(),
        ))
        self.dashboards.append(self._cell_dashboard(inst, glob, cell))

    def global_dashboard(self, glob: GlobalOutputs, gateways: Mapping[str, pulumi.Input[str]]) -> None:
        env = self.env
        dash = global_dashboard(f"dash-stamps-{env.config.environment}-global", env.config.kpis, list(gateways))
        ids = pulumi.Output.all(glob.workspace_id, glob.app_insights_id, pulumi.Output.all(**gateways)).apply(
            lambda a: GlobalIds(workspace_id=a[0], app_insights_id=a[1], gateways=dict(a[2]))
        )
        self.dashboards.append(self._dashboard(self.child("dash-global"), dash, ids, glob.resource_group_name,
                                               self.home, env.tags("monitoring", region="global")))

    def _cell_dashboard(self, inst: CellInstance, glob: GlobalOutputs, cell: CellOutputs) -> azure.portal.Dashboard:
        env = self.env
        variant = catalog.sql_variant(inst.cell.sql.sku)
        facts = CellFacts(
            cell=inst.name, key=inst.key, region=inst.region, role=inst.role, model=inst.model,
            capacity=inst.cell.capacity, tenants=tuple(t.id for t in inst.tenants), isolated=inst.isolated,
            alerts_enabled=inst.alerts_enabled, sql_sku=inst.cell.sql.sku,
            sql_metric="dtu_consumption_percent" if variant == "dtu" else "cpu_percent",
        )
        dash = cell_dashboard(f"dash-stamps-{env.config.environment}-{inst.key}", env.config.kpis, facts)
        ids = pulumi.Output.all(glob.workspace_id, cell.app_id, cell.database_id, cell.storage_id).apply(
            lambda a: CellIds(workspace_id=a[0], app_id=a[1], database_id=a[2], storage_id=a[3])
        )
        return self._dashboard(
            self.child(f"dash-{inst.key}"), dash, ids, cell.resource_group_name, inst.region,
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
                    type=MARKDOWN_PART, inputs=[],
                    settings=content.apply(lambda c, t=tile: markdown_settings(t, c)))  # type: ignore[misc]  # the defaults bind this loop's values
            else:
                meta = azure.portal.DashboardPartMetadataArgs(
                    type=LOGS_PART,
                    inputs=pulumi.Output.all(ids, content).apply(
                        lambda a, i=i, t=tile: logs_inputs(dash.name, i, t, a[0].workspace_id, a[1])),  # type: ignore[misc]  # the defaults bind this loop's values
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
