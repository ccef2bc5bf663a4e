"""Azure Resource Manager calls: reads for the maintenance and incident playbooks, long-running changes (blob
point-in-time restore, Cosmos DB restore, storage account failover) for the data-recovery and failover playbooks.

Same authentication and retry stack as ``ops.azure_monitor``: azure-identity's ``DefaultAzureCredential``
(or an injected ``TokenCredential``), azure-core's ``RetryPolicy`` built from ``RetrySettings`` (429 and
transient 5xx retried, ``Retry-After`` honoured up to a cap), and one error type, ``ArmReadError`` (an
``AzureReadError``), whose message says what was read and why it failed and never carries a token.

Why raw ARM requests through azure-mgmt-core's ``ARMPipelineClient`` instead of one management SDK per
provider: the playbooks need about a dozen read-only GETs across eight providers (resources, SQL, Traffic
Manager, Front Door, Cost Management, authorization, Defender for Cloud, Key Vault). Eight SDK packages for
that would be a large dependency surface; a pinned ``api-version`` per call (``API_VERSIONS``) keeps every
response shape the code parses documented and reviewable in one place.
"""

from __future__ import annotations

import builtins
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.core.pipeline import policies
from azure.core.pipeline.transport import RequestsTransport
from azure.core.rest import HttpRequest, HttpResponse
from azure.mgmt.core import ARMPipelineClient
from azure.mgmt.core.policies import ARMChallengeAuthenticationPolicy, ARMHttpLoggingPolicy

from ops.azure_monitor import AzureClient, AzureReadError, RetrySettings, token_failure

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential
    from azure.core.pipeline.transport import HttpTransport

__all__ = ["API_VERSIONS", "DEFAULT_ARM_ENDPOINT", "ArmOperation", "ArmReadError", "ArmReader", "ArmWriteError",
           "ArmWriter", "subscription_of"]

_LOG = logging.getLogger(__name__)

DEFAULT_ARM_ENDPOINT: Final = "https://management.azure.com"

# One pinned api-version per provider; the fields the playbooks read are documented for these versions.
API_VERSIONS: Final[Mapping[str, str]] = {
    "resources": "2021-04-01",  # resource groups' resources, $expand=provisioningState
    "sql": "2021-11-01",  # databases, backupShortTermRetentionPolicies, replicationLinks
    "trafficManager": "2022-04-01",  # profileStatus, endpoints[].endpointStatus/endpointMonitorStatus
    "cdn": "2024-02-01",  # Front Door Standard/Premium profiles (resourceState) and afdEndpoints (enabledState)
    "costManagement": "2023-11-01",  # POST .../providers/Microsoft.CostManagement/query
    "authorization": "2022-04-01",  # roleAssignments ($filter=atScope()), roleDefinitions
    "security": "2021-06-01",  # Defender for Cloud assessments
    "keyVault": "2023-07-01",  # vaults/secrets metadata (attributes.exp), never the value
    "insights": "2018-01-01",  # metricDefinitions
    # Alerts - Get All at subscription scope: targetResourceGroup, monitorCondition=Fired, timeRange filters
    # (learn.microsoft.com/rest/api/monitor/alertsmanagement/alerts/get-all).
    "alertsManagement": "2023-07-12-preview",
    "containerApps": "2024-03-01",  # containerApps/revisions: active, healthState, runningState
    # Changes: the versions the program deploys these types with (stamps/api_versions.py).
    "storage": "2024-01-01",  # storageAccounts/{name}/restoreBlobRanges, /failover, blobServices/default
    "cosmos": "2025-10-15",  # databaseAccounts (createMode Restore), locations/{l}/restorableDatabaseAccounts
}

# Reads only: a Cost Management query is a POST but idempotent, so it is retried like a GET (azure-core
# would otherwise retry a POST only on 500/503/504 and never on a 429 without Retry-After).
_READ_METHODS: Final = frozenset({"GET", "HEAD", "POST"})
_RETRIED_STATUSES: Final = frozenset({408, 429, 500, 502, 503, 504})


class ArmReadError(AzureReadError):
    """An ARM read that failed after the retry policy gave up; ``not_found`` for a 404."""

    def __init__(self, message: str, *, resource_id: str, status_code: int | None = None,
                 error_code: str | None = None) -> None:
        super().__init__(message, resource_id=resource_id, metrics=(), status_code=status_code,
                         error_code=error_code)

    @property
    def not_found(self) -> bool:
        return self.status_code == 404


class ArmWriteError(ArmReadError):
    """An ARM change that Azure refused, or whose long-running operation failed or did not finish in time."""


def subscription_of(resource_id: str) -> str:
    """The subscription id in an ARM resource id (``/subscriptions/<id>/...``)."""
    parts = resource_id.strip("/").split("/")
    if len(parts) < 2 or parts[0].lower() != "subscriptions" or not parts[1]:
        raise ValueError(f"{resource_id!r} is not an ARM resource id (/subscriptions/<id>/...)")
    return parts[1]


class ArmReader(AzureClient):
    """GET, list and POST-query against ARM with the credential, retry policy and errors of ``MetricsReader``.

    ``arm_endpoint`` overrides the endpoint (sovereign clouds, the local fake); the token audience is
    ``<arm_endpoint>/.default`` unless ``credential_scopes`` is given. ``transport`` replaces azure-core's
    requests transport (its own TLS and timeout settings then apply).
    """

    def __init__(
        self,
        *,
        credential: TokenCredential | None = None,
        arm_endpoint: str | None = None,
        credential_scopes: Sequence[str] | None = None,
        retry: RetrySettings | None = None,
        connection_verify: bool | str = True,
        connection_timeout: float = 10.0,
        read_timeout: float = 60.0,
        transport: HttpTransport[Any, Any] | None = None,
        max_pages: int = 50,
    ) -> None:
        self._owns_credential = credential is None
        if credential is None:
            from azure.identity import DefaultAzureCredential  # deferred: heavy import, unused when injected

            credential = DefaultAzureCredential()
        self._credential = credential
        self.endpoint = (arm_endpoint or DEFAULT_ARM_ENDPOINT).rstrip("/")
        scopes = list(credential_scopes or [f"{self.endpoint}/.default"])
        self.retry = retry or RetrySettings()
        self.max_pages = max_pages
        pipeline_policies: list[Any] = [
            policies.RequestIdPolicy(),
            policies.HeadersPolicy(),
            policies.UserAgentPolicy(sdk_moniker="stamps-ops-arm"),
            policies.ProxyPolicy(),
            policies.ContentDecodePolicy(),
            # Retry wraps authentication so every attempt carries a valid token.
            self.retry.build_policy(),
            ARMChallengeAuthenticationPolicy(credential, *scopes),
            policies.CustomHookPolicy(),
            policies.NetworkTraceLoggingPolicy(),
            ARMHttpLoggingPolicy(),  # logs headers with Authorization redacted
        ]
        self._client: ARMPipelineClient[Any, Any] = ARMPipelineClient(
            base_url=self.endpoint,
            policies=pipeline_policies,
            transport=transport or RequestsTransport(connection_verify=connection_verify,
                                                     connection_timeout=connection_timeout,
                                                     read_timeout=read_timeout),
        )

    # ------------------------------------------------------------------ reads
    def get(self, path: str, api_version: str, *, params: Mapping[str, str] | None = None) -> dict[str, Any]:
        """One resource (or one page) as JSON; ``path`` is an ARM id like ``/subscriptions/.../x``."""
        body = self._send("GET", path, api_version, params, None)
        return body if isinstance(body, dict) else {}

    def list(self, path: str, api_version: str, *, params: Mapping[str, str] | None = None) -> list[dict[str, Any]]:
        """Every item of a collection, following ``nextLink`` (only back to this endpoint) up to max_pages."""
        page = self.get(path, api_version, params=params)
        items = list(page.get("value") or [])
        for _ in range(self.max_pages - 1):
            next_link = page.get("nextLink")
            if not next_link:
                return items
            page = self._send("GET", str(next_link), api_version, None, None)
            page = page if isinstance(page, dict) else {}
            items.extend(page.get("value") or [])
        if page.get("nextLink"):
            raise ArmReadError(f"Listing {path} failed: more than {self.max_pages} pages", resource_id=path)
        return items

    def query(self, path: str, api_version: str, body: Mapping[str, Any]) -> builtins.list[dict[str, Any]]:
        """A read-only POST query (Cost Management): every page's ``properties``, following
        ``properties.nextLink`` with the same body; 204 No Content is no page at all."""
        pages: list[dict[str, Any]] = []
        target = path
        for _ in range(self.max_pages):
            result = self._send("POST", target, api_version, None, body)
            props = result.get("properties") if isinstance(result, dict) else None
            if not isinstance(props, dict):
                return pages
            pages.append(props)
            if not props.get("nextLink"):
                return pages
            target = str(props["nextLink"])
        raise ArmReadError(f"Query {path} failed: more than {self.max_pages} pages", resource_id=path)

    # ------------------------------------------------------------------ internals
    def _send(self, method: str, path: str, api_version: str, params: Mapping[str, str] | None,
              body: Mapping[str, Any] | None) -> Any:
        absolute = path.startswith(("https://", "http://"))
        if absolute and not path.startswith(self.endpoint + "/"):
            # A nextLink elsewhere: never send the bearer token anywhere but the endpoint it was issued for.
            raise ArmReadError(f"{method} {path.split('?', 1)[0]} refused: it is not on {self.endpoint}",
                               resource_id=path.split("?", 1)[0])
        url = path if absolute else f"{self.endpoint}/{path.lstrip('/')}"
        query = None if absolute else {"api-version": api_version, **(params or {})}
        resource_id = path.split("?", 1)[0]
        what = f"{method} {resource_id.removeprefix(self.endpoint)}"
        request = HttpRequest(method, url, params=query, json=dict(body) if body is not None else None)
        try:
            response: HttpResponse = self._client.send_request(request, retry_on_methods=_READ_METHODS)
        except ClientAuthenticationError as err:
            raise ArmReadError(f"could not obtain an ARM access token: {token_failure(err)}",
                               resource_id=resource_id) from err
        except (ServiceRequestError, ServiceResponseError) as err:
            raise ArmReadError(f"{what} failed: ARM endpoint unreachable after retries "
                               f"({type(err).__name__}: {_first_line(err.message)})",
                               resource_id=resource_id) from err
        except AzureError as err:
            raise ArmReadError(f"{what} failed: {type(err).__name__}: {_first_line(err.message)}",
                               resource_id=resource_id) from err
        status = response.status_code
        if status == 204:
            return {}
        if status >= 400:
            code, detail = _error_details(response)
            retried = f" after {self.retry.total} retries" if status in _RETRIED_STATUSES or status >= 506 else ""
            raise ArmReadError(f"{what} failed{retried}: HTTP {status} {code}: {detail}",
                               resource_id=resource_id, status_code=status, error_code=code)
        try:
            return response.json()
        except ValueError as err:
            raise ArmReadError(f"{what} failed: the answer was not JSON (HTTP {status})",
                               resource_id=resource_id, status_code=status) from err


@dataclass(frozen=True)
class ArmOperation:
    """A change ARM accepted: its final body when it was waited for, else where to follow it."""

    status: str  # "Succeeded" (done), or "Accepted" (running in Azure; follow `monitor`)
    body: dict[str, Any]
    monitor: str  # the operation's status URL (Azure-AsyncOperation or Location), "" when none was given


class ArmWriter(ArmReader):
    """Long-running ARM changes (PUT/POST answered 201/202 and followed to the end), with ArmReader's credential,
    retry policy and endpoint rules.

    azure-mgmt-core's ``ARMPolling`` follows the operation as the management SDKs do (``Azure-AsyncOperation``,
    then ``Location``, honouring ``Retry-After``); ``final_state_via`` says where the result is read from, as in the
    REST spec of each operation. Without ``wait`` the change is only started: restores run for hours, and the
    operator follows the returned status URL (or re-runs the playbook with ``--wait``).
    """

    def __init__(self, *, polling_interval: float = 30.0, timeout: float = 6 * 3600.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.polling_interval = polling_interval
        self.timeout = timeout

    def change(self, method: str, path: str, api_version: str, body: Mapping[str, Any] | None, *,
               wait: bool = True, final_state_via: str = "azure-async-operation",
               params: Mapping[str, str] | None = None) -> ArmOperation:
        from azure.core.exceptions import HttpResponseError
        from azure.core.polling import LROPoller
        from azure.mgmt.core.polling.arm_polling import ARMPolling

        url = f"{self.endpoint}/{path.lstrip('/')}"
        what = f"{method} {path}"
        request = HttpRequest(method, url, params={"api-version": api_version, **(params or {})},
                              json=dict(body) if body is not None else None)
        try:
            initial = self._client.send_request(request, _return_pipeline_response=True)
        except AzureError as err:
            raise ArmWriteError(f"{what} failed: {type(err).__name__}: {_first_line(err.message)}",
                                resource_id=path) from err
        response = initial.http_response
        status = response.status_code
        if status >= 400:
            code, detail = _error_details(response)
            raise ArmWriteError(f"{what} was refused: HTTP {status} {code}: {detail}", resource_id=path,
                                status_code=status, error_code=code)
        headers = {k.lower(): v for k, v in response.headers.items()}
        monitor = headers.get("azure-asyncoperation") or headers.get("location") or ""
        if not monitor or not wait:
            return ArmOperation("Succeeded" if not monitor else "Accepted", _json(response), monitor)
        poller: LROPoller[dict[str, Any]] = LROPoller(
            self._client, initial, lambda pipeline_response: _json(pipeline_response.http_response),
            ARMPolling(self.polling_interval, lro_options={"final-state-via": final_state_via}))
        try:
            result = poller.result(timeout=self.timeout)
        except HttpResponseError as err:
            code = getattr(getattr(err, "error", None), "code", None) or str(err.status_code or "error")
            raise ArmWriteError(f"{what} failed while Azure ran it: {code}: {_first_line(err.message)}",
                                resource_id=path, status_code=err.status_code, error_code=code) from err
        except AzureError as err:
            raise ArmWriteError(f"{what} failed while Azure ran it: {type(err).__name__}: "
                                f"{_first_line(err.message)}", resource_id=path) from err
        if not poller.done():
            raise ArmWriteError(f"{what} is still running after {self.timeout:.0f} s; follow it at {monitor}",
                                resource_id=path)
        return ArmOperation("Succeeded", result or {}, monitor)


def _json(response: Any) -> dict[str, Any]:
    try:
        body = response.json() if response.text() else {}
    except ValueError:
        body = {}
    return body if isinstance(body, dict) else {}


def _error_details(response: HttpResponse) -> tuple[str, str]:
    """ARM's ``{"error": {"code", "message"}}`` or a flat ``{"code", "message"}``."""
    try:
        body: Any = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        inner: Any = body.get("error") if isinstance(body.get("error"), dict) else body
        return str(inner.get("code") or response.reason or "error"), _first_line(str(inner.get("message") or ""))
    return str(response.reason or "error"), _first_line((response.text() or "")[:300])


def _first_line(text: str | None) -> str:
    stripped = (text or "").strip()
    return stripped.splitlines()[0][:300] if stripped else ""
