"""Config validation: every bad value names its key path and what would be valid, exit 2, nothing written."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from stamps.cli import main
from stamps.config.errors import ConfigError
from stamps.config.loader import load_environment
from tests.conftest import StackFile, prod_config


def _values(doc: dict[str, Any]) -> dict[str, Any]:
    return {
        k.split(":", 1)[1]: v
        for k, v in doc["config"].items()
        if k.startswith("stamps:") and not (isinstance(v, dict) and "secure" in v)
    }


def _cells(cfg: dict[str, Any]) -> list[dict[str, Any]]:
    return cfg["stamps:cells"]


def _tenants(cfg: dict[str, Any]) -> list[dict[str, Any]]:
    return cfg["stamps:tenants"]


CASES: list[tuple[str, Any, list[str]]] = [
    ("unknown region", lambda c: _cells(c)[2].update(region="eastus-3"),
     ["stamps:cells[2].region", "not an Azure region"]),
    ("region not configured", lambda c: _cells(c)[2].update(region="northeurope"),
     ["stamps:cells[2].region", "not a configured region", "valid: eastus, westus"]),
    ("unknown cell reference", lambda c: _tenants(c)[0].update(cell="shared-smbx"),
     ["stamps:tenants[0].cell", "unknown CELL 'shared-smbx'", "valid: banking, healthcare, retail, shared-smb"]),
    ("unknown tier", lambda c: _tenants(c)[2].update(tier="gold"),
     ["stamps:tenants[2].tier", "unknown tier 'gold'", "valid: basic, enterprise, premium"]),
    ("duplicate cell", lambda c: _cells(c).append(dict(_cells(c)[1])),
     ["stamps:cells[4].name", "duplicate name 'retail'"]),
    ("duplicate tenant", lambda c: _tenants(c).append(dict(_tenants(c)[0])),
     ["stamps:tenants[3].id", "duplicate id 'startup'"]),
    ("dedicated cell with two tenants",
     lambda c: _tenants(c).append({"id": "bank-two", "tier": "enterprise", "cell": "banking",
                                   "email": "a@b.example", "compliance": ["pci-dss"]}),
     ["stamps:cells[0]", "dedicated CELL 'banking' has 2 tenants", "it may hold one"]),
    ("shared cell over capacity", lambda c: _cells(c)[3].update(capacity=1),
     ["stamps:cells[3].capacity", "holds 2 tenants but capacity is 1"]),
    ("primary without DR", lambda c: c["stamps:regions"][0].pop("drRegion"),
     ["stamps:regions[0]", "needs a drRegion"]),
    ("storage name too long", lambda c: _cells(c)[1].update(name="retail-analytics-eu"),
     ["stamps:cells[1].name", "storage naming rule", "3-24 lowercase letters and digits"]),
    ("threshold out of range", lambda c: c.update({"stamps:kpis": {"global": {"availabilityPercent": {
        "target": 99.95, "alert": 120}}}}),
     ["stamps:kpis.global.availabilityPercent", "within 0-100"]),
    ("alert on wrong side of target", lambda c: c.update({"stamps:kpis": {"cell": {"containerCpuPercent": {
        "target": 70, "alert": 50}}}}),
     ["stamps:kpis.cell.containerCpuPercent.alert", "at or above the target"]),
    ("id injecting XML", lambda c: _tenants(c)[0].update(id='a"/><x y="'),
     ["stamps:tenants[0].id", "not a valid id", "policy XML"]),
    ("id injecting a URL path", lambda c: _tenants(c)[1].update(cell="../admin"),
     ["stamps:tenants[1].cell", "not a valid id"]),
    ("unknown key", lambda c: c.update({"stamps:regionz": []}),
     ["stamps:regionz", "unknown key", "valid keys:"]),
    ("typo inside a section", lambda c: _cells(c)[0]["replicas"].update(maximum=3),
     ["stamps:cells[0].replicas.maximum", "unknown key"]),
    ("replicas inverted", lambda c: _cells(c)[0].update(replicas={"min": 5, "max": 2}),
     ["stamps:cells[0].replicas", "must not exceed max"]),
    ("standby in the wrong region", lambda c: _cells(c)[0]["standby"].update(region="westus2"),
     ["stamps:cells[0].standby.region", "not the DR region", "valid: westus"]),
    ("tier model mismatch", lambda c: _tenants(c)[0].update(cell="banking"),
     ["stamps:tenants[0].cell", "needs a shared CELL"]),
    ("compliance mismatch", lambda c: _tenants(c)[0].update(compliance=["hipaa"]),
     ["stamps:tenants[0].cell", "lacks compliance ['hipaa']", "valid: healthcare"]),
    ("bad SQL sku", lambda c: _cells(c)[0]["sql"].update(sku="S99"),
     ["stamps:cells[0].sql", "not an Azure SQL service objective"]),
    # The retired environment-wide switch is never silently misread: it names what replaced it.
    ("retired activeRegion", lambda c: c.update({"stamps:activeRegion": "westus"}),
     ["stamps:activeRegion", "servingFrom: dr", "stamps-ops failover --region"]),
    ("servingFrom on a DR region", lambda c: c["stamps:regions"][1].update(servingFrom="dr"),
     ["stamps:regions[1]", "servingFrom is only set on primary regions"]),
    ("servingFrom typo", lambda c: c["stamps:regions"][0].update(servingFrom="westus"),
     ["stamps:regions[0].servingFrom", "'primary' or 'dr'"]),
    ("overlapping networks", lambda c: c["stamps:regions"][1].update(addressSpace="10.10.0.0/16"),
     ["stamps:regions[1].addressSpace", "overlaps"]),
]


@pytest.mark.parametrize(("mutate", "expected"), [(m, e) for _, m, e in CASES], ids=[c[0] for c in CASES])
def test_invalid_config_exits_2_with_key_path(
    mutate: Any, expected: list[str], stack_file: StackFile, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = stack_file(mutate)
    out = tmp_path / "plan.json"
    rc = main(["plan", "--config-file", str(path), "--out", str(out), "--quiet"])
    err = capsys.readouterr().err
    assert rc == 2, err
    for text in expected:
        assert text in err, f"{text!r} missing from:\n{err}"
    assert "Traceback" not in err
    assert not out.exists(), "a failed plan must write nothing"


def test_all_problems_reported_at_once() -> None:
    doc = prod_config()
    doc["config"]["stamps:tenants"][0]["cell"] = "nowhere"
    doc["config"]["stamps:tenants"][1]["tier"] = "platinum"
    with pytest.raises(ConfigError) as info:
        load_environment("stamps", "prod", _values(doc))
    assert len(info.value.problems) == 2


def test_prod_config_resolves_runbook_topology() -> None:
    env = load_environment("stamps", "prod", _values(prod_config()))
    assert env.primary_regions == ["eastus"]
    assert env.regions["eastus"].dr_region == "westus"
    standbys = sorted(i.name for i in env.instances if i.role == "standby")
    assert standbys == ["banking", "healthcare", "retail"]
    assert all(i.region == "westus" for i in env.instances if i.role == "standby")
    assert env.tenant_cells == {"startup": "shared-smb", "banking-corp": "banking", "fintech-scale": "shared-smb"}
    assert {t.name for t in env.config.tiers} == {"basic", "premium", "enterprise"}
    # KPI defaults are the runbook's numbers.
    assert env.config.kpis.global_.availability_percent.alert == 99.9
    assert env.config.kpis.cell.container_cpu_percent.alert == 85


def test_names_are_stable_and_within_azure_rules() -> None:
    a = load_environment("stamps", "prod", _values(prod_config()))
    b = load_environment("stamps", "prod", _values(prod_config()))
    c = load_environment("stamps", "staging", _values(prod_config()))
    assert a.naming.suffix == b.naming.suffix != c.naming.suffix
    for inst in a.instances:
        name = a.naming.storage(inst.key)
        assert 3 <= len(name) <= 24 and name.isalnum() and name.islower()
    assert len(a.naming.key_vault("westus")) <= 24


def test_standby_scales_to_active_size_when_its_region_serves() -> None:
    doc = prod_config()
    doc["config"]["stamps:regions"][0]["servingFrom"] = "dr"
    env = load_environment("stamps", "prod", _values(doc))
    banking_dr = env.instance("banking", "standby")
    assert (banking_dr.replicas.min, banking_dr.replicas.max) == (3, 10)
    assert env.failed_over("eastus") and env.dns_ttl("eastus") == 60
    assert env.endpoint_priority("eastus", "westus") == 1 and env.endpoint_priority("eastus", "eastus") == 2


def test_each_primary_serves_its_own_cells_and_fails_over_alone() -> None:
    doc = prod_config()
    cfg = doc["config"]
    cfg["stamps:regions"].insert(1, {"name": "centralus", "role": "primary", "drRegion": "westus",
                                     "addressSpace": "10.30.0.0/16", "servingFrom": "dr"})
    cfg["stamps:cells"].append({"name": "central", "region": "centralus", "model": "shared", "capacity": 10,
                                "standby": {"region": "westus"}})
    env = load_environment("stamps", "prod", _values(doc))
    assert [env.serving_region(p) for p in env.primary_regions] == ["eastus", "westus"]
    assert env.failed_over_regions == ["centralus"]
    assert env.primaries_backed_by("westus") == ["eastus", "centralus"]
    # eastus keeps serving: its standbys stay at standby size; centralus's standby runs at active size.
    assert env.instance("banking", "standby").replicas.min == 1
    assert env.instance("central", "standby").replicas.min == 2
    assert (env.dns_ttl("eastus"), env.dns_ttl("centralus")) == (300, 60)


def test_schema_command_prints_json_schema(capsys: pytest.CaptureFixture[str]) -> None:
    import json

    assert main(["schema"]) == 0
    schema = json.loads(capsys.readouterr().out)
    props = schema["properties"]
    assert {"regions", "cells", "tenants", "tiers", "kpis", "alertWebhookUrl"} <= set(props)
    assert schema["$defs"]["CellConfig"]["additionalProperties"] is False


def test_missing_stack_file_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["plan", "--config-file", str(tmp_path / "nope.yaml"), "--quiet"])
    assert rc == 2
    assert "--config-file" in capsys.readouterr().err
