"""Capacity: headroom per CELL, per-region growth projection and its warnings, and `stamps capacity`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from stamps.capacity import capacity_report, projected
from stamps.cli import main
from stamps.config.loader import load_environment
from stamps.environment import Environment
from tests.conftest import ROOT, prod_config


def _values(mutate: Any = None) -> dict[str, Any]:
    doc = prod_config()
    if mutate is not None:
        mutate(doc["config"])
    return {k.split(":", 1)[1]: v for k, v in doc["config"].items()
            if k.startswith("stamps:") and not (isinstance(v, dict) and "secure" in v)}


def _env(mutate: Any = None) -> Environment:
    return load_environment("stamps", "prod", _values(mutate))


def _small_eastus(capacity: int, tenants: int) -> Any:
    """eastus with one shared CELL of `capacity` holding `tenants` pinned basic tenants."""
    def mutate(cfg: dict[str, Any]) -> None:
        cfg["stamps:cells"] = [{"name": "pool", "region": "eastus", "model": "shared", "capacity": capacity}]
        cfg["stamps:tenants"] = [{"id": f"t{i}", "tier": "basic", "cell": "pool", "email": f"a@t{i}.example"}
                                 for i in range(tenants)]
    return mutate


def test_prod_cells_headroom() -> None:
    report = capacity_report(_env())
    cells = {c.cell: c for c in report.cells}
    assert (cells["shared-smb"].used, cells["shared-smb"].capacity, cells["shared-smb"].headroom) == (2, 100, 98)
    assert cells["shared-smb"].tenants == ("startup", "fintech-scale")
    assert (cells["banking"].used, cells["banking"].headroom, cells["banking"].fill_percent) == (1, 0, 100.0)
    assert cells["retail"].standby_region == "westus" and cells["shared-smb"].standby_region is None
    (eastus,) = report.regions  # only primary regions have CELLs of their own
    assert (eastus.shared_tenants, eastus.shared_capacity, eastus.headroom) == (2, 175, 173)
    # prod growth: +150% at 6 months, +400% at 12.
    assert [(p.horizon, p.shared_tenants, p.dedicated_tenants) for p in eastus.projections] == [
        ("6months", 5, 3), ("12months", 10, 5)]
    assert report.warnings == ()


@pytest.mark.parametrize(("current", "growth", "want"), [
    (50, 10, 55),  # float arithmetic gives 55.00000000000001 and would round up to 56
    (25, 120, 55),  # ... and 55.00000000000001 → 56 here too
    (2, 150, 5), (3, 33.3, 4), (0, 400, 0), (7, 0, 7),
])
def test_projection_rounds_up_exactly(current: int, growth: float, want: int) -> None:
    assert projected(current, growth) == want


@pytest.mark.parametrize(("capacity", "horizon"), [(4, "6months"), (6, "12months"), (10, None)])
def test_region_running_out_is_warned_at_the_first_horizon(capacity: int, horizon: str | None) -> None:
    # 2 shared tenants: 5 projected at 6 months, 10 at 12 months.
    report = capacity_report(_env(_small_eastus(capacity, 2)))
    shortfalls = [w for w in report.warnings if "run out" in w]
    if horizon is None:
        assert shortfalls == []
        return
    (warning,) = shortfalls
    assert warning.startswith(f"eastus: shared CELLs run out within {horizon}: 2 shared tenants")
    assert f"> capacity {capacity}" in warning


def test_growth_applies_per_region() -> None:
    def two_regions(cfg: dict[str, Any]) -> None:
        cfg["stamps:regions"] += [
            {"name": "northeurope", "role": "primary", "drRegion": "westeurope", "addressSpace": "10.30.0.0/16"},
            {"name": "westeurope", "role": "dr", "addressSpace": "10.40.0.0/16"},
        ]
        cfg["stamps:cells"] = [
            {"name": "us-pool", "region": "eastus", "model": "shared", "capacity": 100},
            {"name": "eu-pool", "region": "northeurope", "model": "shared", "capacity": 8},
        ]
        cfg["stamps:tenants"] = (
            [{"id": f"us{i}", "tier": "basic", "cell": "us-pool", "email": f"a@us{i}.example"} for i in range(3)]
            + [{"id": f"eu{i}", "tier": "basic", "cell": "eu-pool", "email": f"a@eu{i}.example"} for i in range(3)]
        )

    report = capacity_report(_env(two_regions))
    regions = {r.region: r for r in report.regions}
    assert set(regions) == {"eastus", "northeurope"}
    # Each region grows from its own tenants: 3 → 8 → 15 in both, but only northeurope has 8 places.
    assert [p.shared_tenants for p in regions["northeurope"].projections] == [8, 15]
    assert [p.shortfall for p in regions["northeurope"].projections] == [0, 7]
    assert [p.shortfall for p in regions["eastus"].projections] == [0, 0]
    assert [w.split(":")[0] for w in report.warnings] == ["northeurope"]


def test_unpinned_tenants_are_warned_with_the_cell_to_pin() -> None:
    def unpinned(cfg: dict[str, Any]) -> None:
        cfg["stamps:tenants"] += [
            {"id": "newco", "tier": "basic", "email": "a@newco.example"},
            {"id": "megabank", "tier": "enterprise", "email": "a@megabank.example"},
        ]

    report = capacity_report(_env(unpinned))
    assert report.warnings == (
        "stamps:tenants[3] (newco): no cell: pinned; placement chose 'retail' this run. Pin it (cell: retail) "
        "so a later config change never moves it",
        "stamps:tenants[4] (megabank): no cell: pinned; placement chose 'megabank' this run. Pin it "
        "(cell: megabank) and add its dedicated CELL 'megabank' under stamps:cells so a later config change "
        "never moves it",
    )
    cells = {c.cell: c for c in report.cells}
    assert cells["megabank"].configured is False and cells["megabank"].tenants == ("megabank",)


def test_isolated_cell_has_no_headroom() -> None:
    def isolate(cfg: dict[str, Any]) -> None:
        smb = next(c for c in cfg["stamps:cells"] if c["name"] == "shared-smb")
        smb["isolation"] = {"reason": "breach", "by": "sre", "at": "2026-01-01T00:00:00Z"}

    report = capacity_report(_env(isolate))
    smb = next(c for c in report.cells if c.cell == "shared-smb")
    assert (smb.isolated, smb.headroom) == (True, 0)
    assert any(w.startswith("CELL shared-smb: isolated with 2 tenants") for w in report.warnings)


# --- the command ---------------------------------------------------------------------------------------------


def _stack_file(tmp_path: Path, mutate: Any) -> Path:
    doc = prod_config()
    mutate(doc["config"])
    path = tmp_path / "Pulumi.cap.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def test_command_prints_tables_and_exits_zero_with_warnings(tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    path = _stack_file(tmp_path, _small_eastus(4, 2))
    assert main(["capacity", "--project-dir", str(ROOT), "--config-file", str(path)]) == 0
    out, err = capsys.readouterr()
    assert "CELL capacity" in out and "pool" in out and "2/4" in out
    assert "warning: eastus: shared CELLs run out within 6months" in err


def test_command_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _stack_file(tmp_path, _small_eastus(4, 2))
    assert main(["capacity", "--project-dir", str(ROOT), "--config-file", str(path), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["stack"] == "prod"
    assert data["cells"] == [{
        "cell": "pool", "region": "eastus", "model": "shared", "capacity": 4, "tenants": ["t0", "t1"], "used": 2,
        "headroom": 2, "fillPercent": 50.0, "compliance": [], "isolated": False, "standbyRegion": None,
        "configured": True,
    }]
    (region,) = data["regions"]
    assert [(p["horizon"], p["sharedTenants"], p["runsOut"]) for p in region["projections"]] == [
        ("6months", 5, True), ("12months", 10, True)]
    assert len(data["warnings"]) == 1


def test_command_default_stack_is_prod(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["capacity", "--project-dir", str(ROOT), "--json"]) == 0
    assert {c["cell"] for c in json.loads(capsys.readouterr().out)["cells"]} == {
        "banking", "retail", "healthcare", "shared-smb"}


def test_command_reports_config_errors_with_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    def full(cfg: dict[str, Any]) -> None:
        _small_eastus(1, 1)(cfg)
        cfg["stamps:tenants"].append({"id": "late", "tier": "basic", "email": "a@late.example"})

    path = _stack_file(tmp_path, full)
    assert main(["capacity", "--project-dir", str(ROOT), "--config-file", str(path)]) == 2
    assert "stamps:tenants[1]: no shared CELL in eastus can take tenant 'late'" in capsys.readouterr().err
    assert main(["capacity", "--project-dir", str(ROOT), "--config-file", str(tmp_path / "nope.yaml")]) == 2
