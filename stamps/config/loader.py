"""Read `stamps:` keys, validate them all, resolve placement and names into an Environment."""

from __future__ import annotations

import contextlib
import functools
import json
from collections.abc import Iterable, Mapping
from typing import Any, get_args, get_origin

from pydantic import BaseModel, ValidationError

from stamps.config.capabilities import check_services, check_zone_choices
from stamps.config.errors import ConfigError, from_validation_error
from stamps.config.model import DEV_APP, StampsConfig
from stamps.config.validate import cross_check
from stamps.environment import Environment
from stamps.naming import NameError_, Naming, stable_suffix
from stamps.placement import PlacementError, place

NAMESPACE = "stamps"
# Secret keys live outside the typed model: they are only ever handled as Pulumi secret Outputs.
SECRET_KEYS: tuple[str, ...] = ("alertWebhookUrl", "pagerDutyWebhookUrl", "edgeCertificatePfx")

# Keys of earlier versions: a stack file that still has one gets told what replaced it, never misread.
RETIRED_KEYS: dict[str, str] = {
    "activeRegion": "replaced by per-region serving state: every primary region serves its own CELLs; to keep a "
                    "region failed over set `servingFrom: dr` on it under stamps:regions (stamps-ops failover "
                    "--region R does this), then delete activeRegion",
}


def _model_keys() -> set[str]:
    return {info.alias or name for name, info in StampsConfig.model_fields.items()}


def _structured(annotation: Any) -> bool:
    """Is a field an object or a list (the CLI passes those as JSON text), not a scalar?"""
    if isinstance(annotation, type):
        return issubclass(annotation, BaseModel | list | dict)
    origin = get_origin(annotation)
    if origin in (list, dict):
        return True
    return any(_structured(a) for a in get_args(annotation) if a is not type(None))


@functools.cache
def structured_keys() -> frozenset[str]:
    """The `stamps:` keys whose values are objects or lists; every other key is a scalar string."""
    return frozenset(info.alias or name for name, info in StampsConfig.model_fields.items()
                     if _structured(info.annotation))


def decode(key: str, value: Any) -> Any:
    """One `stamps:` value as the CLI hands it over (a string): JSON only for the keys the model types as objects
    or lists, so `costCenter: "4200"` stays the string "4200"; pydantic coerces the other scalars by field type."""
    if key in structured_keys() and isinstance(value, str):
        # Not JSON: pydantic then names the key ("Input should be a valid list/dictionary").
        with contextlib.suppress(json.JSONDecodeError):
            return json.loads(value)
    return value


def decode_stack_values(raw: Mapping[str, str], skip: Iterable[str] = ()) -> dict[str, Any]:
    """The `stamps:` values of a stack file (`ns:key` → CLI string, as `read_stack_config` gives them), decoded
    as the program decodes them (`decode`); secret keys and the `skip` keys (`ns:key`) are left out."""
    skipped = set(skip)
    out: dict[str, Any] = {}
    for full_key, value in raw.items():
        ns, _, key = full_key.partition(":")
        if ns == NAMESPACE and key not in SECRET_KEYS and full_key not in skipped:
            out[key] = decode(key, value)
    return out


def read_pulumi_config() -> dict[str, Any]:
    """Every `stamps:` key of the running stack (see `decode`), secrets excluded."""
    from pulumi.runtime import config as runtime_config

    raw = {**runtime_config.get_config_env(), **runtime_config.CONFIG.get()}
    secret = set(runtime_config.get_config_secret_keys_env()) | {k for k in raw if runtime_config.is_config_secret(k)}
    out: dict[str, Any] = {}
    made_secret = []
    for full_key, value in raw.items():
        ns, _, key = full_key.partition(":")
        if ns != NAMESPACE or key in SECRET_KEYS:
            continue
        if full_key in secret:
            made_secret.append(full_key)
            continue
        out[key] = decode(key, value)
    if made_secret:
        # Reading them would drop the secret marking: their values become resource names, tags and inputs in
        # plain text in state and outputs. Only the webhook URLs are secrets.
        raise ConfigError([f"{k}: set as a secret, but it is not one (it ends up in resource names, tags and "
                           f"inputs in plain text); set it without --secret. Secret keys: "
                           f"{', '.join(f'{NAMESPACE}:{s}' for s in SECRET_KEYS)}" for k in sorted(made_secret)])
    return out


def load_environment(project: str, stack: str, values: dict[str, Any]) -> Environment:
    """Validate `values` (camelCase `stamps:` keys) and resolve the environment; raise ConfigError."""
    # Secret keys are never model values (they are read as secret Outputs where used); callers may pass them.
    values = {k: v for k, v in values.items() if k not in SECRET_KEYS}
    unknown = sorted(set(values) - _model_keys())
    problems = [
        f"{NAMESPACE}:{k}: {RETIRED_KEYS[k]}" if k in RETIRED_KEYS else
        f"{NAMESPACE}:{k}: unknown key; valid keys: {', '.join(sorted(_model_keys() | set(SECRET_KEYS)))}"
        for k in unknown
    ]
    try:
        cfg = StampsConfig.model_validate({k: v for k, v in values.items() if k not in unknown})
    except ValidationError as err:
        raise ConfigError(problems + from_validation_error(err).problems) from None
    problems += cross_check(cfg) + check_zone_choices(cfg) + check_services(cfg) + _check_app(cfg)
    if problems:
        raise ConfigError(problems)
    try:
        placement = place(cfg)
    except PlacementError as err:
        raise ConfigError([str(err)]) from None
    naming = Naming(cfg.environment, cfg.name_suffix or stable_suffix(project, stack, cfg.environment))
    cells = tuple(cfg.cells) + placement.new_cells
    env = Environment(
        project=project, stack=stack, config=cfg, naming=naming, tenant_cells=placement.tenant_cells, cells=cells
    )
    _check_names(env)
    return env


def _check_app(cfg: StampsConfig) -> list[str]:
    """Outside dev every CELL needs an image and the port it listens on: a guess deploys a revision that never
    becomes ready (an unpublished tag, or probes on a port nothing listens on)."""
    out = []
    for i, c in enumerate(cfg.cells):
        if cfg.app_for(c) is None:
            out.append(f"stamps:app: required in {cfg.environment} (CELL {c.name!r} has no image and port): set "
                       f"stamps:app {{image, port, livenessPath, readinessPath}} or stamps:cells[{i}].image and "
                       f".port; only dev falls back to {DEV_APP.image} on port {DEV_APP.port}")
    return out[:1] if cfg.app is None and all(c.image is None for c in cfg.cells) else out


def _check_names(env: Environment) -> None:
    """Derive every globally unique name up front so a too-long id fails before any resource exists."""
    problems = []
    n = env.naming
    for fn in (n.front_door_endpoint, n.cosmos, n.apim):
        try:
            fn()
        except NameError_ as err:
            problems.append(f"stamps:environment: {err}")
    for region in env.deployed_regions:
        try:
            n.key_vault(region)
            if region in env.primary_regions:
                n.traffic_manager_dns(region)
        except NameError_ as err:
            problems.append(f"stamps:regions: {err}")
    index = {c.name: i for i, c in enumerate(env.config.cells)}
    for inst in env.instances:
        for name_of in (n.storage, n.sql_server, n.container_app, n.managed_env):
            try:
                name_of(inst.key)
            except NameError_ as err:
                where = f"stamps:cells[{index[inst.name]}].name" if inst.name in index else "stamps:tenants"
                problems.append(f"{where}: {err}; use a shorter CELL name")
    if problems:
        raise ConfigError(sorted(set(problems)))
