"""Run the real `__main__.py` in-process under the Pulumi SDK's mock monitor and capture the plan.

This is `pulumi preview` without a CLI: the stack config file is parsed as the CLI would (structured
values as JSON, `secure:` values as secrets), every RegisterResource request is recorded (type, name,
parent, dependencies, inputs, custom timeouts) and stack outputs are read from the root resource. The SDK keeps global
state (settings, root stack, config); each run resets it, so several stacks can be planned in one process.
"""

from __future__ import annotations

import os
import runpy
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml
from google.protobuf import json_format, struct_pb2

from stamps import speedup
from stamps.config.loader import NAMESPACE, SECRET_KEYS
from stamps.config.stackfile import StackFileError, read_stack_config
from stamps.offline.mocks import AzureMocks
from stamps.offline.plan import SECRET, UNKNOWN, Plan

# Markers the SDK uses on the wire (pulumi/runtime/rpc.py).
_SIG = "4dabf18193072939515e22adb298388d"
_SECRET_SIG = "1b47061264138c4ac30d75fd1eb44270"
_UNKNOWN = "04da6b54-80e4-46f7-96ec-b56ff0331ba9"
_RESOURCE_SIG = "5cf8f73096256a8f31e491e813e4eb8e"
_OUTPUT_SIG = "d0e6a833031e9bbcd3f4e8bde6ca49a4"

_lock = threading.Lock()
ORGANIZATION = "organization"


def _clean(value: Any) -> Any:
    """Wire values → plan JSON: secrets redacted, unknowns marked, resource references as URNs."""
    if isinstance(value, dict):
        sig = value.get(_SIG)
        if sig == _SECRET_SIG:
            return SECRET
        if sig == _RESOURCE_SIG:
            return value.get("urn")
        if sig == _OUTPUT_SIG:
            if value.get("secret"):
                return SECRET
            return _clean(value["value"]) if "value" in value else UNKNOWN
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    if value == _UNKNOWN:
        return UNKNOWN
    return value


def _recording_monitor(mocks: AzureMocks, on_register: Callable[[int], None] | None = None) -> Any:
    from pulumi.runtime.mocks import MockMonitor

    class RecordingMonitor(MockMonitor):
        """Records each RegisterResource request; URNs follow the engine's rules (full parent chain)."""

        def __init__(self) -> None:
            super().__init__(mocks)
            self.requests: list[dict[str, Any]] = []

        def make_urn(self, parent: str, type_: str, name: str) -> str:
            from pulumi.runtime.settings import get_project, get_stack

            if parent:
                qualified = parent.split("::")[2]
                if qualified != "pulumi:pulumi:Stack":
                    type_ = f"{qualified}${type_}"
            return "urn:pulumi:" + "::".join([get_stack(), get_project(), type_, name])

        def RegisterResource(self, request: Any) -> Any:
            response = super().RegisterResource(request)
            if request.type != "pulumi:pulumi:Stack":
                inputs = json_format.MessageToDict(request.object) if request.object else {}
                record: dict[str, Any] = {
                    "urn": response.urn,
                    "type": request.type,
                    "name": request.name,
                    "parent": request.parent or None,
                    "custom": bool(request.custom),
                    "inputs": _clean(inputs),
                    "dependencies": sorted(set(request.dependencies)),
                }
                # The engine hands these to the provider as its operation deadlines: a slow resource (API
                # Management, SQL) without them fails its `up` when the provider's default runs out.
                timeouts = {k: getattr(request.customTimeouts, k) for k in ("create", "update", "delete")
                            if getattr(request.customTimeouts, k)}
                if timeouts:
                    record["customTimeouts"] = timeouts
                self.requests.append(record)
                if on_register is not None:
                    on_register(len(self.requests))
            return response

    return RecordingMonitor()


def read_project(project_dir: Path) -> str:
    path = Path(project_dir) / "Pulumi.yaml"
    try:
        return str(yaml.safe_load(path.read_text())["name"])
    except (OSError, KeyError, TypeError, yaml.YAMLError) as exc:
        raise StackFileError(f"{path}: cannot read the project name ({exc})") from None


@contextmanager
def _program_path(project_dir: Path) -> Iterator[None]:
    saved = list(sys.path)
    sys.path.insert(0, str(project_dir))
    cwd = os.getcwd()
    os.chdir(project_dir)
    try:
        yield
    finally:
        os.chdir(cwd)
        sys.path[:] = saved


def plan_stack(
    project_dir: Path,
    stack: str,
    config_file: Path | None = None,
    *,
    on_register: Callable[[int], None] | None = None,
    fleet_file: Path | None = None,
    stack_outputs: dict[str, dict[str, Any]] | None = None,
    require_secrets: bool = False,
) -> Plan:
    """Run the project's `__main__.py` for `stack` under mocks; raises the program's errors unchanged.

    A unit stack (`prod.cell.banking.eastus`, stamps/stacks/units.py) reads the fleet file (`fleet_file`,
    default `Pulumi.<fleet>.yaml`) and its own stack file if it has one; its StackReferences read
    `stack_outputs` (bare stack name → outputs of an earlier plan). With `require_secrets`, a secret key the stack
    config does not set stays unset, so the program reports it as under `pulumi preview`. `on_register(n)` is
    called (on the SDK's executor threads) after each resource registration with the number registered so far.
    The offline-only SDK shortcuts (`speedup.plan_shortcuts`) are active for the run and restored afterwards.
    """
    import pulumi
    from pulumi.runtime import settings
    from pulumi.runtime.config import set_all_config
    from pulumi.runtime.stack import wait_for_rpcs
    from pulumi.runtime.sync_await import _sync_await

    from stamps.program import FLEET_FILE_ENV
    from stamps.stacks.units import split_stack

    project_dir = Path(project_dir).resolve()
    project = read_project(project_dir)
    fleet, unit = split_stack(stack)
    own_file = Path(config_file) if config_file else project_dir / f"Pulumi.{stack}.yaml"
    values: dict[str, str]
    secret_keys: list[str]
    if unit is not None and config_file is None and not own_file.is_file():
        values, secret_keys = {}, []  # a unit stack needs no file of its own: the fleet file defines it
    else:
        values, secret_keys = read_stack_config(own_file)
    if unit is not None:
        # Checked here, so a missing fleet file is named before the program runs.
        default = project_dir / f"Pulumi.{fleet}.yaml"
        read_stack_config(Path(fleet_file) if fleet_file else default)
        # The default is found by the program itself (as under the CLI): only another file needs the variable.
        if fleet_file is not None and Path(fleet_file).resolve() == default:
            fleet_file = None
    # A clone ships no secrets (they come from `pulumi config set --secret` or ESC). Offline only, an absent
    # one is a redacted placeholder, so the plan still shows where it goes; the CLI reports it as missing.
    for key in () if require_secrets else SECRET_KEYS:
        if f"{NAMESPACE}:{key}" not in values:
            values[f"{NAMESPACE}:{key}"] = SECRET
            secret_keys.append(f"{NAMESPACE}:{key}")

    with _lock, _program_path(project_dir), speedup.plan_shortcuts(), _environ(
            FLEET_FILE_ENV, str(Path(fleet_file).resolve()) if fleet_file else None):
        mocks = AzureMocks(stack_outputs)
        monitor = _recording_monitor(mocks, on_register)
        # Fresh SDK state per run: root stack, settings and config from an earlier plan must not leak.
        # "organization" is what DIY backends report; StackReferences name `<org>/<project>/<stack>`.
        settings.reset_options(project=project, stack=stack, preview=True, organization=ORGANIZATION)
        pulumi.runtime.set_mocks(mocks, project=project, stack=stack, preview=True, monitor=monitor,
                                 organization=ORGANIZATION)
        set_all_config(values, secret_keys)
        try:
            runpy.run_path(str(project_dir / "__main__.py"), run_name="__main__")
            _sync_await(wait_for_rpcs())
            root = settings.get_root_resource()
            outputs = _sync_await(_resolve_outputs(getattr(root, "outputs", {}) or {}))
        finally:
            settings.reset_options()
            set_all_config({}, [])
    # Sorted by URN: registration order follows when inputs resolved; a plan file must diff cleanly.
    resources = sorted(monitor.requests, key=lambda r: r["urn"])
    return Plan(project=project, stack=stack, resources=resources, outputs=outputs)


@contextmanager
def _environ(name: str, value: str | None) -> Iterator[None]:
    saved = os.environ.get(name)
    if value is None:
        os.environ.pop(name, None)
    else:
        os.environ[name] = value
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = saved


async def _resolve_outputs(outputs: dict[str, Any]) -> dict[str, Any]:
    from pulumi.runtime import rpc

    struct = await rpc.serialize_properties(outputs, {})
    return _clean(json_format.MessageToDict(struct) if isinstance(struct, struct_pb2.Struct) else {})
