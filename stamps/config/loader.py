"""Read `stamps:` keys, validate them all, resolve placement and names into an Environment."""

from __future__ import annotations

import json
from typing import Any

from pydantic import ValidationError

from stamps.config.errors import ConfigError, from_validation_error
from stamps.config.model import StampsConfig
from stamps.config.validate import cross_check
from stamps.environment import Environment
from stamps.naming import NameError_, Naming, stable_suffix
from stamps.placement import PlacementError, place

NAMESPACE = "stamps"
# Secret keys live outside the typed model: they are only ever handled as Pulumi secret Outputs.
SECRET_KEYS: tuple[str, ...] = ("alertWebhookUrl", "pagerDutyWebhookUrl")

# Keys of earlier versions: a stack file that still has one gets told what replaced it, never misread.
RETIRED_KEYS: dict[str, str] = {
    "activeRegion": "replaced by per-region serving state: every primary region serves its own CELLs; to keep a "
                    "region failed over set `servingFrom: dr` on it under stamps:regions (stamps-ops failover "
                    "--region R does this), then delete activeRegion",
}


def _model_keys() -> set[str]:
    return {info.alias or name for name, info in StampsConfig.model_fields.items()}


def read_pulumi_config() -> dict[str, Any]:
    """Every `stamps:` key of the running stack (structured values decoded), secrets excluded."""
    from pulumi.runtime import config as runtime_config

    raw = {**runtime_config.get_config_env(), **runtime_config.CONFIG.get()}
    out: dict[str, Any] = {}
    for full_key, value in raw.items():
        ns, _, key = full_key.partition(":")
        if ns != NAMESPACE or key in SECRET_KEYS:
            continue
        try:
            out[key] = json.loads(value) if isinstance(value, str) else value
        except json.JSONDecodeError:
            out[key] = value  # plain scalar strings such as `environment: prod`
    return out


def load_environment(project: str, stack: str, values: dict[str, Any]) -> Environment:
    """Validate `values` (camelCase `stamps:` keys) and resolve the environment; raise ConfigError."""
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
    problems += cross_check(cfg)
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
        for fn in (n.storage, n.sql_server, n.container_app, n.managed_env):
            try:
                fn(inst.key)
            except NameError_ as err:
                where = f"stamps:cells[{index[inst.name]}].name" if inst.name in index else "stamps:tenants"
                problems.append(f"{where}: {err}; use a shorter CELL name")
    if problems:
        raise ConfigError(sorted(set(problems)))
