"""The fleet as a stack set: what the engine would do with each unit stack, and the move from one stack.

The unit stacks must hold exactly the single stack's resources (same type chain, name and inputs), or a
`pulumi state move` followed by `pulumi up` would create, replace or delete them; each StackReference
must read an output its upstream stack exports, or the engine hands the program None.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from ops.cli import main as ops_main
from stamps.cli import main as stamps_main
from stamps.errors import UsageError
from stamps.offline import Plan, plan_stack
from stamps.offline.mocks import STACK_REFERENCE, StackReferenceError
from stamps.offline.plan import diff_plans, merge_plans, type_chain
from stamps.routes import check_routes
from stamps.stacks.contracts import CONTRACTS
from stamps.stacks.fleet import plan_fleet
from stamps.stacks.split import commands, verify
from stamps.stacks.units import Unit, split_stack
from tests.conftest import ROOT, cached_plan, prod_config

_SETS: dict[str, list[Plan]] = {}


def fleet(path: Path | None = None) -> list[Plan]:
    key = path.read_text() if path else "prod"
    if key not in _SETS:
        _SETS[key] = plan_fleet(ROOT, "prod", path)
    return _SETS[key]


def by_stack(plans: list[Plan]) -> dict[str, Plan]:
    return {p.stack: p for p in plans}


def variant(tmp_path: Path, edit: Any) -> Path:
    doc = prod_config()
    edit(doc["config"])
    path = tmp_path / f"Pulumi.prod-{abs(hash(yaml.safe_dump(doc)))}.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def test_stack_names_parse_and_reject() -> None:
    assert split_stack("prod") == ("prod", None)
    assert split_stack("prod.cell.banking.eastus") == ("prod", Unit("cell", cell="banking", region="eastus"))
    assert Unit.parse("tenants.shared-smb").stack("prod") == "prod.tenants.shared-smb"
    for bad in ("cells.banking", "cell.banking", "region", "global.x", "edge.East"):
        with pytest.raises(UsageError, match="not a stack unit"):
            Unit.parse(bad)


def test_every_resource_of_the_single_stack_lands_in_exactly_one_unit_stack_unchanged() -> None:
    single = cached_plan(ROOT, "prod")
    check = verify(single, fleet())
    assert check.ok, (check.missing[:3], check.extra[:3], check.changed[:3], check.duplicated[:3])
    assert check.moved == len(single.custom())
    # What state move would move per destination is what that stack's program declares.
    for move, plan in zip(check.moves, [p for p in fleet() if p.custom()], strict=True):
        assert move.dest == plan.stack
        assert {type_chain(u) for u in move.urns} == {type_chain(r["urn"]) for r in plan.custom()}


def test_every_stack_reference_reads_outputs_its_upstream_stack_exports() -> None:
    plans = by_stack(fleet())
    for plan in plans.values():
        for ref in plan.by_type(STACK_REFERENCE):
            upstream = ref["inputs"]["name"].rsplit("/", 1)[-1]
            layer = split_stack(upstream)[1].layer  # type: ignore[union-attr]
            missing = [k for k in CONTRACTS[layer].names() if k not in plans[upstream].outputs]
            assert not missing, f"{plan.stack} reads {missing} that {upstream} does not export"
            # The reference is the fully qualified name, valid on Pulumi Cloud and DIY backends alike.
            assert ref["inputs"]["name"].count("/") == 2


def test_a_unit_planned_before_its_upstream_stack_is_refused_with_the_stack_named() -> None:
    with pytest.raises(StackReferenceError, match=r"'organization/stamps/prod\.global'"):
        plan_stack(ROOT, "prod.cell.banking.westus", stack_outputs={})


def test_unknown_unit_of_the_fleet_is_bad_input(capsys: pytest.CaptureFixture[str]) -> None:
    assert stamps_main(["plan", "--project-dir", str(ROOT), "--fleet", "prod", "--only", "cell.nope.eastus",
                        "--quiet"]) == 2
    assert "no unit 'cell.nope.eastus'" in capsys.readouterr().err


def test_routes_hold_across_the_stack_set() -> None:
    merged = merge_plans(fleet(), "prod")
    report = check_routes(merged.resources, merged.outputs)
    single = cached_plan(ROOT, "prod")
    expected = check_routes(single.resources, single.outputs)
    assert [f for f in report.findings if f.severity == "error"] == []
    assert [(t.tenant, t.verdict) for t in report.tenants] == [(t.tenant, t.verdict) for t in expected.tenants]


def changed_stacks(old: list[Plan], new: list[Plan]) -> dict[str, int]:
    before = by_stack(old)
    return {p.stack: diff_plans(before.get(p.stack, Plan(p.project, p.stack, [])), p).changed for p in new
            if not diff_plans(before.get(p.stack, Plan(p.project, p.stack, [])), p).is_empty}


def test_onboarding_touches_only_the_cells_tenant_shard_and_the_routing_map(tmp_path: Path) -> None:
    def onboard(cfg: dict[str, Any]) -> None:
        cfg["stamps:tenants"].append({"id": "newco", "tier": "basic", "email": "ops@newco.example"})

    touched = changed_stacks(fleet(), fleet(variant(tmp_path, onboard)))
    placed = next(s for s in touched if s.startswith("prod.tenants."))
    assert touched == {placed: 2, "prod.api": 1}


def test_failover_touches_routing_and_the_regions_standby_cells_only(tmp_path: Path) -> None:
    def fail_over(cfg: dict[str, Any]) -> None:
        next(r for r in cfg["stamps:regions"] if r["name"] == "eastus")["servingFrom"] = "dr"

    touched = changed_stacks(fleet(), fleet(variant(tmp_path, fail_over)))
    standbys = {f"prod.cell.{c['name']}.westus" for c in prod_config()["config"]["stamps:cells"]
                if c.get("standby")}
    assert set(touched) == {"prod.routing", *standbys}


def _retail(cfg: dict[str, Any]) -> dict[str, Any]:
    return next(c for c in cfg["stamps:cells"] if c["name"] == "retail")


@pytest.mark.parametrize(("change", "edit", "expected"), [
    # Scale and restore are the CELL's own resources (app replicas; a restored database beside the live one).
    ("scale", lambda cfg: _retail(cfg)["replicas"].update(max=20), {"prod.cell.retail.eastus"}),
    ("restore", lambda cfg: _retail(cfg).update(restores=[{"name": "r1", "pointInTime": "2026-12-05T03:00:00Z"}]),
     {"prod.cell.retail.eastus"}),
    # A canary runs on the standby too, so a failover mid-release lands on the same two revisions.
    ("release", lambda cfg: _retail(cfg).update(canary={"version": "2.0.0", "weight": 10}),
     {"prod.cell.retail.eastus", "prod.cell.retail.westus"}),
    # Isolation empties the CELL's pool on its region's gateway, which the edge stack holds.
    ("isolate", lambda cfg: _retail(cfg).update(isolation={"reason": "incident", "by": "ops", "at": "2026-12-05"}),
     {"prod.cell.retail.eastus", "prod.edge.eastus"}),
])
def test_cell_playbooks_touch_only_that_cells_stacks(tmp_path: Path, change: str, edit: Any,
                                                      expected: set[str]) -> None:
    touched = changed_stacks(fleet(), fleet(variant(tmp_path, edit)))
    assert set(touched) == expected, change


def test_fleet_wide_policy_sees_a_missing_standby_only_in_the_fleet_view() -> None:
    from stamps.policycheck import check_plan

    plans = [p for p in fleet() if p.stack != "prod.cell.banking.westus"]
    # Alone, a primary CELL's stack has nothing to say about standbys (they deploy in other stacks).
    alone = check_plan(by_stack(plans)["prod.cell.banking.eastus"])
    assert not [v for v in alone.violations if v.policy == "dr-standby-region"]
    view = merge_plans(plans, "prod (fleet view)")
    report = check_plan(view, only=("cells-without-standby",))
    assert any("banking" in v.message for v in report.violations)


def test_keyvault_data_plane_roles_follow_the_gateway_into_the_region_stack() -> None:
    from stamps.policycheck import check_plan

    plans = copy.deepcopy(fleet())
    region = by_stack(plans)["prod.region.eastus"]
    # Alone, the edge stack's gateway names an identity another stack owns: nothing to decide there.
    edge = check_plan(by_stack(plans)["prod.edge.eastus"])
    assert not [v for v in edge.violations if v.policy == "keyvault-data-plane-roles"]
    assert not check_plan(merge_plans(plans, "prod (fleet view)"), only=("keyvault-data-plane-roles",)).violations
    # The region stack without the gateway's grant: the fleet view finds the gateway that cannot read its certificate.
    region.resources[:] = [r for r in region.resources if r["name"] != "region-eastus-agw-kv-access"]
    report = check_plan(merge_plans(plans, "prod (fleet view)"), only=("keyvault-data-plane-roles",))
    assert [(v.policy, v.name) for v in report.violations] == [("keyvault-data-plane-roles", "region-eastus-agw")]


def test_split_check_reports_what_a_move_would_create_change_or_delete() -> None:
    single = cached_plan(ROOT, "prod")
    units = copy.deepcopy(fleet())
    cell = by_stack(units)["prod.cell.banking.eastus"]
    app = next(r for r in cell.resources if r["type"] == "azure-native:app:ContainerApp")
    app["inputs"]["location"] = "westus"
    dropped = cell.resources.pop(next(i for i, r in enumerate(cell.resources)
                                      if r["type"] == "azure-native:storage:StorageAccount"))
    check = verify(single, units)
    assert not check.ok
    assert [p for _, p in check.changed] == [["location"]]
    assert check.missing == [type_chain(dropped["urn"])]
    steps = commands(verify(single, fleet()), "acme/stamps/prod")
    moves = [s for s in steps if s[:3] == ["pulumi", "state", "move"]]
    assert len(moves) == sum(1 for p in fleet() if p.custom())
    assert all(s[s.index("--source") + 1] == "acme/stamps/prod" for s in moves)


def test_split_state_dry_run_prints_a_verified_sequence(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert ops_main(["split-state", "--dry-run", "--project-dir", str(project)]) == 0
    out = capsys.readouterr().out
    assert "none is created, updated or deleted" in out
    assert out.count("pulumi state move --source prod --dest prod.") == 16
    assert "pulumi stack init prod.global --no-select" in out


def test_split_state_runs_the_steps_then_records_the_units_layout(project: Path, monkeypatch: pytest.MonkeyPatch,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    import subprocess

    ran: list[list[str]] = []

    def fake_run(argv: list[str], **_: Any) -> subprocess.CompletedProcess[str]:
        ran.append(argv)
        failing = len(ran) == 5  # the 5th step fails once: the run stops there and says how to resume
        return subprocess.CompletedProcess(argv, int(failing), "", "error: backend unavailable" * failing)

    monkeypatch.setattr("ops.playbooks.split_state.subprocess.run", fake_run)
    assert ops_main(["split-state", "--project-dir", str(project)], runner_factory=lambda *a: None) == 1
    assert "--from-step 5" in capsys.readouterr().err
    assert "stamps:layout" not in yaml.safe_load((project / "Pulumi.prod.yaml").read_text())["config"]
    assert len(ran) == 5
    before = len(ran)
    assert ops_main(["split-state", "--project-dir", str(project), "--from-step", "5"],
                    runner_factory=lambda *a: None) == 0
    assert ran[before] == ran[4]  # resumed at the failed step
    assert yaml.safe_load((project / "Pulumi.prod.yaml").read_text())["config"]["stamps:layout"] == "units"


def test_routes_command_walks_the_stack_set_in_every_failover_state(capsys: pytest.CaptureFixture[str]) -> None:
    assert stamps_main(["routes", "--project-dir", str(ROOT), "--fleet", "--each-failover", "--json"]) == 0
    reports = json.loads(capsys.readouterr().out)
    assert [r["failedOver"] for r in reports] == [[], ["eastus"]]
    assert all(r["plan"].startswith("prod stack set") and r["ok"] for r in reports)
    # Failed over, every tenant of a protected CELL lands on its standby, across the stacks.
    landed = {t["tenant"]: t["role"] for t in reports[1]["tenants"] if t["verdict"] == "ok"}
    assert landed and set(landed.values()) == {"standby"}


def test_plan_fleet_writes_a_plan_per_stack_and_diffs_per_stack(tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "set"
    assert stamps_main(["plan", "--project-dir", str(ROOT), "--fleet", "prod", "--no-tree", "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == sorted(f"{p.stack}.plan.json" for p in fleet())
    capsys.readouterr()

    def scale(cfg: dict[str, Any]) -> None:
        next(c for c in cfg["stamps:cells"] if c["name"] == "retail")["replicas"]["max"] = 20

    changed = variant(tmp_path, scale)
    assert stamps_main(["plan", "--project-dir", str(ROOT), "--fleet", "prod", "--config-file", str(changed),
                        "--no-tree", "--against", str(out)]) == 0
    text = capsys.readouterr().out
    # Scaling a CELL changes its primary's stack only (its standby keeps its own size until a failover).
    assert "17 of 18 stacks unchanged" in text
    diffs = text.split(" with ", 1)[1]  # after the stacks table's caption: the per-stack diffs
    assert "prod.cell.retail.eastus" in diffs and "prod.cell.retail.westus" not in diffs
