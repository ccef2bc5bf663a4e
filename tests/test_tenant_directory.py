"""The tenant directory: the real Cosmos DB REST path (Entra token, upsert, partition key) and the local file."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from ops.tenant_directory import CosmosTenantDirectory, DirectoryError, LocalTenantDirectory, tenant_record
from tests.fake_arm import FakeArm, FakeResponse, RecordedRequest, fake_arm_fixture  # noqa: F401

NOW = dt.datetime(2026, 11, 27, 12, 0, tzinfo=dt.UTC)


def test_cosmos_upsert_and_read(fake_arm: FakeArm) -> None:
    stored: dict[str, dict[str, object]] = {}

    def upsert(req: RecordedRequest) -> FakeResponse:
        doc = req.json()
        assert req.header("x-ms-documentdb-is-upsert") == "True"
        assert json.loads(req.header("x-ms-documentdb-partitionkey") or "") == [doc["tenantId"]]
        assert req.header("x-ms-version") == "2018-12-31" and req.header("x-ms-date")
        stored[doc["id"]] = doc
        return FakeResponse(201, doc)

    def read(req: RecordedRequest) -> FakeResponse:
        doc = stored.get(req.path.rsplit("/", 1)[-1])
        return FakeResponse(200, doc) if doc else FakeResponse(404, {"code": "NotFound"})

    fake_arm.add_route("POST", r"/dbs/globaldb/colls/tenants/docs", upsert)
    fake_arm.add_route("GET", r"/dbs/globaldb/colls/tenants/docs/[^/]+", read)
    directory = CosmosTenantDirectory(fake_arm.base_url, connection_verify=fake_arm.ca_file)
    record = tenant_record("acme", "acme", "dedicated", "eastus", NOW)
    directory.upsert(record)
    assert directory.get("acme") == record
    assert directory.get("nobody") is None
    # The Entra token went out in Cosmos DB's own scheme, never as a bearer header.
    sent = [r for r in fake_arm.requests if r.path.startswith("/dbs/")]
    assert all((r.header("Authorization") or "").startswith("type%3Daad%26ver%3D1.0%26sig%3D") for r in sent)
    assert fake_arm.token_requests, "the token came from the managed identity endpoint through DefaultAzureCredential"


def test_cosmos_failure_names_the_tenant_without_the_token(fake_arm: FakeArm) -> None:
    fake_arm.add_route("POST", r"/dbs/globaldb/colls/tenants/docs", FakeResponse(403, {"code": "Forbidden"}))
    directory = CosmosTenantDirectory(fake_arm.base_url, connection_verify=fake_arm.ca_file)
    with pytest.raises(DirectoryError) as info:
        directory.upsert(tenant_record("acme", "acme", "dedicated", "eastus", NOW))
    assert "'acme'" in str(info.value) and "403" in str(info.value)
    assert fake_arm.access_token not in str(info.value)


def test_local_directory_is_atomic_json(tmp_path: Path) -> None:
    directory = LocalTenantDirectory(tmp_path / "dir.json")
    directory.upsert(tenant_record("a", "shared-smb", "shared", "eastus", NOW))
    directory.upsert(tenant_record("a", "a", "dedicated", "eastus", NOW))
    assert directory.get("a")["cellName"] == "a"  # type: ignore[index]
    assert list(tmp_path.iterdir()) == [tmp_path / "dir.json"]


class _NoCredential:
    """A credential chain with nothing to find, as DefaultAzureCredential reports it."""

    def get_token(self, *scopes: str, **kwargs: object) -> object:
        from azure.core.exceptions import ClientAuthenticationError

        raise ClientAuthenticationError(
            "DefaultAzureCredential failed to retrieve a token from the included credentials.\n"
            "Attempted credentials:\n\tEnvironmentCredential: EnvironmentCredential authentication unavailable.\n"
            "\tManagedIdentityCredential: ManagedIdentityCredential authentication unavailable.\n"
            "\tAzureCliCredential: Azure CLI not found on path\n")


def test_a_directory_without_a_credential_says_so_in_one_line(
        fake_arm: FakeArm, caplog: pytest.LogCaptureFixture) -> None:
    directory = CosmosTenantDirectory(fake_arm.base_url, connection_verify=fake_arm.ca_file,
                                      credential=_NoCredential())  # type: ignore[arg-type]
    with caplog.at_level("INFO"), pytest.raises(DirectoryError) as info:
        directory.upsert(tenant_record("acme", "acme", "dedicated", "eastus", NOW))
    message = str(info.value)
    assert len(message.splitlines()) == 1 and "no Azure credential worked (DefaultAzureCredential tried 3)" in message
    assert "EnvironmentCredential" not in message
    assert "AzureCliCredential: Azure CLI not found" in caplog.text, "the whole chain goes to the run's log"
