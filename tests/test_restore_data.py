"""`stamps-ops restore-data`: the blob and directory restores run as Azure Resource Manager operations through
ops.arm's ArmWriter (azure-core pipeline, DefaultAzureCredential, azure-mgmt-core's ARMPolling) against the local
fake ARM, shaped as the REST reference documents them:
- POST .../storageAccounts/{a}/restoreBlobRanges answers 202 + Location; the location answers 202 while it runs,
  then 200 with a BlobRestoreStatus (learn.microsoft.com/rest/api/storagerp/storage-accounts/restore-blob-ranges).
- PUT .../databaseAccounts/{new} (createMode Restore, restoreSource = the live account's restorable instance id
  from .../locations/{l}/restorableDatabaseAccounts) answers 200 + Azure-AsyncOperation; the operation answers
  InProgress, then Succeeded (learn.microsoft.com/azure/cosmos-db/restore-account-continuous-backup)."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ops.arm import ArmWriter
from ops.azure_monitor import RetrySettings
from ops.cli import main
from ops.runner import OfflineRunner
from stamps.offline.mocks import SUBSCRIPTION_ID
from tests.conftest import cached_plan
from tests.fake_arm import FakeArm, FakeResponse, RecordedRequest, RecordingTransport, serving

NOW = dt.datetime(2026, 11, 27, 12, 0, tzinfo=dt.UTC)
TO = "2026-11-26T03:00:00Z"
SUB = f"/subscriptions/{SUBSCRIPTION_ID}"
ACCOUNT = f"{SUB}/resourceGroups/rg-stamps-prod-cell-banking-eus/providers/Microsoft.Storage/storageAccounts/" \
          "stbankingeusa57dd"
LIVE = "cosmos-stamps-prod-a57dd"
TARGET = f"{SUB}/resourceGroups/rg-stamps-prod-global/providers/Microsoft.DocumentDB/databaseAccounts/" \
         f"{LIVE}-r202611"
RESTORABLE = f"{SUB}/providers/Microsoft.DocumentDB/locations/eastus/restorableDatabaseAccounts"
INSTANCE = f"{RESTORABLE}/7d5a2a8e-0000-4c1b-9e0e-1a2b3c4d5e6f"
FAST = RetrySettings(total=2, backoff_factor=0.1, backoff_max=1.0, max_retry_after=5.0, timeout=30.0)


class Azure:
    """The Azure side of one CELL's data: a storage account with a restore policy and a restorable directory."""

    def __init__(self, arm: FakeArm, *, restore_policy: bool = True, blob_outcome: str = "Complete",
                 target_exists: bool = False) -> None:
        self.arm = arm
        self.target_exists = target_exists
        self.polls = {"blob": 0, "cosmos": 0}
        self.blob_outcome = blob_outcome
        arm.set_resource(f"{ACCOUNT}/blobServices/default", {"properties": {
            "isVersioningEnabled": True, "restorePolicy": {"enabled": restore_policy, "days": 7}}})
        arm.set_collection(RESTORABLE, [
            {"id": f"{RESTORABLE}/0badc0de-0000-0000-0000-000000000000", "name": "0badc0de",
             "properties": {"accountName": LIVE, "creationTime": "2025-01-01T00:00:00Z",
                            "deletionTime": "2025-06-01T00:00:00Z"}},  # an earlier, deleted account of that name
            {"id": INSTANCE, "name": INSTANCE.rsplit("/", 1)[1],
             "properties": {"accountName": LIVE, "creationTime": "2026-02-01T00:00:00Z"}},
            {"id": f"{RESTORABLE}/other", "name": "other",
             "properties": {"accountName": "cosmos-someone-else", "creationTime": "2026-02-01T00:00:00Z"}},
        ], page_size=2)
        arm.add_route("POST", f"{ACCOUNT}/restoreBlobRanges", self.start_blob_restore)
        arm.add_route("GET", f"{SUB}/providers/Microsoft.Storage/locations/eastus/asyncoperations/blob-op",
                      self.blob_status)
        arm.add_route("GET", TARGET, self.target)
        arm.add_route("PUT", TARGET, self.start_cosmos_restore)
        arm.add_route("GET", f"{SUB}/providers/Microsoft.DocumentDB/locations/eastus/operationsStatus/cosmos-op",
                      self.cosmos_status)

    def url(self, path: str, api: str) -> str:
        return f"{self.arm.base_url}{path}?api-version={api}"

    def start_blob_restore(self, req: RecordedRequest) -> FakeResponse:
        return FakeResponse(202, {"status": "InProgress", "restoreId": "r-1", "parameters": req.json()}, {
            "Location": self.url(f"{SUB}/providers/Microsoft.Storage/locations/eastus/asyncoperations/blob-op",
                                 "2024-01-01"), "Retry-After": "0"})

    def blob_status(self, _req: RecordedRequest) -> FakeResponse:
        self.polls["blob"] += 1
        if self.polls["blob"] < 2:
            return FakeResponse(202, None, {"Retry-After": "0"})
        body = {"status": self.blob_outcome, "restoreId": "r-1"}
        if self.blob_outcome == "Failed":
            body["failureReason"] = "a blob range is under a legal hold"
        return FakeResponse(200, body)

    def target(self, _req: RecordedRequest) -> FakeResponse:
        if self.target_exists:
            return FakeResponse(200, {"id": TARGET, "properties": {"provisioningState": "Succeeded"}})
        return FakeResponse(404, {"error": {"code": "ResourceNotFound", "message": "not found"}})

    def start_cosmos_restore(self, req: RecordedRequest) -> FakeResponse:
        self.target_exists = True
        return FakeResponse(200, {"id": TARGET, "properties": {"provisioningState": "Creating"}}, {
            "Azure-AsyncOperation": self.url(
                f"{SUB}/providers/Microsoft.DocumentDB/locations/eastus/operationsStatus/cosmos-op", "2025-10-15"),
            "Retry-After": "0"})

    def cosmos_status(self, _req: RecordedRequest) -> FakeResponse:
        self.polls["cosmos"] += 1
        return FakeResponse(200, {"status": "InProgress" if self.polls["cosmos"] < 2 else "Succeeded"})


@pytest.fixture
def arm(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeArm]:
    with serving(monkeypatch, subscription_id=SUBSCRIPTION_ID) as fake:
        yield fake


def run(project: Path, arm: FakeArm, *argv: str) -> int:
    def writer() -> ArmWriter:
        return ArmWriter(arm_endpoint=arm.base_url, retry=FAST, polling_interval=0,
                         transport=RecordingTransport(connection_verify=arm.ca_file))

    return main(["restore-data", "banking", "--to", TO, *argv, "--project-dir", str(project), "--runner", "offline",
                 "--actor", "sre-alice"],
                runner_factory=lambda *_: OfflineRunner(project, "prod", plan_stack=cached_plan),
                arm_factory=writer, now=lambda: NOW, sleep=lambda s: None)


def audit_events(project: Path) -> list[dict[str, Any]]:
    path = project / ".stamps" / "audit" / "prod.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_blobs_and_directory_are_restored_through_arm_and_followed_to_the_end(
        project: Path, arm: FakeArm, capsys: pytest.CaptureFixture[str]) -> None:
    azure = Azure(arm)
    assert run(project, arm, "--wait") == 0
    out = capsys.readouterr().out
    (post,) = arm.requests_to(f"{ACCOUNT}/restoreBlobRanges", "POST")
    assert post.query["api-version"] == "2024-01-01"
    assert post.header("Authorization") == f"Bearer {arm.access_token}"
    assert post.json() == {"timeToRestore": TO, "blobRanges": [{"startRange": "", "endRange": ""}]}
    (put,) = arm.requests_to(TARGET, "PUT")
    props = put.json()["properties"]
    assert props["createMode"] == "Restore" and put.json()["location"] == "eastus"
    # The live account's restorable instance, not the deleted one of the same name.
    assert props["restoreParameters"] == {"restoreMode": "PointInTime", "restoreSource": INSTANCE,
                                          "restoreTimestampInUtc": TO}
    assert props["disableLocalAuth"] is True and props["publicNetworkAccess"] == "Disabled"
    assert props["backupPolicy"]["type"] == "Continuous"
    # Both operations were followed to the end (polled until done), the directory's final state read back.
    assert azure.polls == {"blob": 2, "cosmos": 2}
    assert len(arm.requests_to(TARGET, "GET")) == 2  # "exists already?" before, the final state after
    assert "done" in out
    events = [(e["event"], e.get("what", "")[:5]) for e in audit_events(project)]
    assert ("restore-completed", "blobs") in events and ("restore-completed", "the t") in events
    # The SQL restore is a stack update, as before.
    assert any(e["event"] == "restore-created" for e in audit_events(project))


def test_without_wait_the_restores_are_started_and_their_status_urls_reported(
        project: Path, arm: FakeArm, capsys: pytest.CaptureFixture[str]) -> None:
    azure = Azure(arm)
    assert run(project, arm, "--what", "blobs,directory") == 0
    out = capsys.readouterr().out
    assert azure.polls == {"blob": 0, "cosmos": 0}
    assert "asyncoperations/blob-op" in out and "operationsStatus/cosmos-op" in out and "--wait" in out
    assert [e["event"] for e in audit_events(project)] == ["restore-started", "restore-started"]


def test_a_rerun_finds_the_restored_directory_and_starts_nothing(
        project: Path, arm: FakeArm, capsys: pytest.CaptureFixture[str]) -> None:
    Azure(arm, target_exists=True)
    assert run(project, arm, "--what", "directory", "--wait") == 0
    assert arm.requests_to(TARGET, "PUT") == []
    assert "exists already" in capsys.readouterr().out


def test_an_account_without_a_restore_policy_stops_everything_before_any_change(
        project: Path, arm: FakeArm, capsys: pytest.CaptureFixture[str]) -> None:
    Azure(arm, restore_policy=False)
    before = (project / "Pulumi.prod.yaml").read_text()
    assert run(project, arm) == 1
    assert "has no point-in-time restore policy" in capsys.readouterr().err
    assert arm.requests_to(f"{ACCOUNT}/restoreBlobRanges") == [] and arm.requests_to(TARGET, "PUT") == []
    assert (project / "Pulumi.prod.yaml").read_text() == before  # no SQL restore either


def test_a_restore_that_fails_in_azure_is_reported_with_its_reason(
        project: Path, arm: FakeArm, capsys: pytest.CaptureFixture[str]) -> None:
    Azure(arm, blob_outcome="Failed")
    assert run(project, arm, "--what", "blobs", "--wait") == 1
    err = capsys.readouterr().err
    assert "restore blobs of stbankingeusa57dd" in err and "legal hold" in err
    assert [e["event"] for e in audit_events(project)] == ["restore-failed"]


def test_an_arm_refusal_is_a_clear_error(project: Path, arm: FakeArm, capsys: pytest.CaptureFixture[str]) -> None:
    Azure(arm)
    arm.fail_next(409, path_contains="restoreBlobRanges", body={"error": {
        "code": "Conflict", "message": "A blob restore is already in progress on this account."}})
    assert run(project, arm, "--what", "blobs") == 1
    err = capsys.readouterr().err
    assert "HTTP 409 Conflict: A blob restore is already in progress" in err and "Traceback" not in err


def test_a_dry_run_prints_each_call_and_calls_nothing(
        project: Path, arm: FakeArm, capsys: pytest.CaptureFixture[str]) -> None:
    Azure(arm)
    before = (project / "Pulumi.prod.yaml").read_text()
    assert run(project, arm, "--dry-run") == 0
    out = capsys.readouterr().out
    assert f"POST {ACCOUNT}/restoreBlobRanges?api-version=2024-01-01" in out
    assert '"timeToRestore": "2026-11-26T03:00:00Z"' in out
    assert f"PUT {TARGET}?api-version=2025-10-15" in out and '"createMode": "Restore"' in out
    assert arm.requests == [] and (project / "Pulumi.prod.yaml").read_text() == before
