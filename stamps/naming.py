"""Azure resource names: one place that knows each type's length and character rules.

Names are deterministic so a plan is stable run to run; globally unique names (storage, Key Vault,
SQL server, Cosmos DB, API Management, Front Door endpoint, Traffic Manager DNS) carry a short suffix
derived from the project and stack, so two environments never collide.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from stamps.config.regions import region_code
from stamps.errors import UsageError


@dataclass(frozen=True)
class NameRule:
    min_len: int
    max_len: int
    pattern: str
    what: str


RULES: dict[str, NameRule] = {
    "storage": NameRule(3, 24, r"^[a-z0-9]+$", "3-24 lowercase letters and digits"),
    "keyvault": NameRule(3, 24, r"^[a-zA-Z][a-zA-Z0-9-]*[a-zA-Z0-9]$", "3-24 letters, digits and hyphens"),
    "sqlserver": NameRule(1, 63, r"^[a-z0-9][a-z0-9-]*[a-z0-9]$", "1-63 lowercase letters, digits, hyphens"),
    "cosmos": NameRule(3, 44, r"^[a-z0-9][a-z0-9-]*[a-z0-9]$", "3-44 lowercase letters, digits, hyphens"),
    "apim": NameRule(1, 50, r"^[a-zA-Z][a-zA-Z0-9-]*[a-zA-Z0-9]$", "1-50 letters, digits, hyphens"),
    "containerapp": NameRule(2, 32, r"^[a-z][a-z0-9-]*[a-z0-9]$", "2-32 lowercase letters, digits, hyphens"),
    "managedenv": NameRule(2, 60, r"^[a-z][a-z0-9-]*[a-z0-9]$", "2-60 lowercase letters, digits, hyphens"),
    "dns": NameRule(1, 63, r"^[a-z0-9][a-z0-9-]*[a-z0-9]$", "a DNS label: 1-63 characters"),
    "generic": NameRule(1, 80, r"^[a-zA-Z0-9][a-zA-Z0-9._-]*$", "1-80 letters, digits, . _ -"),
}


class NameError_(UsageError, ValueError):
    """A derived name breaks its Azure rule; the message says which rule."""


def check(kind: str, name: str) -> str:
    rule = RULES[kind]
    if not (rule.min_len <= len(name) <= rule.max_len and re.match(rule.pattern, name)):
        raise NameError_(f"{name!r} ({len(name)} characters) breaks the {kind} naming rule: {rule.what}")
    return name


def revision_suffix(version: str, template: Mapping[str, Any]) -> str:
    """`v<version>-<6 hex of the whole template>`: every template change gets a suffix of its own.

    A Container App in multiple-revision mode makes a new revision for any change under `template`
    (image, env, probes, resources, scale: learn.microsoft.com/azure/container-apps/revisions), and rejects a
    suffix it has already used ("revision with suffix already exists"). Keying the suffix on the version alone
    made a failover, scale or isolation re-use it. Lowercase letters, digits and hyphens, short enough that
    `<app name (32)>--<suffix>` stays within 63 characters.
    """
    digest = hashlib.sha256(json.dumps(template, sort_keys=True, default=str).encode()).hexdigest()[:6]
    base = ("v" + re.sub(r"[^a-z0-9]+", "-", version.lower()))[:21].rstrip("-")
    return f"{base}-{digest}"


def revision_name(app_name: str, suffix: str) -> str:
    """Container Apps names a revision `<app>--<suffix>`; traffic weights and labels refer to it by that name."""
    return f"{app_name}--{suffix}"


def stable_suffix(*parts: str) -> str:
    """Five lowercase hex characters, the same for the same inputs on every machine."""
    return hashlib.sha256("/".join(parts).encode()).hexdigest()[:5]


@dataclass(frozen=True)
class Naming:
    """Derives every resource name of one environment."""

    environment: str
    suffix: str

    def _base(self) -> str:
        return f"stamps-{self.environment}"

    # Global layer
    def global_group(self) -> str:
        return f"rg-{self._base()}-global"

    def workspace(self) -> str:
        return f"log-{self._base()}"

    def app_insights(self) -> str:
        return f"appi-{self._base()}"

    def front_door(self) -> str:
        return f"afd-{self._base()}"

    def front_door_endpoint(self) -> str:
        return check("dns", f"{self._base()}-{self.suffix}")

    def traffic_manager(self, primary: str) -> str:
        return f"tm-{self._base()}-{region_code(primary)}"

    def traffic_manager_dns(self, primary: str) -> str:
        return check("dns", f"{self._base()}-{region_code(primary)}-{self.suffix}")

    def cosmos(self) -> str:
        return check("cosmos", f"cosmos-{self._base()}-{self.suffix}")

    def apim(self) -> str:
        return check("apim", f"apim-{self._base()}-{self.suffix}")

    # Regional layer
    def region_group(self, region: str) -> str:
        return f"rg-{self._base()}-{region_code(region)}"

    def vnet(self, region: str) -> str:
        return f"vnet-{self._base()}-{region_code(region)}"

    def app_gateway(self, region: str) -> str:
        return f"agw-{self._base()}-{region_code(region)}"

    def key_vault(self, region: str) -> str:
        return check("keyvault", f"kv-{self.environment}-{region_code(region)}-{self.suffix}")

    def automation(self, region: str) -> str:
        return f"aa-{self._base()}-{region_code(region)}"

    # CELL layer: `key` is `<cell>-<region code>`, so a CELL and its standby never share a name.
    @staticmethod
    def cell_key(cell: str, region: str) -> str:
        return f"{cell}-{region_code(region)}"

    def cell_group(self, key: str) -> str:
        return f"rg-{self._base()}-cell-{key}"

    def managed_env(self, key: str) -> str:
        return check("managedenv", f"cae-{key}")

    def container_app(self, key: str) -> str:
        return check("containerapp", f"ca-{key}")

    def sql_server(self, key: str) -> str:
        return check("sqlserver", f"sql-{key}-{self.suffix}")

    def sql_database(self, cell: str) -> str:
        return f"sqldb-{cell}"

    def storage(self, key: str) -> str:
        return check("storage", f"st{key.replace('-', '')}{self.suffix}")
