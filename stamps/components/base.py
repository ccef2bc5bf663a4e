"""What every stamps component shares: child options and diagnostic settings.

Diagnostic settings are declared next to the resource they watch, so no resource can be added without
its logs and metrics reaching the workspace; the table below is the one place that knows which
categories each Azure resource type publishes.
"""

from __future__ import annotations

import uuid

import pulumi
import pulumi_azure_native as azure
import pulumiverse_time as time

# Per type: (send the allLogs category group?, metric categories). Types absent here publish no
# diagnostics (resource groups, alert rules, dashboards, API Management sub-resources...).
# Source: "Supported categories for Azure Monitor resource logs" and each service's monitoring reference.
DIAGNOSTICS: dict[str, tuple[bool, tuple[str, ...]]] = {
    "azure-native:operationalinsights:Workspace": (True, ("AllMetrics",)),
    "azure-native:applicationinsights:Component": (True, ("AllMetrics",)),
    "azure-native:cdn:Profile": (True, ("AllMetrics",)),
    "azure-native:trafficmanager:Profile": (True, ("AllMetrics",)),
    "azure-native:cosmosdb:DatabaseAccount": (True, ("Requests",)),
    "azure-native:apimanagement:ApiManagementService": (True, ("AllMetrics",)),
    "azure-native:network:VirtualNetwork": (True, ("AllMetrics",)),
    "azure-native:network:PublicIPAddress": (True, ("AllMetrics",)),
    "azure-native:network:ApplicationGateway": (True, ("AllMetrics",)),
    "azure-native:keyvault:Vault": (True, ("AllMetrics",)),
    "azure-native:automation:AutomationAccount": (True, ("AllMetrics",)),
    "azure-native:app:ManagedEnvironment": (True, ("AllMetrics",)),
    "azure-native:app:ContainerApp": (False, ("AllMetrics",)),
    "azure-native:sql:Database": (True, ("Basic", "InstanceAndAppAdvanced", "WorkloadManagement")),
    "azure-native:storage:StorageAccount": (False, ("Transaction",)),
}

ROLE_IDS = {
    # Built-in role definition ids (stable across tenants):
    # https://learn.microsoft.com/azure/role-based-access-control/built-in-roles
    "Storage Blob Data Contributor": "ba92f5b4-2d11-453d-a403-e96b0029c9fe",
    "Key Vault Secrets User": "4633458b-17de-408a-b874-0445c86b69e6",
    "Key Vault Secrets Officer": "b86a8fe4-44ce-4948-aee5-eccb2c155cd7",
    "Key Vault Certificates Officer": "a4417e6f-fecd-4de8-b567-7b0420556985",
    # Publishes all telemetry (not only metrics) to an Application Insights resource with local auth disabled:
    # https://learn.microsoft.com/azure/azure-monitor/app/azure-ad-authentication
    "Monitoring Metrics Publisher": "3913510d-42f4-4e42-8a64-420c390055eb",
}

# A role assignment exists as soon as ARM answers, but Azure RBAC applies it only after ARM's caches refresh: "it can
# take up to 10 minutes for changes to take effect" (learn.microsoft.com/azure/role-based-access-control/
# troubleshooting, "Role assignment changes are not being detected"). A resource that uses a data-plane role when it
# is created (a gateway reading its certificate, an app starting with its identity) waits this long after the grant.
ROLE_PROPAGATION = "10m"
SLEEP_TYPE = "time:index/sleep:Sleep"

# Cosmos DB data-plane roles are not Azure RBAC roles: they are granted with sqlRoleAssignments on the account
# (https://learn.microsoft.com/azure/cosmos-db/nosql/security/reference-data-plane-roles).
COSMOS_ROLE_IDS = {
    "Cosmos DB Built-in Data Reader": "00000000-0000-0000-0000-000000000001",
    "Cosmos DB Built-in Data Contributor": "00000000-0000-0000-0000-000000000002",
}


class StampsComponent(pulumi.ComponentResource):
    """A component whose children are always parented to it and named after it."""

    def __init__(self, type_token: str, name: str, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(type_token, name, None, opts)
        self._name = name

    def child(self, suffix: str) -> str:
        return f"{self._name}-{suffix}"

    def opts(self, **kwargs: object) -> pulumi.ResourceOptions:
        return pulumi.ResourceOptions(parent=self, **kwargs)  # type: ignore[arg-type]

    def diagnose(self, resource: pulumi.CustomResource, workspace_id: pulumi.Input[str],
                 resource_uri: pulumi.Input[str] | None = None, name: str | None = None,
                 log_categories: tuple[str, ...] | None = None, metrics: tuple[str, ...] | None = None,
                 depends_on: list[pulumi.Resource] | None = None) -> azure.monitor.DiagnosticSetting:
        """Send the resource's logs and metrics to the Log Analytics workspace.

        By default per DIAGNOSTICS; a sub-resource (a blob service, a server's `master` database) names its own
        log categories and metrics.
        """
        all_logs, default_metrics = DIAGNOSTICS.get(resource.pulumi_type, (False, ()))  # type: ignore[attr-defined]
        child_name = name or f"{resource._name}-diag"  # type: ignore[attr-defined]
        if log_categories is not None:
            logs = [azure.monitor.DiagnosticsLogSettingsArgs(category=c, enabled=True) for c in log_categories]
        else:
            logs = [azure.monitor.DiagnosticsLogSettingsArgs(category_group="allLogs", enabled=True)] if all_logs \
                else []
        return azure.monitor.DiagnosticSetting(
            child_name,
            name="to-log-analytics",
            resource_uri=resource_uri or resource.id,
            workspace_id=workspace_id,
            log_analytics_destination_type="Dedicated",
            logs=logs,
            metrics=[azure.monitor.DiagnosticsMetricSettingsArgs(category=c, enabled=True)
                     for c in (default_metrics if metrics is None else metrics)],
            opts=self.opts(depends_on=[resource, *(depends_on or [])]),
        )

    def grant(self, suffix: str, scope: pulumi.Input[str], principal_id: pulumi.Input[str], role: str,
              subscription_id: pulumi.Input[str], principal_type: str = "ServicePrincipal",
              ) -> azure.authorization.RoleAssignment:
        """An Azure RBAC role assignment whose name is derived from what it grants (see role_assignment_name)."""
        role_id = role_definition_id(subscription_id, role)
        return azure.authorization.RoleAssignment(
            self.child(suffix),
            role_assignment_name=role_assignment_name(scope, principal_id, role_id),
            scope=scope,
            principal_id=principal_id,
            principal_type=principal_type,
            role_definition_id=role_id,
            opts=self.opts(),
        )

    def propagation_wait(self, suffix: str, roles: list[pulumi.CustomResource]) -> time.Sleep:
        """A wait of ROLE_PROPAGATION after `roles` are created, for the resource that uses them to depend on.

        The pulumiverse `time` provider's Sleep runs at creation and again whenever a trigger changes: each role's
        id is a trigger, so a new or replaced grant is waited for again (and an unchanged one never twice).
        """
        return time.Sleep(
            self.child(suffix),
            create_duration=ROLE_PROPAGATION,
            triggers={f"role{i}": r.id for i, r in enumerate(roles)},
            opts=self.opts(depends_on=roles),
        )

    def private_endpoint(self, what: str, target_id: pulumi.Input[str], group: str,
                          subnet_id: pulumi.Input[str], zone_id: pulumi.Input[str], rg: pulumi.Input[str],
                          region: str, tags: dict[str, str]) -> azure.network.PrivateEndpoint:
        """A private endpoint to `target_id`'s `group`, registered in the private DNS zone `zone_id`."""
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
        return pe


def role_assignment_name(scope: pulumi.Input[str], principal_id: pulumi.Input[str],
                         role_definition: pulumi.Input[str]) -> pulumi.Output[str]:
    """A name-based GUID of (scope, principal, role), as Bicep's `guid(scope, principalId, roleId)`.

    Names must be unique in the whole Entra tenant, even for a narrower scope
    (https://learn.microsoft.com/azure/azure-resource-manager/bicep/scenarios-rbac#name): seeding with the three
    ids keeps a staging stack's assignments apart from prod's, and re-runs never create a duplicate.
    """
    return pulumi.Output.all(scope, principal_id, role_definition).apply(
        lambda parts: str(uuid.uuid5(uuid.NAMESPACE_URL, "/".join(str(p).lower() for p in parts))))


def role_definition_id(subscription_id: pulumi.Input[str], role: str) -> pulumi.Output[str]:
    return pulumi.Output.concat(
        "/subscriptions/", subscription_id, "/providers/Microsoft.Authorization/roleDefinitions/", ROLE_IDS[role]
    )
