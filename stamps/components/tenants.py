"""Per-tenant API access through API Management: tier products, one tenant API, routing as data.

Runbook: "Flexible Tenant Management Operations" and "Tenant Onboarding Automation". The runbook's
per-subscription policy cannot exist (APIM has policy scopes global/product/API/operation only), so:
- shared, once per environment: the `tenant-api` API (path `tenant`, HTTPS, subscription required) with
  wildcard operations, its policy (tenant from subscription, `X-Tenant-ID` override, freeze, CELL routing),
  the routing named value(s), and per tier a product, its limits policy and its link to the API;
- per tenant exactly two resources: an APIM user and a subscription `tenant-<id>` to its tier's product.
Subscription keys are secrets and are never exported; ops reads one at run time through the ARM
`listSecrets` action of `.../service/<apimServiceName>/subscriptions/tenant-<id>` (in Python:
`pulumi_azure_native.apimanagement.list_subscription_secrets`), using the exported names.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pulumi
import pulumi_azure_native as azure

from stamps import apim_policy as policy
from stamps.components.base import StampsComponent
from stamps.config.model import TenantConfig
from stamps.environment import Environment
from stamps.stacks.contracts import ApiOutputs, pick

API_ID, API_PATH = "tenant-api", "tenant"
# Wildcard operations: without an operation APIM answers 404 before any policy runs. HEAD/OPTIONS are
# left out on purpose; the tenant API is CRUD over HTTPS.
OPERATION_METHODS: tuple[str, ...] = ("GET", "POST", "PUT", "PATCH", "DELETE")


def routes(env: Environment) -> list[policy.Route]:
    return [policy.Route(t.id, env.tenant_cells[t.id], t.frozen) for t in env.config.tenants]


class TenantAccess(StampsComponent):
    """API Management products, the tenant API and one user + subscription per tenant."""

    def __init__(self, name: str, env: Environment, resource_group_name: pulumi.Input[str],
                 service_name: pulumi.Input[str], opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("stamps:tenants:TenantAccess", name, opts)
        self.env = env
        # Splatted into every resource below: Any, as each resource types its other arguments apart.
        self.common: dict[str, Any] = {"resource_group_name": resource_group_name, "service_name": service_name}
        self.tenant_index: dict[str, dict[str, object]] = {}
        self.subscriptions: dict[str, azure.apimanagement.Subscription] = {}
        self.routing_names: list[str] = []
        self._outputs: dict[str, object] = {}

    def done(self) -> None:
        self.register_outputs({**self._outputs, "tenants": self.tenant_index})

    def api(self, front_door_id: pulumi.Input[str]) -> ApiOutputs:
        """The api stack: what every tenant shares (routing map, CELL backends, the API, tier products)."""
        env, common = self.env, self.common
        am = azure.apimanagement

        # --- Routing map: data, so moving or freezing a tenant changes one named value -------------------
        values = policy.routing_values(routes(env))
        names = policy.routing_value_names(len(values))
        self.routing_values = [
            am.NamedValue(
                self.child(nv),
                named_value_id=nv,
                display_name=nv,
                value=value,
                secret=False,  # tenant and CELL names only; readable in the portal during incidents
                tags=["stamps", "tenant-routing"],
                opts=self.opts(),
                **common,
            )
            for nv, value in zip(names, values, strict=True)
        ]

        # Only requests our Front Door forwards carry its id; the API policy checks it.
        front_door_value = am.NamedValue(
            self.child("front-door-id"),
            named_value_id=policy.FRONT_DOOR_ID_NAMED_VALUE,
            display_name=policy.FRONT_DOOR_ID_NAMED_VALUE,
            value=front_door_id,
            secret=False,
            tags=["stamps", "edge"],
            opts=self.opts(),
            **common,
        )

        # --- One backend per CELL: its primary region's cells host (Traffic Manager picks the instance) -----
        self.backends = [
            am.Backend(
                self.child(f"backend-{cell.name}"),
                backend_id=policy.backend_id(cell.name),
                title=f"CELL {cell.name}",
                description=f"{cell.model} CELL {cell.name}, primary {cell.region}",
                url=policy.cell_url(env.cell_host(cell.region), cell.name),
                protocol=am.BackendProtocol.HTTP,
                tls=am.BackendTlsPropertiesArgs(validate_certificate_chain=True, validate_certificate_name=True),
                # A CELL answering 5xx repeatedly is given a pause instead of more load; Retry-After honoured.
                circuit_breaker=am.BackendCircuitBreakerArgs(rules=[am.CircuitBreakerRuleArgs(
                    name="cell-failing",
                    failure_condition=am.CircuitBreakerFailureConditionArgs(
                        count=10, interval="PT1M",
                        status_code_ranges=[am.FailureStatusCodeRangeArgs(min=500, max=599)]),
                    trip_duration="PT30S", accept_retry_after=True,
                )]),
                opts=self.opts(),
                **common,
            )
            for cell in env.cells
        ]

        # --- The tenant API ------------------------------------------------------------------------------
        self.api_resource = am.Api(
            self.child("api"),
            api_id=API_ID,
            display_name="Tenant API",
            description="Every tenant's entry point; the policy routes each subscription to its tenant's CELL.",
            path=API_PATH,
            protocols=[am.Protocol.HTTPS],
            api_type=am.ApiType.HTTP,
            subscription_required=True,
            subscription_key_parameter_names=am.SubscriptionKeyParameterNamesContractArgs(
                header="Ocp-Apim-Subscription-Key", query="subscription-key"
            ),
            opts=self.opts(),
            **common,
        )
        for method in OPERATION_METHODS:
            am.ApiOperation(
                self.child(f"op-{method.lower()}"),
                api_id=self.api_resource.name,
                operation_id=f"{method.lower()}-all",
                display_name=f"{method} /*",
                method=method,
                url_template="/*",
                opts=self.opts(),
                **common,
            )
        self.api_policy = am.ApiPolicy(
            self.child("api-policy"),
            api_id=self.api_resource.name,
            policy_id="policy",
            format=am.PolicyContentFormat.XML,
            value=policy.api_policy(names),
            # APIM rejects a policy that references a named value or backend that does not exist yet.
            opts=self.opts(depends_on=[*self.routing_values, front_door_value, *self.backends]),
            **common,
        )

        # --- One product per tier, with its per-subscription limits --------------------------------------
        self.products: dict[str, am.Product] = {}
        for tier in env.config.tiers:
            pid = policy.product_id(tier.name)
            product = am.Product(
                self.child(f"product-{tier.name}"),
                product_id=pid,
                display_name=f"{tier.name} ({tier.model} CELL)",
                description=f"{tier.calls_per_hour} calls/hour and {tier.calls_per_day} calls/day per subscription.",
                subscription_required=True,
                # Subscriptions are provisioned by this program, never requested through the portal.
                approval_required=False,
                state=am.ProductState.PUBLISHED,
                opts=self.opts(),
                **common,
            )
            am.ProductPolicy(
                self.child(f"product-{tier.name}-policy"),
                product_id=product.name,
                policy_id="policy",
                format=am.PolicyContentFormat.XML,
                value=policy.product_policy(tier.calls_per_hour, tier.calls_per_day),
                opts=self.opts(),
                **common,
            )
            am.ProductApi(
                self.child(f"product-{tier.name}-api"),
                product_id=product.name,
                api_id=self.api_resource.name,
                opts=self.opts(),
                **common,
            )
            self.products[tier.name] = product

        self.routing_names = names
        self._outputs = {"apiId": self.api_resource.id, "routingNamedValues": names}
        return ApiOutputs(
            api_id=self.api_resource.id,
            product_ids={t: p.id for t, p in self.products.items()},
            routing_named_values=pulumi.Output.from_input(names),
        )

    def tenants(self, tenants: list[TenantConfig], product_ids: pulumi.Input[Mapping[str, str]]) -> None:
        """A tenants stack (one per CELL): exactly two resources per tenant, a user and its subscription."""
        env, common = self.env, self.common
        am = azure.apimanagement
        for t in tenants:
            user = am.User(
                self.child(f"user-{t.id}"),
                user_id=policy.user_id(t.id),
                email=t.email,
                first_name="Tenant",
                last_name=t.id,
                note=f"stamps tenant {t.id}",
                state=am.UserState.ACTIVE,
                notify=False,
                opts=self.opts(),
                **common,
            )
            self.subscriptions[t.id] = am.Subscription(
                self.child(f"sub-{t.id}"),
                sid=policy.subscription_id(t.id),
                display_name=f"{t.id} - {t.tier} tier",
                scope=pick(product_ids, t.tier),
                owner_id=user.id,
                state=am.SubscriptionState.ACTIVE,
                allow_tracing=False,  # tracing would expose policy internals to the tenant
                # The provider does not mark the generated keys secret; without this they sit in plain
                # text in the stack state.
                opts=self.opts(additional_secret_outputs=["primaryKey", "secondaryKey"]),
                **common,
            )
            self.tenant_index[t.id] = {
                "subscriptionId": policy.subscription_id(t.id),
                "userId": policy.user_id(t.id),
                "productId": policy.product_id(t.tier),
                "cell": env.tenant_cells[t.id],
                "frozen": t.frozen,
            }
