"""The tenant directory: one record per tenant in Cosmos DB `globaldb/tenants` (partition key `/tenantId`).

The runbook keeps tenant → CELL routing there for applications to read; the migration's switch step and
onboarding upsert the record. `CosmosTenantDirectory` talks the Cosmos DB REST API with a Microsoft Entra
token (the account has local/key auth disabled: there is no key to leak). `LocalTenantDirectory` is the
offline stand-in used when the stack itself is only planned offline: a JSON file, written atomically.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import os
from email.utils import formatdate
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import quote

from azure.core import PipelineClient
from azure.core.exceptions import AzureError, ClientAuthenticationError
from azure.core.pipeline import PipelineRequest, policies
from azure.core.rest import HttpRequest

from ops.azure_monitor import RetrySettings
from stamps.atomicfile import PRIVATE, write_json_atomic
from stamps.errors import OperationFailed

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential

API_VERSION = "2018-12-31"


class DirectoryError(OperationFailed, RuntimeError):
    """The directory could not be read or written; the message says which tenant and why, never a token."""


class TenantDirectory(Protocol):
    def upsert(self, record: dict[str, Any]) -> None: ...

    def get(self, tenant_id: str) -> dict[str, Any] | None: ...


def tenant_record(tenant_id: str, cell: str, model: str, region: str, now: dt.datetime) -> dict[str, Any]:
    """The runbook's record shape, plus where and when."""
    return {"id": tenant_id, "tenantId": tenant_id, "cellType": model, "cellName": cell,
            "cellBackendPool": f"pool-{cell}", "region": region, "updatedAt": now.isoformat(timespec="seconds")}


class _AadPolicy(policies.SansIOHTTPPolicy):  # type: ignore[type-arg]
    """Cosmos DB wants `type=aad&ver=1.0&sig=<token>` (URL-encoded), not `Bearer <token>`."""

    def __init__(self, credential: TokenCredential, scope: str) -> None:
        self._credential = credential
        self._scope = scope

    def on_request(self, request: PipelineRequest) -> None:  # type: ignore[type-arg]
        token = self._credential.get_token(self._scope).token
        request.http_request.headers["Authorization"] = quote(f"type=aad&ver=1.0&sig={token}", safe="")
        request.http_request.headers["x-ms-date"] = formatdate(usegmt=True)
        request.http_request.headers["x-ms-version"] = API_VERSION


class CosmosTenantDirectory:
    def __init__(self, endpoint: str, *, database: str = "globaldb", container: str = "tenants",
                 credential: TokenCredential | None = None, retry: RetrySettings | None = None,
                 connection_verify: bool | str = True) -> None:
        if credential is None:
            from azure.identity import DefaultAzureCredential

            credential = DefaultAzureCredential()
        self.endpoint = endpoint.rstrip("/")
        self.path = f"/dbs/{database}/colls/{container}/docs"
        host = self.endpoint.split("://", 1)[-1].split(":", 1)[0]
        scope = f"https://{host}/.default"
        self._client: PipelineClient[Any, Any] = PipelineClient(
            self.endpoint,
            policies=[
                policies.HeadersPolicy(), (retry or RetrySettings()).build_policy(),
                _AadPolicy(credential, scope), policies.ContentDecodePolicy(), policies.NetworkTraceLoggingPolicy(),
            ],
            connection_verify=connection_verify,
        )

    def upsert(self, record: dict[str, Any]) -> None:
        tenant = str(record["tenantId"])
        request = HttpRequest("POST", self.endpoint + self.path, json=record, headers={
            "x-ms-documentdb-is-upsert": "True",
            "x-ms-documentdb-partitionkey": json.dumps([tenant]),
            "Content-Type": "application/json",
        })
        self._send(request, f"upsert the directory record of tenant {tenant!r}", ok=(200, 201))

    def get(self, tenant_id: str) -> dict[str, Any] | None:
        request = HttpRequest("GET", f"{self.endpoint}{self.path}/{quote(tenant_id, safe='')}", headers={
            "x-ms-documentdb-partitionkey": json.dumps([tenant_id])})
        response = self._send(request, f"read the directory record of tenant {tenant_id!r}", ok=(200, 404))
        return None if response.status_code == 404 else dict(response.json())

    def _send(self, request: HttpRequest, what: str, ok: tuple[int, ...]) -> Any:
        try:
            response = self._client.send_request(request)
        except ClientAuthenticationError as err:
            if err.response is None:  # no token: say why in one line (the credential chain goes to the log)
                from ops.azure_monitor import token_failure

                raise DirectoryError(f"cannot {what} at {self.endpoint}: could not obtain an access token: "
                                     f"{token_failure(err)}") from None
            raise DirectoryError(f"cannot {what} at {self.endpoint}: {type(err).__name__}") from None
        except AzureError as err:
            raise DirectoryError(f"cannot {what} at {self.endpoint}: {type(err).__name__}") from None
        if response.status_code not in ok:
            raise DirectoryError(f"cannot {what} at {self.endpoint}: HTTP {response.status_code}")
        return response

    def close(self) -> None:
        self._client.close()


class LocalTenantDirectory:
    """A JSON file standing in for Cosmos DB when the stack is planned offline (GitOps, tests)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def _load(self) -> dict[str, Any]:
        try:
            return dict(json.loads(self.path.read_text()))
        except FileNotFoundError:
            return {}

    def get(self, tenant_id: str) -> dict[str, Any] | None:
        return self._load().get(tenant_id)

    def upsert(self, record: dict[str, Any]) -> None:
        # Read-modify-write under an exclusive flock on the directory that holds the file (the file itself is
        # replaced by each write): concurrent onboardings, threads or processes, keep each other's records.
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path.parent, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            data = self._load()
            data[str(record["tenantId"])] = record
            write_json_atomic(self.path, data, mode=PRIVATE)
        finally:
            os.close(fd)  # releases the lock
