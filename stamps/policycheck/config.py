"""Policy pack config, handled as the Pulumi CLI does for `--policy-pack-config`.

The file maps policy names (or `all`) to an enforcement level string or an object of properties with an
optional `enforcementLevel`. The effective config is the pack's defaults (each policy's level and its
schema's `default`s), then the pack's initial config, then the file; each policy's result is validated
against its schema (`ReconcilePolicyPackConfig` in pulumi/pkg/resource/analyzer/config.go).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from google.protobuf import json_format
from pulumi.runtime.proto import analyzer_pb2

from stamps.cli import UsageError

LEVELS: dict[str, int] = {
    "advisory": analyzer_pb2.ADVISORY,
    "mandatory": analyzer_pb2.MANDATORY,
    "remediate": analyzer_pb2.REMEDIATE,
    "disabled": analyzer_pb2.DISABLED,
}
LEVEL_NAMES: dict[int, str] = {v: k for k, v in LEVELS.items()}


class PolicyConfigError(UsageError):
    """The policy config file is unreadable or does not fit the pack's schemas."""


@dataclass
class PolicyConfig:
    level: str | None = None
    properties: dict[str, Any] = field(default_factory=dict)


def _level(value: Any, where: str) -> str:
    if not isinstance(value, str) or value not in LEVELS:
        raise PolicyConfigError(f"{where}: {value!r} is not an enforcement level ({', '.join(LEVELS)})")
    return value


def parse(data: Any, source: str = "policy config") -> dict[str, PolicyConfig]:
    """`{"policy": "advisory" | {"enforcementLevel": ..., "prop": ...}}` → config per policy name."""
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise PolicyConfigError(f"{source}: expected an object of policy names, got {type(data).__name__}")
    out: dict[str, PolicyConfig] = {}
    for name, value in data.items():
        if isinstance(value, str):
            out[name] = PolicyConfig(level=_level(value, f"{source}: {name}"))
        elif isinstance(value, dict):
            props = dict(value)
            level = props.pop("enforcementLevel", None)
            out[name] = PolicyConfig(level=_level(level, f"{source}: {name}.enforcementLevel")
                                     if level is not None else None, properties=props)
        else:
            raise PolicyConfigError(f"{source}: {name}: must be an enforcement level or an object")
    return out


def load(path: Path) -> dict[str, PolicyConfig]:
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise PolicyConfigError(f"--config: cannot read {path} ({exc.strerror})") from None
    if not text.strip():
        return {}
    try:
        return parse(json.loads(text), str(path))
    except json.JSONDecodeError as exc:
        raise PolicyConfigError(f"{path}: not JSON ({exc})") from None


def _schema_properties(policy: analyzer_pb2.PolicyInfo) -> dict[str, Any]:
    return json_format.MessageToDict(policy.configSchema.properties) if policy.HasField("configSchema") else {}


def reconcile(info: analyzer_pb2.AnalyzerInfo, given: dict[str, PolicyConfig]) -> dict[str, PolicyConfig]:
    """Defaults from the pack, then its initial config, then `given`; validated against each schema."""
    result: dict[str, PolicyConfig] = {}
    for p in info.policies:
        defaults = {k: v["default"] for k, v in _schema_properties(p).items() if "default" in v}
        result[p.name] = PolicyConfig(level=LEVEL_NAMES.get(p.enforcementLevel, "advisory"), properties=defaults)
    initial = {k: PolicyConfig(level=LEVEL_NAMES.get(v.enforcementLevel) if v.enforcementLevel else None,
                               properties=json_format.MessageToDict(v.properties))
               for k, v in info.initialConfig.items()}
    for layer in (initial, given):
        if "all" in layer and layer["all"].level:
            for cfg in result.values():
                cfg.level = layer["all"].level
        for name, cfg in layer.items():
            if name == "all":
                continue
            target = result.setdefault(name, PolicyConfig())
            target.level = cfg.level or target.level
            target.properties.update(cfg.properties)
    errors = []
    for p in info.policies:
        schema = {"type": "object", "properties": _schema_properties(p),
                  "required": list(p.configSchema.required) if p.HasField("configSchema") else []}
        errors += [f"{p.name}: {e}" for e in validate(schema, result[p.name].properties)]
    if errors:
        raise PolicyConfigError("policy config does not fit the pack's schema:\n  " + "\n  ".join(errors))
    return result


def unknown_policies(info: analyzer_pb2.AnalyzerInfo, given: dict[str, PolicyConfig]) -> list[str]:
    """Names in the config file that are no policy of the pack (the CLI ignores them silently)."""
    names = {p.name for p in info.policies} | {"all"}
    return sorted(k for k in given if k not in names)


def to_request(config: dict[str, PolicyConfig]) -> analyzer_pb2.ConfigureAnalyzerRequest:
    request = analyzer_pb2.ConfigureAnalyzerRequest()
    for name, cfg in config.items():
        entry = request.policyConfig[name]
        entry.enforcementLevel = LEVELS[cfg.level or "advisory"]  # type: ignore[assignment]
        entry.properties.update(cfg.properties)
    return request


# --- a JSON Schema subset: what policy config schemas use ---------------------------------------------------
_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,), "boolean": (bool,), "object": (dict,), "array": (list,), "null": (type(None),),
    "number": (int, float), "integer": (int,),
}


def _is_type(value: Any, name: str) -> bool:
    if name in ("number", "integer") and isinstance(value, bool):
        return False
    if name == "integer" and isinstance(value, float):
        return value.is_integer()
    return isinstance(value, _TYPES.get(name, (object,)))


def validate(schema: dict[str, Any], value: Any, path: str = "") -> list[str]:
    """Errors of `value` against `schema`: type, enum, bounds, items, properties, required, additionalProperties."""
    where = path or "(root)"
    types = schema.get("type")
    if types is not None:
        names = types if isinstance(types, list) else [types]
        if not any(_is_type(value, t) for t in names):
            return [f"{where}: expected {' or '.join(names)}, got {json.dumps(value)}"]
    errors: list[str] = []
    if "enum" in schema and value not in schema["enum"]:
        errors.append(f"{where}: {json.dumps(value)} is not one of {json.dumps(schema['enum'])}")
    if isinstance(value, int | float) and not isinstance(value, bool):
        if "minimum" in schema and value < schema["minimum"]:
            errors.append(f"{where}: {value} is below the minimum {schema['minimum']}")
        if "maximum" in schema and value > schema["maximum"]:
            errors.append(f"{where}: {value} is above the maximum {schema['maximum']}")
    if isinstance(value, list):
        if "minItems" in schema and len(value) < schema["minItems"]:
            errors.append(f"{where}: needs at least {schema['minItems']} item(s)")
        for i, item in enumerate(value):
            errors += validate(schema.get("items") or {}, item, f"{path}[{i}]")
    if isinstance(value, dict):
        props = schema.get("properties") or {}
        errors += [f"{where}: {k} is required" for k in schema.get("required") or [] if k not in value]
        extra = schema.get("additionalProperties", True)
        for k, v in value.items():
            sub = f"{path}.{k}" if path else k
            if k in props:
                errors += validate(props[k], v, sub)
            elif extra is False:
                errors.append(f"{where}: unexpected property {k}")
            elif isinstance(extra, dict):
                errors += validate(extra, v, sub)
    return errors
