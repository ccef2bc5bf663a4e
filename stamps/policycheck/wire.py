"""Plan resources as the engine sends them to an analyzer.

The engine marshals properties with unknowns and secrets kept (`MarshalProperties(KeepUnknowns,
KeepSecrets)`): an unknown becomes the unknown-string sentinel, a secret becomes a signature object
wrapping its value. The plan redacted secret values, so the wrapped value is the "[secret]" placeholder:
policies see a secret they cannot read, as they would a real one they should not. Resource references
are already URNs in the plan, which is what the engine sends when resources are not kept as references.
"""

from __future__ import annotations

from typing import Any

from google.protobuf import struct_pb2
from pulumi.runtime.proto import analyzer_pb2
from pulumi.runtime.rpc import UNKNOWN as UNKNOWN_SENTINEL
from pulumi.runtime.rpc import _special_secret_sig as SECRET_SIG
from pulumi.runtime.rpc import _special_sig_key as SIG_KEY

from stamps.offline.plan import SECRET, UNKNOWN, Plan


def to_wire(value: Any) -> Any:
    """A plan value in the engine's wire form: "[unknown]" → unknown sentinel, "[secret]" → secret object."""
    if value == UNKNOWN:
        return UNKNOWN_SENTINEL
    if value == SECRET:
        return {SIG_KEY: SECRET_SIG, "value": SECRET}
    if isinstance(value, dict):
        return {str(k): to_wire(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_wire(v) for v in value]
    return value


def struct(values: dict[str, Any]) -> struct_pb2.Struct:
    out = struct_pb2.Struct()
    out.update(to_wire(values))
    return out


def stack_urn(plan: Plan) -> str:
    return f"urn:pulumi:{plan.stack}::{plan.project}::pulumi:pulumi:Stack::{plan.project}-{plan.stack}"


def stack_resource(plan: Plan) -> dict[str, Any]:
    """The root Stack resource: the engine analyzes it like any other; the plan file leaves it out."""
    return {"urn": stack_urn(plan), "type": "pulumi:pulumi:Stack", "name": f"{plan.project}-{plan.stack}",
            "parent": None, "custom": False, "inputs": {}, "dependencies": []}


def _options(resource: dict[str, Any]) -> analyzer_pb2.AnalyzerResourceOptions:
    return analyzer_pb2.AnalyzerResourceOptions(
        parent=resource.get("parent") or "",
        protect=bool(resource.get("protect", False)),
        customTimeouts=analyzer_pb2.AnalyzerResourceOptions.CustomTimeouts(),
    )


def analyze_request(resource: dict[str, Any]) -> analyzer_pb2.AnalyzeRequest:
    """Analyze(): one resource's inputs, as the engine sends each registration before its step runs."""
    return analyzer_pb2.AnalyzeRequest(
        urn=resource["urn"], type=resource["type"], name=resource["name"],
        properties=struct(resource.get("inputs") or {}), options=_options(resource),
    )


def stack_resource_message(resource: dict[str, Any]) -> analyzer_pb2.AnalyzerResource:
    """AnalyzeStack(): a resource with its parent, dependencies and (when recorded) property dependencies.

    The engine sends outputs here; offline the inputs stand in for them (the mocks echo inputs as outputs).
    """
    prop_deps = {
        key: analyzer_pb2.AnalyzerPropertyDependencies(urns=list(urns))
        for key, urns in (resource.get("propertyDependencies") or {}).items() if urns
    }
    return analyzer_pb2.AnalyzerResource(
        urn=resource["urn"], type=resource["type"], name=resource["name"],
        properties=struct(resource.get("inputs") or {}), options=_options(resource),
        parent=resource.get("parent") or "", dependencies=list(resource.get("dependencies") or []),
        propertyDependencies=prop_deps,
    )
