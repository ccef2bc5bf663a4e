"""Mock provider responses shaped like Azure's: ARM resource ids, FQDNs, principal ids.

Each type's ARM id template lives in one table; computed outputs that other resources read (FQDNs,
static IPs, principal ids, subnet ids) are filled in so every input built from them stays visible in
the plan, as it would after a real deployment.
"""

from __future__ import annotations

import hashlib
import uuid
from typing import Any

import pulumi

from stamps.errors import UsageError

SUBSCRIPTION_ID = "00000000-0000-4000-8000-00000000c0de"
TENANT_ID = "00000000-0000-4000-8000-0000000a11ce"
DEPLOYER_OBJECT_ID = "00000000-0000-4000-8000-00000000d3e7"

_P = "/subscriptions/{sub}/resourceGroups/{resourceGroupName}/providers/"
_COSMOS_DB = _P + "Microsoft.DocumentDB/databaseAccounts/{accountName}/sqlDatabases/{databaseName}"
_AFD = _P + "Microsoft.Cdn/profiles/{profileName}"
ARM_IDS: dict[str, str] = {
    "azure-native:resources:ResourceGroup": "/subscriptions/{sub}/resourceGroups/{resourceGroupName}",
    "azure-native:operationalinsights:Workspace": _P + "Microsoft.OperationalInsights/workspaces/{workspaceName}",
    "azure-native:applicationinsights:Component": _P + "Microsoft.Insights/components/{resourceName}",
    "azure-native:applicationinsights:Workbook": _P + "Microsoft.Insights/workbooks/{resourceName}",
    "azure-native:cosmosdb:DatabaseAccount": _P + "Microsoft.DocumentDB/databaseAccounts/{accountName}",
    "azure-native:cosmosdb:SqlResourceSqlDatabase": _COSMOS_DB,
    "azure-native:cosmosdb:SqlResourceSqlContainer":
        _COSMOS_DB + "/containers/{containerName}",
    "azure-native:apimanagement:ApiManagementService": _P + "Microsoft.ApiManagement/service/{serviceName}",
    "azure-native:apimanagement:Product": _P + "Microsoft.ApiManagement/service/{serviceName}/products/{productId}",
    "azure-native:apimanagement:ProductPolicy":
        _P + "Microsoft.ApiManagement/service/{serviceName}/products/{productId}/policies/{policyId}",
    "azure-native:apimanagement:ProductApiLink":
        _P + "Microsoft.ApiManagement/service/{serviceName}/products/{productId}/apiLinks/{apiLinkId}",
    "azure-native:apimanagement:ProductApi":
        _P + "Microsoft.ApiManagement/service/{serviceName}/products/{productId}/apis/{apiId}",
    "azure-native:apimanagement:User": _P + "Microsoft.ApiManagement/service/{serviceName}/users/{userId}",
    "azure-native:apimanagement:Subscription": _P + "Microsoft.ApiManagement/service/{serviceName}/subscriptions/{sid}",
    "azure-native:apimanagement:NamedValue":
        _P + "Microsoft.ApiManagement/service/{serviceName}/namedValues/{namedValueId}",
    "azure-native:apimanagement:Backend": _P + "Microsoft.ApiManagement/service/{serviceName}/backends/{backendId}",
    "azure-native:apimanagement:Api": _P + "Microsoft.ApiManagement/service/{serviceName}/apis/{apiId}",
    "azure-native:apimanagement:ApiOperation":
        _P + "Microsoft.ApiManagement/service/{serviceName}/apis/{apiId}/operations/{operationId}",
    "azure-native:apimanagement:ApiPolicy":
        _P + "Microsoft.ApiManagement/service/{serviceName}/apis/{apiId}/policies/{policyId}",
    "azure-native:apimanagement:Policy": _P + "Microsoft.ApiManagement/service/{serviceName}/policies/{policyId}",
    "azure-native:network:VirtualNetwork": _P + "Microsoft.Network/virtualNetworks/{virtualNetworkName}",
    "azure-native:network:PublicIPAddress": _P + "Microsoft.Network/publicIPAddresses/{publicIpAddressName}",
    "azure-native:network:ApplicationGateway": _P + "Microsoft.Network/applicationGateways/{applicationGatewayName}",
    "azure-native:network:WebApplicationFirewallPolicy":
        _P + "Microsoft.Network/ApplicationGatewayWebApplicationFirewallPolicies/{policyName}",
    "azure-native:network:PrivateEndpoint": _P + "Microsoft.Network/privateEndpoints/{privateEndpointName}",
    "azure-native:network:PrivateDnsZoneGroup":
        _P + "Microsoft.Network/privateEndpoints/{privateEndpointName}/privateDnsZoneGroups/{privateDnsZoneGroupName}",
    "azure-native:privatedns:PrivateZone": _P + "Microsoft.Network/privateDnsZones/{privateZoneName}",
    "azure-native:privatedns:VirtualNetworkLink":
        _P + "Microsoft.Network/privateDnsZones/{privateZoneName}/virtualNetworkLinks/{virtualNetworkLinkName}",
    "azure-native:keyvault:Vault": _P + "Microsoft.KeyVault/vaults/{vaultName}",
    "azure-native:automation:AutomationAccount": _P + "Microsoft.Automation/automationAccounts/{automationAccountName}",
    "azure-native:managedidentity:UserAssignedIdentity":
        _P + "Microsoft.ManagedIdentity/userAssignedIdentities/{resourceName}",
    "azure-native:authorization:RoleAssignment":
        "{scope}/providers/Microsoft.Authorization/roleAssignments/{roleAssignmentName}",
    "azure-native:app:ManagedEnvironment": _P + "Microsoft.App/managedEnvironments/{environmentName}",
    "azure-native:app:ContainerApp": _P + "Microsoft.App/containerApps/{containerAppName}",
    "azure-native:sql:Server": _P + "Microsoft.Sql/servers/{serverName}",
    "azure-native:sql:Database": _P + "Microsoft.Sql/servers/{serverName}/databases/{databaseName}",
    "azure-native:storage:StorageAccount": _P + "Microsoft.Storage/storageAccounts/{accountName}",
    "azure-native:cdn:Profile": _P + "Microsoft.Cdn/profiles/{profileName}",
    "azure-native:cdn:AFDEndpoint": _P + "Microsoft.Cdn/profiles/{profileName}/afdEndpoints/{endpointName}",
    "azure-native:cdn:AFDOriginGroup": _P + "Microsoft.Cdn/profiles/{profileName}/originGroups/{originGroupName}",
    "azure-native:cdn:AFDCustomDomain": _P + "Microsoft.Cdn/profiles/{profileName}/customDomains/{customDomainName}",
    "azure-native:privatedns:PrivateRecordSet":
        _P + "Microsoft.Network/privateDnsZones/{privateZoneName}/{recordType}/{relativeRecordSetName}",
    "azure-native:cdn:AFDOrigin":
        _P + "Microsoft.Cdn/profiles/{profileName}/originGroups/{originGroupName}/origins/{originName}",
    "azure-native:cdn:Route": _AFD + "/afdEndpoints/{endpointName}/routes/{routeName}",
    "azure-native:trafficmanager:Profile": _P + "Microsoft.Network/trafficManagerProfiles/{profileName}",
    "azure-native:monitor:DiagnosticSetting": "{resourceUri}/providers/Microsoft.Insights/diagnosticSettings/{name}",
    "azure-native:monitor:MetricAlert": _P + "Microsoft.Insights/metricAlerts/{ruleName}",
    "azure-native:monitor:ActionGroup": _P + "Microsoft.Insights/actionGroups/{actionGroupName}",
    "azure-native:monitor:ScheduledQueryRule": _P + "Microsoft.Insights/scheduledQueryRules/{ruleName}",
    "azure-native:portal:Dashboard": _P + "Microsoft.Portal/dashboards/{dashboardName}",
    "azure-native:cosmosdb:SqlResourceSqlRoleAssignment":
        _P + "Microsoft.DocumentDB/databaseAccounts/{accountName}/sqlRoleAssignments/{roleAssignmentId}",
    "azure-native:sql:ExtendedServerBlobAuditingPolicy":
        _P + "Microsoft.Sql/servers/{serverName}/extendedAuditingSettings/{blobAuditingPolicyName}",
    "azure-native:sql:ServerSecurityAlertPolicy":
        _P + "Microsoft.Sql/servers/{serverName}/securityAlertPolicies/{securityAlertPolicyName}",
    "azure-native:storage:BlobServiceProperties":
        _P + "Microsoft.Storage/storageAccounts/{accountName}/blobServices/{blobServicesName}",
    "azure-native:keyvault:Secret": _P + "Microsoft.KeyVault/vaults/{vaultName}/secrets/{secretName}",
}


# The wire encoding of a secret value (pulumi/runtime/rpc.py): the SDK deserializes it as a secret Output.
_SIG_KEY, _SECRET_SIG = "4dabf18193072939515e22adb298388d", "1b47061264138c4ac30d75fd1eb44270"


def _uuid(*parts: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, "stamps-mock/" + "/".join(parts)))


def _short(*parts: str) -> str:
    return hashlib.sha256("/".join(parts).encode()).hexdigest()[:10]


STACK_REFERENCE = "pulumi:pulumi:StackReference"


class StackReferenceError(UsageError):
    """A unit stack references a stack that was not planned before it."""


class AzureMocks(pulumi.runtime.Mocks):
    """Returns inputs plus Azure-shaped computed outputs; remembers state by id for cross-references."""

    def __init__(self, stack_outputs: dict[str, dict[str, Any]] | None = None) -> None:
        self.by_id: dict[str, dict[str, Any]] = {}
        self.unmapped: set[str] = set()
        # Outputs of the stacks planned before this one (bare stack name → outputs): what a StackReference
        # reads when a fleet's stacks are planned in dependency order.
        self.stack_outputs = stack_outputs if stack_outputs is not None else {}

    def arm_id(self, typ: str, name: str, inputs: dict[str, Any]) -> str:
        template = ARM_IDS.get(typ)
        if template is None:
            self.unmapped.add(typ)
            return f"/subscriptions/{SUBSCRIPTION_ID}/providers/{typ}/{name}"
        fields = {"sub": SUBSCRIPTION_ID, **{k: v for k, v in inputs.items() if isinstance(v, str)}}
        try:
            return template.format(**fields)
        except KeyError:
            # An auto-named resource: Azure would add a random suffix; the logical name stands in.
            missing = {k: name for k in _placeholders(template) if k not in fields}
            return template.format(**fields, **missing)

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str | None, dict[str, Any]]:
        if args.typ == STACK_REFERENCE:
            return self._stack_reference(str(args.inputs.get("name", "")))
        if not args.custom:
            return "", dict(args.inputs)
        rid = self.arm_id(args.typ, args.name, args.inputs)
        state = {**args.inputs, "id": rid, "type": args.typ}
        state.setdefault("name", rid.rsplit("/", 1)[-1])
        identity = state.get("identity")
        if isinstance(identity, dict) and isinstance(identity.get("userAssignedIdentities"), list):
            # Inputs list the identity ids; ARM answers with a map of id → principal.
            state["identity"] = {**identity, "userAssignedIdentities": {
                i: {"principalId": _uuid(i, "principal"), "clientId": _uuid(i, "client")}
                for i in identity["userAssignedIdentities"]}}
        state.update(self._computed(args.typ, rid, state))
        self.by_id[rid] = state
        return rid, state

    def _stack_reference(self, name: str) -> tuple[str, dict[str, Any]]:
        """A StackReference reads the referenced stack's outputs, as the engine does after that stack's `up`."""
        from stamps.offline.plan import SECRET

        bare = name.rsplit("/", 1)[-1]
        if bare not in self.stack_outputs:
            # The engine fails the same way when the referenced stack does not exist (yet).
            raise StackReferenceError(f"stack reference {name!r}: stack {bare!r} has not been planned (deployed) "
                                      "before it; plan the fleet's stacks in order (`stamps plan --stack <fleet>."
                                      "<unit>` plans its upstream stacks first)")
        outputs = self.stack_outputs[bare]
        return name, {"name": name, "outputs": outputs,
                      "secretOutputNames": sorted(k for k, v in outputs.items() if v == SECRET)}

    def call(self, args: pulumi.runtime.MockCallArgs) -> dict[str, Any]:  # type: ignore[override]
        # A plain dict means "no check failures" to the mock monitor.
        if args.token == "azure-native:authorization:getClientConfig":
            return {"subscriptionId": SUBSCRIPTION_ID, "tenantId": TENANT_ID, "objectId": DEPLOYER_OBJECT_ID,
                    "clientId": _uuid("deployer-client")}
        return {}

    def _computed(self, typ: str, rid: str, s: dict[str, Any]) -> dict[str, Any]:
        name = s["name"]
        location = s.get("location", "eastus")
        principal = {"principalId": _uuid(rid, "principal"), "tenantId": TENANT_ID, "type": "SystemAssigned"}
        if typ == "azure-native:operationalinsights:Workspace":
            return {"customerId": _uuid(rid, "customer")}
        if typ == "azure-native:applicationinsights:Component":
            return {"appId": _uuid(rid, "app"), "connectionString":
                    f"InstrumentationKey={_uuid(rid, 'ikey')};IngestionEndpoint=https://{location}.in.applicationinsights.azure.com/"}
        if typ == "azure-native:app:ManagedEnvironment":
            return {"staticIp": f"10.{int(_short(rid)[:2], 16) % 200}.{int(_short(rid)[2:4], 16)}.10",
                    "defaultDomain": f"{_short(rid)[:8]}.{location}.azurecontainerapps.io"}
        if typ == "azure-native:app:ContainerApp":
            env = self.by_id.get(s.get("managedEnvironmentId", ""), {})
            fqdn = f"{name}.{env.get('defaultDomain', location + '.azurecontainerapps.io')}"
            config = dict(s.get("configuration") or {})
            config["ingress"] = {**(config.get("ingress") or {}), "fqdn": fqdn}
            return {"configuration": config, "latestRevisionFqdn": fqdn, "identity": principal,
                    "latestRevisionName": f"{name}--{(s.get('template') or {}).get('revisionSuffix', 'initial')}"}
        if typ == "azure-native:sql:Server":
            return {"fullyQualifiedDomainName": f"{name}.database.windows.net", "identity": principal}
        if typ == "azure-native:storage:StorageAccount":
            return {"primaryEndpoints": {"blob": f"https://{name}.blob.core.windows.net/"}}
        if typ == "azure-native:cosmosdb:DatabaseAccount":
            return {"documentEndpoint": f"https://{name}.documents.azure.com:443/"}
        if typ == "azure-native:apimanagement:Subscription":
            # ARM generates the keys; they are secrets (the provider schema does not mark them, so the
            # program adds additionalSecretOutputs and the mock answers with secret values too).
            return {k: {_SIG_KEY: _SECRET_SIG, "value": f"mock-{k}-{_short(rid, k)}"}
                    for k in ("primaryKey", "secondaryKey")}
        if typ == "azure-native:apimanagement:ApiManagementService":
            # Regional gateway hosts follow Azure's rule `<service>-<region>-01.regional.azure-api.net`.
            def ip(where: str) -> str:
                return f"52.{int(_short(rid, where)[:2], 16)}.{int(_short(rid, where)[2:4], 16)}.7"
            extra = [{**loc, "gatewayRegionalUrl": f"https://{name}-{loc.get('location')}-01.regional.azure-api.net",
                      "publicIPAddresses": [ip(str(loc.get("location")))]}
                     for loc in s.get("additionalLocations") or []]
            return {"gatewayUrl": f"https://{name}.azure-api.net", "identity": principal,
                    "gatewayRegionalUrl": f"https://{name}-{location}-01.regional.azure-api.net",
                    "publicIPAddresses": [ip(location)], "additionalLocations": extra}
        if typ == "azure-native:cdn:Profile":
            return {"frontDoorId": _uuid(rid, "front-door-id")}
        if typ == "azure-native:cdn:AFDCustomDomain":
            return {"validationProperties": {"validationToken": _short(rid, "token"), "expirationDate": ""}}
        if typ == "azure-native:network:PublicIPAddress":
            label = (s.get("dnsSettings") or {}).get("domainNameLabel", name)
            return {"ipAddress": f"20.{int(_short(rid)[:2], 16)}.{int(_short(rid)[2:4], 16)}.4",
                    "dnsSettings": {**(s.get("dnsSettings") or {}),
                                    "fqdn": f"{label}.{location}.cloudapp.azure.com"}}
        if typ == "azure-native:network:VirtualNetwork":
            return {"subnets": [{**sn, "id": f"{rid}/subnets/{sn.get('name')}"} for sn in s.get("subnets") or []]}
        if typ == "azure-native:keyvault:Vault":
            return {"properties": {**(s.get("properties") or {}), "vaultUri": f"https://{name}.vault.azure.net/"}}
        if typ == "azure-native:trafficmanager:Profile":
            dns = s.get("dnsConfig") or {}
            return {"dnsConfig": {**dns, "fqdn": f"{dns.get('relativeName', name)}.trafficmanager.net"}}
        if typ == "azure-native:cdn:AFDEndpoint":
            return {"hostName": f"{name}-{_short(rid)[:8]}.z01.azurefd.net"}
        if typ == "azure-native:managedidentity:UserAssignedIdentity":
            return {"principalId": _uuid(rid, "principal"), "clientId": _uuid(rid, "client"), "tenantId": TENANT_ID}
        if typ == "azure-native:automation:AutomationAccount":
            return {"identity": principal}
        return {}


def _placeholders(template: str) -> list[str]:
    import string

    return [f for _, f, _, _ in string.Formatter().parse(template) if f]
