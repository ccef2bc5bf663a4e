"""What every stamps policy shares: config with schema defaults, unknown-safe reads, tags and URNs.

Resource policies read properties straight from `args.props`: an unknown value (during preview) raises
`UnknownValueError`, which the runtime turns into an advisory "can't run policy during preview". Stack
policies see the whole stack and must not lose every check to one unknown value, so they read through
`known()` / `safe_tags()` and skip what cannot be decided yet (`pulumi up` runs them again on outputs).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

from pulumi_policy import (
    EnforcementLevel,
    PolicyConfigSchema,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
)
from pulumi_policy.proxy import UnknownValueError

T = TypeVar("T")

MANDATORY = EnforcementLevel.MANDATORY
ADVISORY = EnforcementLevel.ADVISORY

# azure-native type tokens the policies look at.
CONTAINER_APP = "azure-native:app:ContainerApp"
SQL_SERVER = "azure-native:sql:Server"
SQL_DATABASE = "azure-native:sql:Database"
STORAGE_ACCOUNT = "azure-native:storage:StorageAccount"
KEY_VAULT = "azure-native:keyvault:Vault"
DIAGNOSTIC_SETTING = "azure-native:monitor:DiagnosticSetting"
METRIC_ALERT = "azure-native:monitor:MetricAlert"
SCHEDULED_QUERY_RULE = "azure-native:monitor:ScheduledQueryRule"
APIM_SERVICE = "azure-native:apimanagement:ApiManagementService"
TRAFFIC_MANAGER_PROFILE = "azure-native:trafficmanager:Profile"
APP_GATEWAY_TYPE = "azure-native:network:ApplicationGateway"
APIM_PRODUCT_POLICY = "azure-native:apimanagement:ProductPolicy"
CELL_COMPONENT = "stamps:cell:Cell"


class _Unknown:
    """Marks a value that is not known yet (preview); never equal to any real value."""

    def __repr__(self) -> str:
        return "<unknown>"


UNKNOWN: Any = _Unknown()

Check = Callable[[ResourceValidationArgs, dict[str, Any]], Iterable[str]]


def config(args: Any, schema: PolicyConfigSchema | None) -> dict[str, Any]:
    """The policy's config over its schema defaults: the CLI fills defaults in, other callers may not."""
    out = {k: v["default"] for k, v in (schema.properties if schema else {}).items() if "default" in v}
    out.update(dict(args.get_config() or {}))
    return out


def resource_policy(name: str, description: str, types: Iterable[str] | None, check: Check, *,
                    level: EnforcementLevel = MANDATORY,
                    schema: PolicyConfigSchema | None = None) -> ResourceValidationPolicy:
    """A resource policy that runs `check` on the given types; each message it yields is one violation."""
    wanted = frozenset(types) if types is not None else None

    def validate(args: ResourceValidationArgs, report: ReportViolation) -> None:
        if wanted is not None and args.resource_type not in wanted:
            return
        for message in check(args, config(args, schema)):
            report(message, None)

    return ResourceValidationPolicy(name=name, description=description, validate=validate,
                                    enforcement_level=level, config_schema=schema)


def known(read: Callable[[], T]) -> T:
    """`read()`, or UNKNOWN when it touches a value that is unknown during preview."""
    try:
        return read()
    except UnknownValueError:
        return UNKNOWN  # type: ignore[no-any-return]


def lookup(props: Any, *path: str) -> Any:
    """A nested read (`lookup(props, "properties", "enableRbacAuthorization")`); None where a level is missing."""
    cur = props
    for key in path:
        cur = cur.get(key) if isinstance(cur, Mapping) else None
        if cur is None:
            return None
    return cur


def safe_tags(props: Mapping[str, Any]) -> dict[str, str] | None:
    """The known string tags of a resource; None when the whole tag map is unknown."""
    try:
        tags = props.get("tags")
    except UnknownValueError:
        return None
    if not isinstance(tags, Mapping):
        return {}
    out: dict[str, str] = {}
    for key in tags:
        try:
            value = tags[key]
        except UnknownValueError:
            continue
        if isinstance(value, str):
            out[str(key)] = value
    return out


def same(value: Any, *expected: str) -> bool:
    """Azure enum strings compare case-insensitively ("Disabled" == "disabled")."""
    return isinstance(value, str) and value.lower() in {e.lower() for e in expected}


def type_chain(urn: str) -> list[str]:
    """The qualified type of a URN split into its ancestry: [..., parent type, own type]."""
    parts = urn.split("::")
    return parts[2].split("$") if len(parts) > 3 else []


def short_type(type_token: str) -> str:
    return type_token.rsplit(":", 1)[-1]


def spans_fleet(resources: Iterable[Any]) -> bool:
    """Whether a stack holds the fleet (every layer, or several CELL instances): the single-stack layout, or
    the fleet view `stamps plan --fleet --policy` checks. A fleet-wide policy (stamps.stacks.units.
    FLEET_WIDE_POLICIES) needs resources of several unit stacks (a CELL and its standby; Front Door, API
    Management and the gateways); in one unit stack their absence is no finding, so it checks nothing there."""
    listed = list(resources)
    types = {r.resource_type for r in listed}
    if {APIM_SERVICE, TRAFFIC_MANAGER_PROFILE, APP_GATEWAY_TYPE} <= types:
        return True
    # A unit stack holds one CELL instance at most: two or more apps of CELLs are a fleet's view.
    apps = [r for r in listed if r.resource_type == CONTAINER_APP and (safe_tags(r.props) or {}).get("cell")]
    return len(apps) > 1
