"""Playbooks on a fleet deployed as unit stacks (stamps:layout: units): each updates only the stacks its
change touches (the stand-in CLI records which), under those stacks' own locks, and the fleet file records
the change only after every one of them succeeded."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from ops.cli import main as ops_main
from ops.stackconfig import stack_lock
from tests.conftest import ROOT
from tests.test_fleet_deploy import Fleet


@pytest.fixture
def units(tmp_path: Path) -> Path:
    """A project copy whose fleet is deployed as unit stacks."""
    dest = tmp_path / "project"
    dest.mkdir()
    for name in ("Pulumi.yaml", "__main__.py"):
        shutil.copy(ROOT / name, dest / name)
    (dest / "stamps").symlink_to(ROOT / "stamps")
    doc = yaml.safe_load((ROOT / "Pulumi.prod.yaml").read_text())
    doc["config"]["stamps:layout"] = "units"
    (dest / "Pulumi.prod.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    return dest


ONBOARD = ("--email", "ops@newco.example", "--cell", "shared-smb")


def run(project: Path, fleet: Fleet, *argv: str) -> int:
    from ops.tenant_directory import LocalTenantDirectory

    return ops_main([*argv, "--project-dir", str(project), "--no-policy"], runner_factory=fleet.factory,
                    directory_factory=lambda: LocalTenantDirectory(project / ".stamps" / "directory.json"))


def tenants(project: Path) -> list[str]:
    return [t["id"] for t in yaml.safe_load((project / "Pulumi.prod.yaml").read_text())["config"]["stamps:tenants"]]


def test_onboarding_updates_only_the_cells_tenant_shard_and_the_api_stack(units: Path) -> None:
    fleet = Fleet()
    assert run(units, fleet, "onboard", "newco", "--tier", "basic", *ONBOARD) == 0
    assert sorted(fleet.order) == ["prod.api", "prod.tenants.shared-smb"]
    # Each updated stack's program read the edited fleet file (through $STAMPS_FLEET_FILE), not the old one.
    shard = fleet.fakes["prod.tenants.shared-smb"]
    assert "newco" in shard.fleet_files[-1]
    assert "newco" in tenants(units)


def test_a_failed_stack_leaves_the_fleet_file_as_it_was(units: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fleet = Fleet(fail={"prod.tenants.shared-smb"})
    assert run(units, fleet, "onboard", "newco", "--tier", "basic", *ONBOARD) == 1
    assert "newco" not in tenants(units)
    assert "is unchanged" in capsys.readouterr().err
    again = Fleet()
    assert run(units, again, "onboard", "newco", "--tier", "basic", *ONBOARD) == 0
    assert "newco" in tenants(units)


def test_failover_updates_routing_and_the_regions_standby_cells_only(units: Path) -> None:
    fleet = Fleet()
    assert run(units, fleet, "failover", "--region", "eastus", "--force",
               "--accept-unprotected", "shared-smb") == 0
    standbys = {f"prod.cell.{c}.westus" for c in ("banking", "retail", "healthcare")}
    assert set(fleet.order) == {"prod.routing", *standbys}
    # Routing is updated after the standbys it sends traffic to are at their active size.
    assert fleet.order.index("prod.routing") > max(fleet.order.index(s) for s in standbys)


def test_a_locked_stack_blocks_only_changes_that_touch_it(units: Path) -> None:
    with stack_lock(units, "prod.routing", holder="another failover"):
        fleet = Fleet()
        assert run(units, fleet, "onboard", "newco", "--tier", "basic", *ONBOARD) == 0
        assert sorted(fleet.order) == ["prod.api", "prod.tenants.shared-smb"]
        blocked = Fleet()
        assert run(units, blocked, "failover", "--region", "eastus", "--force",
                   "--accept-unprotected", "shared-smb") != 0
        assert blocked.order == []


def test_dry_run_shows_the_diff_per_stack_and_changes_nothing(units: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    before = (units / "Pulumi.prod.yaml").read_text()
    fleet = Fleet()
    assert run(units, fleet, "onboard", "newco", "--tier", "basic", *ONBOARD,
               "--dry-run") == 0
    out = capsys.readouterr().out
    assert "stacks changed: prod.api, prod.tenants.shared-smb (2 of 18)" in out
    assert fleet.order == [] and (units / "Pulumi.prod.yaml").read_text() == before


def test_a_single_stack_update_is_refused_once_the_fleet_is_units() -> None:
    from stamps.config.errors import ConfigError
    from stamps.program import check_layout
    from stamps.stacks.units import Unit

    check_layout("units", "prod", None, preview=True)  # a preview is how a move is reviewed
    with pytest.raises(ConfigError, match="deployed as unit stacks"):
        check_layout("units", "prod", None, preview=False)
    with pytest.raises(ConfigError, match="split-state"):
        check_layout("single", "prod.global", Unit("global"), preview=False)


def test_a_tenant_changing_cell_keeps_its_apim_subscription_by_a_state_move(units: Path) -> None:
    import io

    from rich.console import Console

    from ops.playbooks.base import Context

    fleet = Fleet()
    ctx = Context(project_dir=units, stack="prod", dry_run=False, runner=None,  # type: ignore[arg-type]
                  console=Console(file=io.StringIO()), runner_kind="automation",
                  stack_runner=lambda s: fleet.factory(units, s, False, "automation"))
    ctx.apply("move fintech-scale", lambda cfg: cfg.set("stamps:tenants[id=fintech-scale].cell", "retail"))
    calls = fleet.fakes["prod.tenants.shared-smb"].argv()
    move = next(c for c in calls if c[:2] == ["state", "move"])
    assert move[:7] == ["state", "move", "--source", "prod.tenants.shared-smb", "--dest", "prod.tenants.retail",
                        "--yes"]
    assert sorted(u.rsplit("::", 1)[-1] for u in move[7:]) == ["tenants-sub-fintech-scale",
                                                              "tenants-user-fintech-scale"]
    # The move comes first: when the shards update, the subscription is already where it is declared.
    assert calls.index(move) < next(i for i, c in enumerate(calls) if c[0] == "up")
    assert set(fleet.order) == {"prod.api", "prod.tenants.shared-smb", "prod.tenants.retail"}
