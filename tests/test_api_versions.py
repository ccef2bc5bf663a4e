"""Every resource the program deploys uses the Azure REST API version the project reviewed: an SDK upgrade that
moves a type's default (to a preview, or to a version with different defaults) fails here, not in production."""

from __future__ import annotations

import tomllib

import pytest

from benchmarks.fleets import fleet_doc
from stamps.api_versions import EXPECTED, sdk_api_version
from stamps.components.base import SLEEP_TYPE
from stamps.offline import Plan, plan_stack
from tests.conftest import ROOT, StackFile


@pytest.mark.parametrize("type_token", sorted(EXPECTED))
def test_the_installed_sdk_uses_the_expected_api_version(type_token: str) -> None:
    assert sdk_api_version(type_token) == EXPECTED[type_token], (
        f"{type_token}: the SDK now uses {sdk_api_version(type_token)}; review the change and update "
        "stamps/api_versions.py")


def test_every_planned_type_has_an_expected_api_version(prod_plan: Plan, stack_file: StackFile) -> None:
    fleet = plan_stack(ROOT, "prod", stack_file(doc=fleet_doc("M")))
    planned = {r["type"] for plan in (prod_plan, fleet) for r in plan.custom()}
    # The one resource outside Azure: the time provider's Sleep, whose behaviour moves only with the
    # pulumiverse-time version pyproject.toml bounds (and the workflow's plugin cache key names).
    assert planned - set(EXPECTED) == {SLEEP_TYPE}
    pins = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert any(p.startswith("pulumiverse-time") and "<" in p for p in pins)


def test_the_reader_finds_a_version_in_a_class_docstring() -> None:
    # The check cannot pass vacuously: an unknown answer would compare None with the table.
    assert sdk_api_version("azure-native:sql:Server") == "2023-08-01"
    assert all(sdk_api_version(t) for t in EXPECTED)
