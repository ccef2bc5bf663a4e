"""`stamps-ops failover-storage`: after a regional failover the standby CELLs use their primary's geo-redundant
storage account, whose endpoint answers again once a customer-managed account failover makes the copy in the paired
region the primary (learn.microsoft.com/azure/storage/common/storage-disaster-recovery-guidance). Through ops.arm's
ArmWriter against the local fake ARM, shaped as the REST reference documents it: GET the account with
`$expand=geoReplicationStats` (primaryLocation, lastSyncTime), `POST .../failover` answering 202 + Location
(learn.microsoft.com/rest/api/storagerp/storage-accounts/failover)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ops.arm import ArmWriter
from ops.cli import main
from ops.runner import OfflineRunner
from stamps.offline.mocks import SUBSCRIPTION_ID
from tests.conftest import cached_plan
from tests.fake_arm import FakeArm, FakeResponse, RecordedRequest, RecordingTransport, serving
from tests.test_restore_data import FAST, NOW, SUB

CELLS = {"banking": "stbankingeusa57dd", "retail": "stretaileusa57dd", "healthcare": "sthealthcareeusa57dd"}


def account_id(cell: str) -> str:
    return f"{SUB}/resourceGroups/rg-stamps-prod-cell-{cell}-eus/providers/Microsoft.Storage/storageAccounts/" \
           f"{CELLS[cell]}"


@pytest.fixture
def arm(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeArm]:
    with serving(monkeypatch, subscription_id=SUBSCRIPTION_ID) as fake:
        yield fake


class Accounts:
    def __init__(self, arm: FakeArm, *, done: tuple[str, ...] = (), sku: str = "Standard_GZRS") -> None:
        self.arm = arm
        self.where = {c: ("westus" if c in done else "eastus") for c in CELLS}
        self.sku = sku
        for cell in CELLS:
            arm.add_route("GET", account_id(cell), lambda req, c=cell: self.account(c))
            arm.add_route("POST", f"{account_id(cell)}/failover", lambda req, c=cell: self.fail_over(c, req))
            arm.add_route("GET", f"{SUB}/providers/Microsoft.Storage/locations/eastus/asyncoperations/fo-{cell}",
                          lambda req: FakeResponse(200, None))

    def account(self, cell: str) -> FakeResponse:
        return FakeResponse(200, {"id": account_id(cell), "sku": {"name": self.sku}, "properties": {
            "primaryLocation": self.where[cell], "secondaryLocation": "westus",
            "geoReplicationStats": {"status": "Live", "lastSyncTime": "2026-11-27T11:52:00Z"}}})

    def fail_over(self, cell: str, req: RecordedRequest) -> FakeResponse:
        self.where[cell] = "westus"
        return FakeResponse(202, None, {"Retry-After": "0", "Location":
                            f"{self.arm.base_url}{SUB}/providers/Microsoft.Storage/locations/eastus/asyncoperations/"
                            f"fo-{cell}?api-version=2024-01-01"})


class Down:
    """Azure Monitor's verdict on every Traffic Manager endpoint: down (the region is out)."""

    def endpoint_health(self, profile_id: str, endpoint: str) -> bool:
        return False


def run(project: Path, arm: FakeArm, *argv: str) -> int:
    def writer() -> ArmWriter:
        return ArmWriter(arm_endpoint=arm.base_url, retry=FAST, polling_interval=0,
                         transport=RecordingTransport(connection_verify=arm.ca_file))

    return main([*argv, "--project-dir", str(project), "--runner", "offline", "--actor", "sre-alice"],
                runner_factory=lambda *_: OfflineRunner(project, "prod", plan_stack=cached_plan),
                arm_factory=writer, metrics_factory=Down, now=lambda: NOW, sleep=lambda s: None)


def audit_events(project: Path) -> list[dict[str, Any]]:
    path = project / ".stamps" / "audit" / "prod.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_each_geo_redundant_account_of_the_region_fails_over_once(
        project: Path, arm: FakeArm, capsys: pytest.CaptureFixture[str]) -> None:
    Accounts(arm)
    assert run(project, arm, "failover-storage", "--region", "eastus", "--wait") == 0
    out = capsys.readouterr().out
    # The three CELLs with a standby; shared-smb has none, so its blobs have no geo copy to fail over to.
    posts = [r for r in arm.requests if r.method == "POST"]
    assert sorted(r.path for r in posts) == sorted(f"{account_id(c)}/failover" for c in CELLS)
    assert all(r.query["api-version"] == "2024-01-01" and not r.body for r in posts)
    gets = [r for r in arm.requests if r.method == "GET" and r.path == account_id("banking")]
    assert gets[0].query["$expand"] == "geoReplicationStats"
    assert "after 2026-11-27T11:52:00Z (its Last Sync Time) are lost" in out
    assert [e["event"] for e in audit_events(project)] == ["storage-failed-over"] * 3
    # A re-run finds every account's primary in the paired region already and fails nothing over twice.
    assert run(project, arm, "failover-storage", "--region", "eastus") == 0
    assert len([r for r in arm.requests if r.method == "POST"]) == 3
    assert capsys.readouterr().out.count("its primary is westus already") == 3


def test_without_wait_the_failover_is_started_and_followed_by_url(
        project: Path, arm: FakeArm, capsys: pytest.CaptureFixture[str]) -> None:
    Accounts(arm, done=("banking", "retail"))
    assert run(project, arm, "failover-storage", "--region", "eastus") == 0
    assert [r.path for r in arm.requests if r.method == "POST"] == [f"{account_id('healthcare')}/failover"]
    assert "asyncoperations/fo-healthcare" in capsys.readouterr().out
    assert [e["event"] for e in audit_events(project)] == ["storage-failover-started"]


def test_an_account_without_a_geo_copy_is_refused_by_name(
        project: Path, arm: FakeArm, capsys: pytest.CaptureFixture[str]) -> None:
    Accounts(arm, sku="Standard_ZRS")
    assert run(project, arm, "failover-storage", "--region", "eastus") == 1
    assert "stbankingeusa57dd is Standard_ZRS: it has no geo copy to fail over to" in capsys.readouterr().err
    assert not [r for r in arm.requests if r.method == "POST"]


def test_the_dry_run_prints_each_call_and_the_failover_names_the_step(
        project: Path, arm: FakeArm, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(project, arm, "failover-storage", "--region", "eastus", "--dry-run") == 0
    out = capsys.readouterr().out
    for cell in CELLS:
        assert f"POST {account_id(cell)}/failover?api-version=2024-01-01" in out
    assert arm.requests == []
    assert run(project, arm, "failover", "--region", "eastus", "--accept-unprotected", "shared-smb") == 0
    out = capsys.readouterr().out
    assert "stamps-ops failover-storage --region eastus" in out
    assert all(c in out.split("failover-storage")[0].rsplit("blobs of", 1)[1] for c in CELLS)
