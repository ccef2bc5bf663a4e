"""The offline policy run end to end: the real pack as a subprocess, the analyzer protocol, the CLI.

The prod plan passes every policy; deliberately broken copies of it fail with the right policy on the
right resource; `stamps policy check` / `stamps plan --policy` exit 3 on a mandatory violation; policy
config behaves like `--policy-pack-config`; the pack process is started the way the Pulumi CLI starts
it and never outlives a run.
"""

from __future__ import annotations

import copy
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from stamps.cli import main
from stamps.offline import Plan
from stamps.offline.plan import SECRET, UNKNOWN
from stamps.policycheck import (
    PackProject,
    PolicyConfigError,
    PolicyPackError,
    PolicyPackProcess,
    StackContext,
    check_plan,
)
from stamps.policycheck import config as policy_config
from stamps.policycheck.wire import to_wire

ROOT = Path(__file__).resolve().parents[1]
PACK = ROOT / "policy"
AN = "azure-native:"
VENV = Path(sys.executable).parent.parent


@pytest.fixture(autouse=True)
def wide_console(monkeypatch: pytest.MonkeyPatch) -> None:
    """Rich wraps tables at the terminal width; assertions on CLI output must not depend on it."""
    monkeypatch.setenv("COLUMNS", "250")


def mandatory(plan: Plan, given: dict[str, Any] | None = None) -> set[tuple[str, str]]:
    report = check_plan(plan, PACK, policy_config.parse(given) if given else None)
    assert report.exit_code == (3 if report.mandatory else 0)
    return {(v.policy, v.name) for v in report.mandatory}


def broken(plan: Plan, change: Callable[[list[dict[str, Any]]], list[dict[str, Any]]]) -> Plan:
    resources = change(copy.deepcopy(plan.resources))
    return Plan(plan.project, plan.stack, resources, plan.outputs)


def tagged(r: dict[str, Any], cell: str, region: str) -> bool:
    tags = r["inputs"].get("tags") or {}
    return isinstance(tags, dict) and tags.get("cell") == cell and tags.get("region") == region


def one(resources: list[dict[str, Any]], typ: str, cell: str, region: str) -> dict[str, Any]:
    found = [r for r in resources if r["type"] == typ and tagged(r, cell, region)]
    assert len(found) == 1, f"expected one {typ} of CELL {cell}/{region}, found {len(found)}"
    return found[0]


# --- the real plan -------------------------------------------------------------------------------------------
def test_prod_plan_passes_every_policy(prod_plan: Plan) -> None:
    report = check_plan(prod_plan, PACK)
    # Only the advisory notice that shared-smb has no standby (the runbook's prod shape).
    assert [(v.policy, v.level, v.name) for v in report.violations] == [
        ("cells-without-standby", "advisory", "cell-shared-smb-eus-app")]
    assert report.exit_code == 0
    assert len(report.policies) == 35
    assert report.resources == len(prod_plan.resources) + 1  # and the root Stack


def test_sql_with_public_access_fails(prod_plan: Plan) -> None:
    def open_sql(resources: list[dict[str, Any]]) -> list[dict[str, Any]]:
        one(resources, AN + "sql:Server", "retail", "eastus")["inputs"]["publicNetworkAccess"] = "Enabled"
        return resources

    plan = broken(prod_plan, open_sql)
    server = one(plan.resources, AN + "sql:Server", "retail", "eastus")["name"]
    assert mandatory(plan) == {("sql-public-network-disabled", server)}


def test_cell_without_alerts_fails(prod_plan: Plan) -> None:
    def drop_alerts(resources: list[dict[str, Any]]) -> list[dict[str, Any]]:
        alerts = [r for r in resources if r["type"] == AN + "monitor:MetricAlert" and tagged(r, "retail", "eastus")]
        assert alerts, "the prod plan has alert rules for CELL retail/eastus"
        return [r for r in resources if r not in alerts]

    plan = broken(prod_plan, drop_alerts)
    app = one(plan.resources, AN + "app:ContainerApp", "retail", "eastus")["name"]
    assert mandatory(plan) == {("cell-alerts", app)}


def test_spoofable_tenant_header_fails(prod_plan: Plan) -> None:
    stamped: list[str] = []

    def spoofable(resources: list[dict[str, Any]]) -> list[dict[str, Any]]:
        for r in resources:
            value = r["inputs"].get("value")
            if r["type"].startswith(AN + "apimanagement:") and isinstance(value, str) and "X-Tenant-ID" in value:
                r["inputs"]["value"] = value.replace('name="X-Tenant-ID" exists-action="override"',
                                                     'name="X-Tenant-ID"')
                stamped.append(r["name"])
        return resources

    plan = broken(prod_plan, spoofable)
    assert stamped, "the prod plan stamps X-Tenant-ID in an API Management policy"
    products = [r["name"] for r in plan.resources if r["type"] == AN + "apimanagement:Product"]
    assert mandatory(plan) == {("apim-tenant-header-override", n) for n in stamped} | \
        {("apim-tier-tenant-header", n) for n in products}


def test_a_gateway_granted_on_another_vault_fails_keyvault_data_plane_roles(prod_plan: Plan) -> None:
    """The east gateway's Key Vault Secrets User role moved to the west vault: it still exists, the gateway still
    waits for it, but Azure would refuse the east gateway's read of its certificate."""
    def elsewhere(resources: list[dict[str, Any]]) -> list[dict[str, Any]]:
        east = next(r for r in resources if r["name"] == "region-eastus-kv")
        west = next(r for r in resources if r["name"] == "region-westus-kv")
        role = next(r for r in resources if r["name"] == "region-eastus-agw-kv-access")
        role["inputs"]["scope"] = role["inputs"]["scope"].replace(east["inputs"]["vaultName"],
                                                                  west["inputs"]["vaultName"])
        role["dependencies"] = [west["urn"] if d == east["urn"] else d for d in role["dependencies"]]
        return resources

    assert mandatory(broken(prod_plan, elsewhere)) == {("keyvault-data-plane-roles", "region-eastus-agw")}


def test_a_gateway_role_without_secret_reads_fails_keyvault_data_plane_roles(prod_plan: Plan) -> None:
    reader = "21090545-7ca7-4776-b22c-e363652d74d2"  # Key Vault Reader: metadata only, no secrets/getSecret

    def reader_only(resources: list[dict[str, Any]]) -> list[dict[str, Any]]:
        role = next(r for r in resources if r["name"] == "region-westus-agw-kv-access")
        role["inputs"]["roleDefinitionId"] = role["inputs"]["roleDefinitionId"].rsplit("/", 1)[0] + "/" + reader
        return resources

    found = mandatory(broken(prod_plan, reader_only))
    # gateway-certificate-and-role also misses the Secrets User role among the gateway's dependencies.
    assert ("keyvault-data-plane-roles", "region-westus-agw") in found
    assert {p for p, _ in found} == {"keyvault-data-plane-roles", "gateway-certificate-and-role"}


# --- CLI -----------------------------------------------------------------------------------------------------
def test_policy_check_cli_exit_codes_and_report(prod_plan: Plan, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    good = tmp_path / "prod.plan.json"
    prod_plan.write(good)
    bad = tmp_path / "bad.plan.json"

    def weak_tls(resources: list[dict[str, Any]]) -> list[dict[str, Any]]:
        one(resources, AN + "storage:StorageAccount", "banking", "eastus")["inputs"]["minimumTlsVersion"] = "TLS1_0"
        return resources

    broken(prod_plan, weak_tls).write(bad)
    assert main(["policy", "check", str(bad), "--pack", str(PACK)]) == 3
    out = capsys.readouterr().out
    assert "storage-min-tls-1-2" in out and "TLS1_0" in out and "failed: 1 mandatory" in out

    assert main(["policy", "check", str(good), str(bad), "--json"]) == 3
    reports = json.loads(capsys.readouterr().out)
    assert [r["passed"] for r in reports] == [True, False]
    assert [(v["policy"], v["level"], v["type"]) for v in reports[1]["violations"]
            if v["level"] == "mandatory"] == [("storage-min-tls-1-2", "mandatory", AN + "storage:StorageAccount")]

    assert main(["policy", "check", str(tmp_path / "missing.json")]) == 2
    assert "no such plan file" in capsys.readouterr().err


def test_plan_with_policy_flag_runs_the_pack(prod_plan: Plan, monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    # The session's prod plan stands in for planning again: this checks the hook, not the planner.
    monkeypatch.setattr("stamps.commands.plan.plan_stack", lambda *args, **kwargs: prod_plan)
    assert main(["plan", "--project-dir", str(ROOT), "--quiet", "--policy"]) == 0
    assert "passed: 0 mandatory" in capsys.readouterr().out

    def no_diagnostics(resources: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [r for r in resources if r["type"] != AN + "monitor:DiagnosticSetting"]

    monkeypatch.setattr("stamps.commands.plan.plan_stack", lambda *args, **kwargs: broken(prod_plan, no_diagnostics))
    assert main(["plan", "--project-dir", str(ROOT), "--quiet", "--policy"]) == 3
    assert "cell-diagnostics" in capsys.readouterr().out


def test_policy_list_shows_levels_and_config_defaults(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["policy", "list", "--pack", str(PACK)]) == 0
    out = capsys.readouterr().out
    assert "cost-sql-sku-ceiling" in out and "advisory" in out and "dr-standby-region" in out
    assert 'allowedRegions = ["eastus", "westus"]' in out


# --- policy config -------------------------------------------------------------------------------------------
def test_config_narrows_allowed_regions(prod_plan: Plan) -> None:
    found = mandatory(prod_plan, {"allowed-regions": {"allowedRegions": ["eastus"]}})
    westus = {r["name"] for r in prod_plan.resources if r["inputs"].get("location") == "westus"}
    assert westus and {p for p, _ in found} == {"allowed-regions"}
    # Every westus resource, plus the multi-region services whose secondary locations are in westus.
    assert westus <= {n for _, n in found}


def test_config_file_levels_and_errors(prod_plan: Plan, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    plan_file = tmp_path / "plan.json"

    def public_blob(resources: list[dict[str, Any]]) -> list[dict[str, Any]]:
        one(resources, AN + "storage:StorageAccount", "retail", "eastus")["inputs"]["allowBlobPublicAccess"] = True
        return resources

    broken(prod_plan, public_blob).write(plan_file)
    advisory = tmp_path / "advisory.json"
    advisory.write_text(json.dumps({"all": "advisory", "no-such-policy": "mandatory"}))
    assert main(["policy", "check", str(plan_file), "--config", str(advisory)]) == 0
    out = capsys.readouterr().out
    assert "storage-no-public-blob-access" in out and "advisory" in out
    assert "policy config names no policy of the pack: no-such-policy" in out

    invalid = tmp_path / "invalid.json"
    invalid.write_text(json.dumps({"allowed-regions": {"allowedRegions": "eastus"}}))
    assert main(["policy", "check", str(plan_file), "--config", str(invalid)]) == 2
    assert "allowed-regions: allowedRegions: expected array" in capsys.readouterr().err


def test_config_parsing_and_schema_validation() -> None:
    parsed = policy_config.parse({"all": "advisory", "a": {"enforcementLevel": "disabled", "x": 1}})
    assert (parsed["all"].level, parsed["a"].level, parsed["a"].properties) == ("advisory", "disabled", {"x": 1})
    with pytest.raises(PolicyConfigError, match="'blocking' is not an enforcement level"):
        policy_config.parse({"a": "blocking"})
    schema = {"type": "object", "required": ["r"], "properties": {
        "n": {"type": "integer", "minimum": 1}, "l": {"type": "array", "items": {"type": "string"}, "minItems": 1},
        "m": {"type": "object", "additionalProperties": {"type": "string"}}}}
    assert policy_config.validate(schema, {"r": 1, "n": 2, "l": ["a"], "m": {"dev": "S1"}}) == []
    assert policy_config.validate(schema, {"n": 0, "l": [], "m": {"dev": 1}}) == [
        "(root): r is required", "n: 0 is below the minimum 1", "l: needs at least 1 item(s)",
        "m.dev: expected string, got 1"]


def test_plan_values_in_wire_form() -> None:
    wired = to_wire({"a": [SECRET, {"b": UNKNOWN}], "n": 3})
    assert wired == {"a": [{"4dabf18193072939515e22adb298388d": "1b47061264138c4ac30d75fd1eb44270",
                            "value": SECRET}, {"b": "04da6b54-80e4-46f7-96ec-b56ff0331ba9"}], "n": 3}


# --- the pack process ------------------------------------------------------------------------------------------
def write_pack(directory: Path, main_py: str, venv: Path | str = VENV) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "PulumiPolicy.yaml").write_text(f"runtime:\n  name: python\n  options:\n    virtualenv: {venv}\n")
    (directory / "__main__.py").write_text(main_py)
    return directory


def test_pack_is_launched_like_the_cli_and_shut_down(tmp_path: Path) -> None:
    # A pack that records how it was started and logs through the engine address it was given.
    record = tmp_path / "started.json"
    pack_dir = write_pack(tmp_path / "pack", f"""
import json, os, sys
import grpc
from pulumi.runtime.proto import engine_pb2, engine_pb2_grpc
from pulumi_policy import PolicyPack, ResourceValidationPolicy
json.dump({{"argv": sys.argv, "cwd": os.getcwd(), "env": {{k: os.environ.get(k) for k in
          ("PULUMI_PROJECT", "PULUMI_STACK", "PULUMI_DRY_RUN")}}}}, open({str(record)!r}, "w"))
engine = engine_pb2_grpc.EngineStub(grpc.insecure_channel(sys.argv[1]))
engine.Log(engine_pb2.LogRequest(severity=engine_pb2.INFO, message="hello from the pack"))
PolicyPack("probe", [ResourceValidationPolicy("noop", "does nothing", lambda args, report: None)])
""")
    with PolicyPackProcess(PackProject.load(pack_dir), StackContext(project="stamps", stack="probe")) as pack:
        assert pack.analyzer_info().name == "probe"
        pid = pack.pid
        argv = pack.argv
    started = json.loads(record.read_text())
    assert argv[:4] == [str(VENV / "bin" / "python"), "-u", "-m", "pulumi.policy"] and argv[-1] == "."
    assert started["argv"][1:] == argv[4:]  # runpy leaves the engine address and program in place
    assert Path(started["cwd"]) == pack_dir.resolve()
    assert started["env"] == {"PULUMI_PROJECT": "stamps", "PULUMI_STACK": "probe", "PULUMI_DRY_RUN": "true"}
    assert pack.engine.logs == ["info: hello from the pack"]
    assert pack.exit_code == 0  # SIGINT: the pack stopped its server and exited cleanly
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # type: ignore[arg-type]


def test_a_failing_pack_reports_its_error_and_exit_code(tmp_path: Path) -> None:
    pack_dir = write_pack(tmp_path / "pack", "raise RuntimeError('policy module exploded')\n")
    pack = PolicyPackProcess(PackProject.load(pack_dir), StackContext(project="stamps", stack="x"))
    with pytest.raises(PolicyPackError, match=r"(?s)exited \(exit code 1\).*policy module exploded"):
        pack.__enter__()
    assert pack.exit_code == 1


def test_a_silent_pack_times_out_and_is_killed(tmp_path: Path) -> None:
    pack_dir = write_pack(tmp_path / "pack", "import time\ntime.sleep(600)\n")
    pack = PolicyPackProcess(PackProject.load(pack_dir), StackContext(project="stamps", stack="x"),
                             start_timeout=1.0)
    with pytest.raises(PolicyPackError, match="printed no port"):
        pack.__enter__()
    assert pack.exit_code is not None
    with pytest.raises(ProcessLookupError):
        os.kill(pack.pid, 0)  # type: ignore[arg-type]


def test_pack_project_errors(tmp_path: Path) -> None:
    pack_dir = write_pack(tmp_path / "pack", "", venv="../no-such-venv")
    with pytest.raises(PolicyPackError, match="doesn't appear to be a virtual environment"):
        PackProject.load(pack_dir).command("127.0.0.1:1")
    (pack_dir / "PulumiPolicy.yaml").write_text("runtime: nodejs\n")
    with pytest.raises(PolicyPackError, match="runtime 'nodejs' is not supported"):
        PackProject.load(pack_dir)
    assert PackProject.load(PACK).options == {"virtualenv": "../.venv"}
