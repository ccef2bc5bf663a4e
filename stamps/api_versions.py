"""The Azure REST API version behind every resource type the program deploys, as the project expects it.

pulumi-azure-native's top-level classes follow the provider's default API version, which moves (sometimes to a
preview) when the SDK is upgraded; nothing in the program pins a `vYYYYMMDD` module. This table is the reviewed
expectation; tests/test_api_versions.py compares it with the installed SDK ("Uses Azure REST API version ..." in
each class), so an upgrade that changes a version fails CI until someone reviews the new one and updates the row.
Rows marked preview were reviewed as the SDK's only default for that type (AZURE_REVIEW S3).
"""

from __future__ import annotations

import importlib
import inspect
import re

EXPECTED: dict[str, str] = {
    "azure-native:apimanagement:Api": "2024-05-01",
    "azure-native:apimanagement:ApiManagementService": "2024-05-01",
    "azure-native:apimanagement:ApiOperation": "2024-05-01",
    "azure-native:apimanagement:ApiPolicy": "2024-05-01",
    "azure-native:apimanagement:Backend": "2024-05-01",
    "azure-native:apimanagement:NamedValue": "2024-05-01",
    "azure-native:apimanagement:Policy": "2024-05-01",
    "azure-native:apimanagement:Product": "2024-05-01",
    "azure-native:apimanagement:ProductApi": "2024-05-01",
    "azure-native:apimanagement:ProductApiLink": "2024-05-01",
    "azure-native:apimanagement:ProductPolicy": "2024-05-01",
    "azure-native:apimanagement:Subscription": "2024-05-01",
    "azure-native:apimanagement:User": "2024-05-01",
    "azure-native:app:ContainerApp": "2025-02-02-preview",  # preview
    "azure-native:app:ManagedEnvironment": "2025-02-02-preview",  # preview
    "azure-native:applicationinsights:Component": "2020-02-02",
    "azure-native:authorization:RoleAssignment": "2022-04-01",
    "azure-native:automation:AutomationAccount": "2024-10-23",
    "azure-native:cdn:AFDCustomDomain": "2025-06-01",
    "azure-native:cdn:AFDEndpoint": "2025-06-01",
    "azure-native:cdn:AFDOrigin": "2025-06-01",
    "azure-native:cdn:AFDOriginGroup": "2025-06-01",
    "azure-native:cdn:Profile": "2025-06-01",
    "azure-native:cdn:Route": "2025-06-01",
    "azure-native:cosmosdb:DatabaseAccount": "2025-10-15",
    "azure-native:cosmosdb:SqlResourceSqlContainer": "2025-10-15",
    "azure-native:cosmosdb:SqlResourceSqlDatabase": "2025-10-15",
    "azure-native:cosmosdb:SqlResourceSqlRoleAssignment": "2025-10-15",
    "azure-native:keyvault:Secret": "2024-11-01",
    "azure-native:keyvault:Vault": "2024-11-01",
    "azure-native:managedidentity:UserAssignedIdentity": "2023-01-31",
    "azure-native:monitor:ActionGroup": "2024-10-01-preview",  # preview
    "azure-native:monitor:DiagnosticSetting": "2021-05-01-preview",  # preview
    "azure-native:monitor:MetricAlert": "2018-03-01",
    "azure-native:monitor:ScheduledQueryRule": "2025-01-01-preview",  # preview
    "azure-native:network:ApplicationGateway": "2024-05-01",
    "azure-native:network:PrivateDnsZoneGroup": "2024-05-01",
    "azure-native:network:PrivateEndpoint": "2024-05-01",
    "azure-native:network:PublicIPAddress": "2024-05-01",
    "azure-native:network:VirtualNetwork": "2024-05-01",
    "azure-native:network:WebApplicationFirewallPolicy": "2024-05-01",
    "azure-native:operationalinsights:Workspace": "2023-09-01",
    "azure-native:portal:Dashboard": "2022-12-01-preview",  # preview
    "azure-native:privatedns:PrivateRecordSet": "2024-06-01",
    "azure-native:privatedns:PrivateZone": "2024-06-01",
    "azure-native:privatedns:VirtualNetworkLink": "2024-06-01",
    "azure-native:resources:ResourceGroup": "2024-03-01",
    "azure-native:sql:Database": "2023-08-01",
    "azure-native:sql:ExtendedServerBlobAuditingPolicy": "2023-08-01",
    "azure-native:sql:Server": "2023-08-01",
    "azure-native:sql:ServerSecurityAlertPolicy": "2023-08-01",
    "azure-native:storage:BlobServiceProperties": "2024-01-01",
    "azure-native:storage:StorageAccount": "2024-01-01",
    "azure-native:trafficmanager:Profile": "2022-04-01",
}

_VERSION = re.compile(r"Uses Azure REST API version (\d{4}-\d{2}-\d{2}(?:-preview)?)")


def sdk_api_version(type_token: str) -> str | None:
    """The API version the installed pulumi-azure-native uses for a type, read from the class's module."""
    _, module, cls = type_token.split(":")
    klass = getattr(importlib.import_module(f"pulumi_azure_native.{module}"), cls)
    module_source = inspect.getsource(importlib.import_module(klass.__module__))
    match = _VERSION.search(inspect.getdoc(klass) or "") or _VERSION.search(module_source)
    return match.group(1) if match else None
