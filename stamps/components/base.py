"""What every stamps component shares: child options and diagnostic settings.

Diagnostic settings are declared next to the resource they watch, so no resource can be added without
its logs and metrics reaching the workspace; the table below is the one place that knows which
categories each Azure resource type publishes.
"""

from __future__ import annotations

import uuid

import pulumi
import pulumi_azure_native as azure

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
    # Built-in role definition ids (stable across tenants).
    "Storage Blob Data Contributor": "ba92f5b4-2d11-453d-a403-e96b0029c9fe",
    "Key Vault Secrets User": "4633458b-17de-408a-b874-0445c86b69e6",
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
                 resource_uri: pulumi.Input[str] | None = None, name: str | None = None) -> None:
        """Send the resource's logs and metrics to the Log Analytics workspace."""
        logs, metrics = DIAGNOSTICS[resource.pulumi_type]  # type: ignore[attr-defined]
        child_name = name or f"{resource._name}-diag"  # type: ignore[attr-defined]
        azure.monitor.DiagnosticSetting(
            child_name,
            name="to-log-analytics",
            resource_uri=resource_uri or resource.id,
            workspace_id=workspace_id,
            log_analytics_destination_type="Dedicated",
            logs=[azure.monitor.DiagnosticsLogSettingsArgs(category_group="allLogs", enabled=True)] if logs else [],
            metrics=[azure.monitor.DiagnosticsMetricSettingsArgs(category=c, enabled=True) for c in metrics],
            opts=self.opts(depends_on=[resource]),
        )


def role_assignment_name(*parts: str) -> str:
    """Role assignment names are GUIDs; derive them so re-runs never create duplicates."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, "stamps/" + "/".join(parts)))


def role_definition_id(subscription_id: pulumi.Input[str], role: str) -> pulumi.Output[str]:
    return pulumi.Output.concat(
        "/subscriptions/", subscription_id, "/providers/Microsoft.Authorization/roleDefinitions/", ROLE_IDS[role]
    )
