"""Placement: least-loaded compliant shared CELL, dedicated CELLs for dedicated tiers, clear errors."""

from __future__ import annotations

import copy
import random
from typing import Any

import pytest

from stamps.config.errors import ConfigError
from stamps.config.loader import load_environment
from stamps.config.model import StampsConfig
from stamps.offline import plan_stack
from stamps.placement import PlacementError, place, placement_for, unpinned_warnings
from tests.conftest import ROOT, StackFile, prod_config


def _values() -> dict[str, Any]:
    """The prod stack's `stamps:` values (secrets left out), safe to mutate."""
    return {k.split(":", 1)[1]: v for k, v in prod_config()["config"].items()
            if k.startswith("stamps:") and not (isinstance(v, dict) and "secure" in v)}


def _cfg(values: dict[str, Any]) -> StampsConfig:
    return StampsConfig.model_validate(values)


def _with_tenant(values: dict[str, Any], **tenant: Any) -> dict[str, Any]:
    values = copy.deepcopy(values)
    values["tenants"].append({"email": f"admin@{tenant['id']}.example", **tenant})
    return values


def _shared(name: str, capacity: int, **extra: Any) -> dict[str, Any]:
    return {"name": name, "region": "eastus", "model": "shared", "capacity": capacity, **extra}


def test_prod_places_every_tenant_where_the_config_pins_it() -> None:
    result = place(_cfg(_values()))
    assert result.tenant_cells == {"startup": "shared-smb", "banking-corp": "banking", "fintech-scale": "shared-smb"}
    assert result.new_cells == ()


def test_unpinned_tenant_goes_to_the_least_loaded_cell() -> None:
    values = _values()
    values["cells"] = [_shared("aa", 10), _shared("bb", 4), _shared("cc", 100)]
    values["tenants"] = [
        {"id": "t1", "tier": "basic", "cell": "aa", "email": "a@t1.example"},  # aa 1/10
        {"id": "t2", "tier": "basic", "cell": "bb", "email": "a@t2.example"},  # bb 1/4
        {"id": "t3", "tier": "basic", "cell": "cc", "email": "a@t3.example"},
        {"id": "t4", "tier": "basic", "cell": "cc", "email": "a@t4.example"},  # cc 2/100: lowest fill
        {"id": "new", "tier": "basic", "email": "a@new.example"},
    ]
    assert placement_for(_cfg(values), "new").cell == "cc"


def test_full_cell_is_skipped_and_all_full_is_an_error_naming_the_tenant() -> None:
    values = _values()
    values["cells"] = [_shared("aa", 1), _shared("bb", 2)]
    values["tenants"] = [
        {"id": "t1", "tier": "basic", "cell": "aa", "email": "a@t1.example"},
        {"id": "t2", "tier": "basic", "email": "a@t2.example"},
        {"id": "t3", "tier": "basic", "email": "a@t3.example"},
        {"id": "t4", "tier": "premium", "email": "a@t4.example"},
    ]
    with pytest.raises(PlacementError) as err:
        place(_cfg(values))
    msg = str(err.value)
    assert msg.startswith("stamps:tenants[3]: no shared CELL in eastus can take tenant 't4'")
    assert "aa is full (1/1)" in msg and "bb is full (2/2)" in msg
    values["tenants"].pop()
    assert place(_cfg(values)).tenant_cells == {"t1": "aa", "t2": "bb", "t3": "bb"}


def test_pinned_tenants_keep_their_room_even_when_listed_last() -> None:
    values = _values()
    values["cells"] = [_shared("aa", 1), _shared("bb", 1)]
    values["tenants"] = [
        {"id": "t1", "tier": "basic", "email": "a@t1.example"},
        {"id": "t2", "tier": "basic", "cell": "aa", "email": "a@t2.example"},
    ]
    assert place(_cfg(values)).tenant_cells == {"t1": "bb", "t2": "aa"}


def test_compliance_mismatch() -> None:
    # prod: only healthcare covers hipaa; no shared CELL covers pci-dss.
    hipaa = _with_tenant(_values(), id="clinic", tier="basic", compliance=["hipaa"])
    assert placement_for(_cfg(hipaa), "clinic").cell == "healthcare"
    pci = _with_tenant(_values(), id="payco", tier="premium", compliance=["pci-dss"])
    with pytest.raises(PlacementError) as err:
        place(_cfg(pci))
    msg = str(err.value)
    assert msg.startswith("stamps:tenants[3]: no shared CELL in eastus can take tenant 'payco'")
    assert "needs compliance ['pci-dss']" in msg
    for cell in ("retail", "healthcare", "shared-smb"):
        assert f"{cell} lacks ['pci-dss']" in msg
    # The same error reaches `stamps plan` as a config error.
    with pytest.raises(ConfigError) as cerr:
        load_environment("stamps", "prod", pci)
    assert cerr.value.problems == [msg]


def test_tie_break_is_deterministic_and_spares_compliant_cells() -> None:
    values = _with_tenant(_values(), id="newco", tier="basic")
    # prod: retail 0/50 and healthcare (hipaa) 0/25 tie on load; a tenant without needs takes retail.
    assert placement_for(_cfg(values), "newco").cell == "retail"
    values["cells"] = [_shared(n, 5) for n in ("delta", "alpha", "charlie", "bravo")]
    values["tenants"] = [{"id": "newco", "tier": "basic", "email": "a@newco.example"}]
    rng = random.Random(7)
    for _ in range(5):
        rng.shuffle(values["cells"])
        assert placement_for(_cfg(values), "newco").cell == "alpha"


def test_isolated_cell_takes_no_new_tenant() -> None:
    values = _with_tenant(_values(), id="newco", tier="basic")
    isolation = {"reason": "investigation", "by": "sre", "at": "2026-01-01T00:00:00Z"}
    for cell in values["cells"]:
        if cell["name"] in {"retail", "healthcare"}:  # the two empty, least-loaded CELLs
            cell["isolation"] = isolation
    assert placement_for(_cfg(values), "newco").cell == "shared-smb"
    next(c for c in values["cells"] if c["name"] == "shared-smb")["isolation"] = isolation
    with pytest.raises(PlacementError, match=r"shared-smb is isolated \(investigation\)"):
        place(_cfg(values))


def test_enterprise_tenant_gets_a_dedicated_cell() -> None:
    values = _with_tenant(_values(), id="megabank", tier="enterprise", compliance=["pci-dss"])
    where = placement_for(_cfg(values), "megabank")
    assert (where.cell, where.key, where.pinned) == ("megabank", "stamps:tenants[3]", False)
    cell = where.new_cell
    assert cell is not None
    assert (cell.name, cell.model, cell.capacity, cell.region) == ("megabank", "dedicated", 1, "eastus")
    assert cell.compliance == ["pci-dss"]
    assert cell.standby is not None and cell.standby.region == "westus"
    # The environment deploys it like any configured CELL.
    env = load_environment("stamps", "prod", values)
    assert [i.key for i in env.instances if i.name == "megabank"] == ["megabank-eus", "megabank-wus"]


def test_enterprise_tenant_reuses_its_unused_dedicated_cell() -> None:
    values = _with_tenant(_values(), id="megabank", tier="enterprise")
    values["cells"].append({"name": "megabank", "region": "eastus", "model": "dedicated"})
    where = placement_for(_cfg(values), "megabank")
    assert (where.cell, where.new_cell) == ("megabank", None)


def test_enterprise_tenant_named_like_a_shared_cell_is_an_error() -> None:
    values = _with_tenant(_values(), id="retail", tier="enterprise")
    with pytest.raises(PlacementError) as err:
        place(_cfg(values))
    assert str(err.value).startswith("stamps:tenants[3].cell: tenant 'retail' needs a dedicated CELL")
    assert "it is shared" in str(err.value)


def test_placement_for_names_missing_tenants_and_unknown_tiers() -> None:
    with pytest.raises(PlacementError, match=r"stamps:tenants: no tenant with id 'ghost'"):
        placement_for(_cfg(_values()), "ghost")
    values = _with_tenant(_values(), id="newco", tier="gold")
    with pytest.raises(PlacementError, match=r"stamps:tenants\[3\]\.tier: unknown tier 'gold'"):
        place(_cfg(values))


def test_pinned_tenant_reports_its_cell() -> None:
    where = placement_for(_cfg(_values()), "banking-corp")
    assert (where.cell, where.pinned, where.new_cell) == ("banking", True, None)


def test_an_unpinned_tenant_moves_when_another_is_onboarded_so_the_plan_names_its_pin(
    stack_file: StackFile, caplog: pytest.LogCaptureFixture
) -> None:
    values = _values()
    values["cells"] = [_shared("aa", 10), _shared("bb", 10)]
    values["tenants"] = [
        {"id": "t1", "tier": "basic", "cell": "aa", "email": "a@t1.example"},
        {"id": "loose", "tier": "basic", "email": "a@loose.example"},  # bb: aa already has one
    ]
    cfg = _cfg(values)
    cells = place(cfg).tenant_cells
    assert cells["loose"] == "bb"
    (warning,) = unpinned_warnings(cfg, cells)
    assert "stamps:tenants[1].cell: bb" in warning
    # What the warning is about: a tenant onboarded into bb ties aa and bb, and the name breaks the tie.
    onboarded = _with_tenant(values, id="t2", tier="basic", cell="bb")
    assert place(_cfg(onboarded)).tenant_cells["loose"] == "aa"  # routed to a CELL without its data
    # Pinned as the warning says, it stays, and nothing is left to warn about.
    onboarded["tenants"][1]["cell"] = "bb"
    assert place(_cfg(onboarded)).tenant_cells["loose"] == "bb"
    assert unpinned_warnings(_cfg(onboarded), place(_cfg(onboarded)).tenant_cells) == []
    assert unpinned_warnings(_cfg({**values, "environment": "dev"}), cells) == []  # dev re-places freely

    def unpin(doc: dict[str, Any]) -> None:
        del doc["stamps:tenants"][0]["cell"]

    plan_stack(ROOT, "prod", stack_file(unpin))
    warned = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any("1 tenant(s) have no `cell:`" in w and "pin them where they are now: stamps:tenants[0].cell: " in w
               for w in warned)
