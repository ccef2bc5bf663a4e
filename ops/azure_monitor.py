"""Read Azure Monitor platform metrics for the scaling playbook and the health checks.

Everything goes through the real ``azure.mgmt.monitor.MonitorManagementClient`` authenticated with
azure-identity's ``DefaultAzureCredential`` (or any injected ``TokenCredential``), so the production code
path is the one the tests exercise. Throttling (429) and transient 5xx answers are retried by an
explicitly configured azure-core ``RetryPolicy`` that honours ``Retry-After``; whatever still fails
surfaces as one ``AzureReadError`` that says what was being read and why it failed.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, Self

from azure.core import AzureClouds
from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    DeserializationError,
    HttpResponseError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.core.pipeline import PipelineResponse
from azure.core.pipeline.policies import RetryPolicy
from azure.mgmt.monitor import MonitorManagementClient

from stamps.errors import OperationFailed

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential
    from azure.core.pipeline.transport import HttpTransport
    from azure.mgmt.monitor.models import Response as MetricsResponse

__all__ = [
    "CONTAINER_APP_CPU_PERCENT",
    "CONTAINER_APP_MEMORY_PERCENT",
    "CONTAINER_APP_REPLICAS",
    "CONTAINER_APP_REQUESTS",
    "CONTAINER_APP_RESTART_COUNT",
    "CONTAINER_APP_USAGE_NANO_CORES",
    "CONTAINER_APP_WORKING_SET_BYTES",
    "SQL_DB_CPU_PERCENT",
    "SQL_DB_DTU_CONSUMPTION_PERCENT",
    "TM_ENDPOINT_DIMENSION",
    "TM_ENDPOINT_STATE",
    "Aggregation",
    "AzureReadError",
    "MetricPoint",
    "MetricReading",
    "MetricSeries",
    "MetricsReader",
    "RetrySettings",
]

_LOG = logging.getLogger(__name__)

# ---------------------------------------------------------------------------------------------------------
# Metric names exactly as the REST API spells them ("Name in REST API" column of the Azure Monitor
# supported-metrics reference). Verified against:
#   Container Apps: https://learn.microsoft.com/azure/azure-monitor/reference/supported-metrics/microsoft-app-containerapps-metrics
#     (UsageNanoCores / WorkingSetBytes / Replicas / Requests / RestartCount also appear with
#     metricNamespace Microsoft.App/containerApps in Azure/azure-monitor-baseline-alerts
#     services/App/containerApps/alerts.yaml)
#   SQL database:   https://learn.microsoft.com/azure/azure-monitor/reference/supported-metrics/microsoft-sql-servers-databases-metrics
#   Traffic Manager: https://learn.microsoft.com/azure/azure-monitor/reference/supported-metrics/microsoft-network-trafficmanagerprofiles-metrics
# ---------------------------------------------------------------------------------------------------------
CONTAINER_APP_CPU_PERCENT: Final = "CpuPercentage"  # Percent of the CPU limit (preview); dim podName
CONTAINER_APP_MEMORY_PERCENT: Final = "MemoryPercentage"  # Percent of the memory limit (preview)
CONTAINER_APP_USAGE_NANO_CORES: Final = "UsageNanoCores"  # NanoCores; 1e9 = one core
CONTAINER_APP_WORKING_SET_BYTES: Final = "WorkingSetBytes"  # Bytes
CONTAINER_APP_REQUESTS: Final = "Requests"  # Count; dims revisionName, statusCodeCategory, statusCode
CONTAINER_APP_REPLICAS: Final = "Replicas"  # Count; dims revisionName, deploymentName
CONTAINER_APP_RESTART_COUNT: Final = "RestartCount"  # Count
SQL_DB_CPU_PERCENT: Final = "cpu_percent"  # Percent
SQL_DB_DTU_CONSUMPTION_PERCENT: Final = "dtu_consumption_percent"  # Percent; DTU-model databases only
# "1 if an endpoint's probe status is Enabled, 0 otherwise"; aggregation Maximum; dimension EndpointName.
TM_ENDPOINT_STATE: Final = "ProbeAgentCurrentEndpointStateByProfileResourceId"
TM_ENDPOINT_DIMENSION: Final = "EndpointName"

# Azure Monitor accepts at most 20 metric names per metrics.list call.
MAX_METRICS_PER_CALL: Final = 20
DEFAULT_LOOKBACK: Final = dt.timedelta(minutes=30)


class Aggregation(StrEnum):
    """Aggregation types of the metrics API (sent as-is, read back from the lower-case data-point keys)."""

    AVERAGE = "Average"
    MINIMUM = "Minimum"
    MAXIMUM = "Maximum"
    TOTAL = "Total"
    COUNT = "Count"


class AzureReadError(OperationFailed, RuntimeError):
    """A metrics read failed after the retry policy gave up (or could not be attempted at all).

    The message names the resource, the metrics and the cause; it never contains tokens or headers.
    """

    def __init__(
        self,
        message: str,
        *,
        resource_id: str,
        metrics: Sequence[str] = (),
        status_code: int | None = None,
        error_code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.resource_id = resource_id
        self.metrics = tuple(metrics)
        self.status_code = status_code
        self.error_code = error_code


@dataclass(frozen=True)
class RetrySettings:
    """How hard to retry throttled (429) and transient (408/5xx) ARM answers.

    ``backoff_factor`` drives azure-core's exponential backoff (factor * 2**(n-1) seconds, capped at
    ``backoff_max``) when the server sends no ``Retry-After``; when it does, that delay is used, capped at
    ``max_retry_after`` so a misbehaving endpoint cannot park a failover run for an hour.
    """

    total: int = 4
    backoff_factor: float = 0.8
    backoff_max: float = 30.0
    max_retry_after: float = 60.0
    timeout: float = 120.0  # absolute budget for one read, all attempts included

    def build_policy(self) -> RetryPolicy:
        return _CappedRetryAfterPolicy(
            max_retry_after=self.max_retry_after,
            retry_total=self.total,
            # Each counter must be set explicitly: azure-core ignores zero counters when checking exhaustion.
            retry_connect=self.total,
            retry_read=self.total,
            retry_status=self.total,
            retry_backoff_factor=self.backoff_factor,
            retry_backoff_max=self.backoff_max,
            timeout=self.timeout,
        )


class _CappedRetryAfterPolicy(RetryPolicy):
    """azure-core's RetryPolicy with an upper bound on server-requested Retry-After delays."""

    def __init__(self, *, max_retry_after: float, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._max_retry_after = max_retry_after

    def get_retry_after(self, response: PipelineResponse[Any, Any]) -> float | None:
        retry_after = super().get_retry_after(response)
        if retry_after is None:
            return None
        return min(retry_after, self._max_retry_after)


@dataclass(frozen=True)
class MetricPoint:
    timestamp: dt.datetime
    value: float | None  # None: Azure returned the interval without data for this aggregation


@dataclass(frozen=True)
class MetricReading:
    """One value of one metric: what the playbooks compare against thresholds."""

    resource_id: str
    metric: str
    aggregation: Aggregation
    value: float
    timestamp: dt.datetime
    unit: str
    dimensions: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class MetricSeries:
    """One time series (one combination of dimension values) of one metric, oldest point first."""

    resource_id: str
    metric: str
    aggregation: Aggregation
    unit: str
    dimensions: Mapping[str, str]
    points: tuple[MetricPoint, ...]

    def latest(self) -> MetricReading | None:
        """The most recent point that carries a value (Azure pads idle intervals with empty points)."""
        for point in reversed(self.points):
            if point.value is not None:
                return MetricReading(
                    resource_id=self.resource_id,
                    metric=self.metric,
                    aggregation=self.aggregation,
                    value=point.value,
                    timestamp=point.timestamp,
                    unit=self.unit,
                    dimensions=self.dimensions,
                )
        return None


Timespan = dt.timedelta | tuple[dt.datetime, dt.datetime]


class AzureClient:
    """Lifecycle shared by the readers: close the pipeline, and the credential only if we created it."""

    _client: Any
    _credential: Any
    _owns_credential: bool

    def close(self) -> None:
        self._client.close()
        if self._owns_credential:
            close = getattr(self._credential, "close", None)
            if callable(close):
                close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class MetricsReader(AzureClient):
    """Reads platform metrics through ``MonitorManagementClient.metrics.list``.

    ``credential`` defaults to ``DefaultAzureCredential()`` (managed identity in Azure, CLI locally).
    ``cloud`` picks a sovereign cloud's ARM endpoint and token audience; ``arm_endpoint`` overrides the
    endpoint outright (its audience defaults to ``<arm_endpoint>/.default`` unless ``credential_scopes``
    is given). ``connection_verify`` is azure-core's TLS knob (True or a CA bundle path; the
    ``REQUESTS_CA_BUNDLE`` environment variable also works). ``transport`` is an optional azure-core
    transport; when given, its own TLS/timeout configuration applies instead of ``connection_verify`` and
    the timeouts here.
    """

    def __init__(
        self,
        *,
        credential: TokenCredential | None = None,
        subscription_id: str = "00000000-0000-0000-0000-000000000000",
        cloud: AzureClouds | None = None,
        arm_endpoint: str | None = None,
        credential_scopes: Sequence[str] | None = None,
        retry: RetrySettings | None = None,
        connection_verify: bool | str = True,
        connection_timeout: float = 10.0,
        read_timeout: float = 60.0,
        transport: HttpTransport[Any, Any] | None = None,
        clock: Callable[[], dt.datetime] | None = None,
    ) -> None:
        # metrics.list addresses resources by full ID; the subscription only matters to other operation
        # groups of the client, so a placeholder keeps one reader usable across subscriptions.
        self._owns_credential = credential is None
        if credential is None:
            from azure.identity import DefaultAzureCredential  # deferred: heavy import, unused when injected

            credential = DefaultAzureCredential()
        self._credential = credential
        self.retry = retry or RetrySettings()
        self._clock = clock or (lambda: dt.datetime.now(dt.UTC))

        kwargs: dict[str, Any] = {
            "retry_policy": self.retry.build_policy(),
            "connection_verify": connection_verify,
            "connection_timeout": connection_timeout,
            "read_timeout": read_timeout,
        }
        if cloud is not None:
            kwargs["cloud_setting"] = cloud
        if arm_endpoint is not None:
            arm_endpoint = arm_endpoint.rstrip("/")
            if credential_scopes is None:
                credential_scopes = [f"{arm_endpoint}/.default"]
        if credential_scopes is not None:
            kwargs["credential_scopes"] = list(credential_scopes)
        if transport is not None:
            kwargs["transport"] = transport
        self.arm_endpoint = arm_endpoint
        self._client = MonitorManagementClient(credential, subscription_id, base_url=arm_endpoint, **kwargs)

    # ------------------------------------------------------------------ reads
    def series(
        self,
        resource_id: str,
        metric_names: Sequence[str],
        aggregation: Aggregation | str = Aggregation.AVERAGE,
        *,
        interval: str = "PT5M",
        timespan: Timespan = DEFAULT_LOOKBACK,
        dimensions: Mapping[str, str] | None = None,
    ) -> dict[str, list[MetricSeries]]:
        """All time series for ``metric_names`` in one ``metrics.list`` call, keyed by the requested name.

        ``dimensions`` becomes an OData ``$filter`` (``name eq 'value' and ...``; ``'*'`` splits by that
        dimension). A metric Azure answers without series maps to an empty list.
        """
        names = _validate_names(metric_names)
        agg = _aggregation(aggregation)
        response = self._list(resource_id, names, agg, interval, timespan, dimensions)

        by_name: dict[str, list[MetricSeries]] = {name: [] for name in names}
        lookup = {name.lower(): name for name in names}
        key = agg.value.lower()
        for metric in response.value or []:
            returned = metric.name.value if metric.name is not None and metric.name.value else ""
            requested = lookup.get(returned.lower())
            if requested is None:
                _LOG.debug("ignoring unrequested metric %r in response for %s", returned, resource_id)
                continue
            unit = str(metric.unit.value if hasattr(metric.unit, "value") else metric.unit)
            for element in metric.timeseries or []:
                dims = {
                    (m.name.value if m.name is not None else ""): (m.value or "")
                    for m in (element.metadatavalues or [])
                }
                points = tuple(
                    MetricPoint(timestamp=p.time_stamp, value=_as_float(getattr(p, key, None)))
                    for p in sorted(element.data or [], key=lambda p: p.time_stamp)
                )
                by_name[requested].append(
                    MetricSeries(
                        resource_id=resource_id,
                        metric=returned,
                        aggregation=agg,
                        unit=unit,
                        dimensions=dims,
                        points=points,
                    )
                )
        return by_name

    def latest_many(
        self,
        resource_id: str,
        metric_names: Sequence[str],
        aggregation: Aggregation | str = Aggregation.AVERAGE,
        *,
        interval: str = "PT5M",
        timespan: Timespan = DEFAULT_LOOKBACK,
        dimensions: Mapping[str, str] | None = None,
    ) -> dict[str, MetricReading | None]:
        """Latest value of several metrics of one resource with a single API call.

        When a filter yields several series (``'*'``) the most recent reading across them wins.
        """
        all_series = self.series(
            resource_id,
            metric_names,
            aggregation,
            interval=interval,
            timespan=timespan,
            dimensions=dimensions,
        )
        return {name: _newest(s.latest() for s in series) for name, series in all_series.items()}

    def latest_reading(
        self,
        resource_id: str,
        metric_name: str,
        aggregation: Aggregation | str = Aggregation.AVERAGE,
        *,
        interval: str = "PT5M",
        timespan: Timespan = DEFAULT_LOOKBACK,
        dimensions: Mapping[str, str] | None = None,
    ) -> MetricReading | None:
        return self.latest_many(
            resource_id,
            [metric_name],
            aggregation,
            interval=interval,
            timespan=timespan,
            dimensions=dimensions,
        )[metric_name]

    def latest(
        self,
        resource_id: str,
        metric_name: str,
        aggregation: Aggregation | str = Aggregation.AVERAGE,
        *,
        interval: str = "PT5M",
        timespan: Timespan = DEFAULT_LOOKBACK,
        dimensions: Mapping[str, str] | None = None,
    ) -> float | None:
        """Latest value of one metric, or None when Azure has no data points in the window."""
        reading = self.latest_reading(
            resource_id, metric_name, aggregation, interval=interval, timespan=timespan, dimensions=dimensions
        )
        return None if reading is None else reading.value

    def endpoint_health(
        self,
        traffic_manager_profile_id: str,
        endpoint_name: str,
        *,
        timespan: Timespan = dt.timedelta(minutes=10),
    ) -> bool | None:
        """Traffic Manager's own probe verdict for one endpoint: True up, False down, None no data.

        Uses the maximum over one-minute grains (the metric's documented aggregation) of the most
        recent minute that has data, filtered by the ``EndpointName`` dimension.
        """
        reading = self.latest_reading(
            traffic_manager_profile_id,
            TM_ENDPOINT_STATE,
            Aggregation.MAXIMUM,
            interval="PT1M",
            timespan=timespan,
            dimensions={TM_ENDPOINT_DIMENSION: endpoint_name},
        )
        if reading is None:
            return None
        return reading.value >= 1.0

    # ------------------------------------------------------------------ internals
    def _list(
        self,
        resource_id: str,
        names: Sequence[str],
        aggregation: Aggregation,
        interval: str,
        timespan: Timespan,
        dimensions: Mapping[str, str] | None,
    ) -> MetricsResponse:
        what = f"metrics {', '.join(names)} ({aggregation.value}, {interval}) of {resource_id}"
        try:
            return self._client.metrics.list(
                resource_id,
                timespan=self._timespan(timespan),
                interval=interval,
                metricnames=",".join(names),
                aggregation=aggregation.value,
                filter=_odata_filter(dimensions) if dimensions else None,
            )
        except ClientAuthenticationError as err:
            # Raised both for ARM 401s (has a response) and by the credential when no token can be had.
            if err.response is not None:
                raise self._http_error(what, resource_id, names, err) from err
            raise AzureReadError(
                f"could not obtain an ARM access token: {token_failure(err)}",  # the resource is not the cause
                resource_id=resource_id,
                metrics=names,
            ) from err
        except HttpResponseError as err:
            raise self._http_error(what, resource_id, names, err) from err
        except (ServiceRequestError, ServiceResponseError) as err:
            raise AzureReadError(
                f"Reading {what} failed: ARM endpoint unreachable after retries "
                f"({type(err).__name__}: {_first_line(err.message)})",
                resource_id=resource_id,
                metrics=names,
            ) from err
        except DeserializationError as err:
            raise AzureReadError(
                f"Reading {what} failed: response was not a metrics payload ({_first_line(str(err))})",
                resource_id=resource_id,
                metrics=names,
            ) from err
        except AzureError as err:
            raise AzureReadError(
                f"Reading {what} failed: {type(err).__name__}: {_first_line(err.message)}",
                resource_id=resource_id,
                metrics=names,
            ) from err

    def _http_error(self, what: str, resource_id: str, names: Sequence[str], err: HttpResponseError) -> AzureReadError:
        status = err.status_code
        code, detail = _error_details(err)
        retried = ""
        if status is not None and (status in _RETRIED_STATUSES or status >= 506):
            retried = f" after {self.retry.total} retries"
        return AzureReadError(
            f"Reading {what} failed{retried}: HTTP {status} {code}: {detail}",
            resource_id=resource_id,
            metrics=names,
            status_code=status,
            error_code=code,
        )

    def _timespan(self, timespan: Timespan) -> str:
        if isinstance(timespan, dt.timedelta):
            end = self._clock()
            start = end - timespan
        else:
            start, end = timespan
        return f"{_iso(start)}/{_iso(end)}"


# Statuses azure-core's RetryPolicy retries by default (besides >= 506).
_RETRIED_STATUSES: Final = frozenset({408, 429, 500, 502, 503, 504})


def _validate_names(metric_names: Sequence[str]) -> list[str]:
    if isinstance(metric_names, str):
        raise TypeError("metric_names must be a sequence of names, not a single string")
    names = [n.strip() for n in metric_names]
    if not names or any(not n or "," in n for n in names):
        raise ValueError(f"metric names must be non-empty and contain no commas: {list(metric_names)!r}")
    if len(names) > MAX_METRICS_PER_CALL:
        raise ValueError(f"Azure Monitor accepts at most {MAX_METRICS_PER_CALL} metrics per call, got {len(names)}")
    return names


def _odata_filter(dimensions: Mapping[str, str]) -> str:
    # OData string literals escape a single quote by doubling it.
    return " and ".join(f"{name} eq '{value.replace(chr(39), chr(39) * 2)}'" for name, value in dimensions.items())


def _iso(stamp: dt.datetime) -> str:
    if stamp.tzinfo is None:
        raise ValueError("timespan datetimes must be timezone-aware")
    return stamp.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _as_float(value: Any) -> float | None:
    return None if value is None else float(value)


def _newest(readings: Iterable[MetricReading | None]) -> MetricReading | None:
    best: MetricReading | None = None
    for reading in readings:
        if reading is not None and (best is None or reading.timestamp > best.timestamp):
            best = reading
    return best


def _first_line(text: str | None) -> str:
    line = (text or "").strip().splitlines()[0] if (text or "").strip() else ""
    return line[:300]


_CHAIN_ENTRY = re.compile(r"^\s+(\w+Credential): ", re.MULTILINE)


def token_failure(err: ClientAuthenticationError) -> str:
    """One line for a credential that produced no token; the whole story goes to the run's log.

    DefaultAzureCredential's error lists every credential it tried (9 now, 13 lines with its links): what an
    operator needs to fix a setup, and noise in a playbook's verdict. The console gets a count and the ways to
    provide a credential; the log file (and the console under -v) gets each credential's own error.
    """
    text = (err.message or str(err)).strip()
    _LOG.info("Azure credential failure, every credential's error:\n%s", text)
    tried = _CHAIN_ENTRY.findall(text)
    if len(tried) < 2:
        return _first_line(text)
    return (f"no Azure credential worked (DefaultAzureCredential tried {len(tried)}): `az login`, "
            "AZURE_TENANT_ID/AZURE_CLIENT_ID/AZURE_CLIENT_SECRET or a managed identity provides one; each "
            "credential's error: the run's log, or -v")


def _aggregation(value: Aggregation | str) -> Aggregation:
    if isinstance(value, Aggregation):
        return value
    for member in Aggregation:
        if member.value.lower() == str(value).strip().lower():
            return member
    raise ValueError(f"unknown aggregation {value!r}; use one of {', '.join(a.value for a in Aggregation)}")


def _error_details(err: HttpResponseError) -> tuple[str, str]:
    model = getattr(err, "error", None)
    code = getattr(model, "code", None)
    message = getattr(model, "message", None)
    if not code and err.response is not None:
        # Metrics errors are sometimes flat {"code","message"} rather than ARM's {"error":{...}}.
        try:
            body: Any = err.response.json()  # type: ignore[attr-defined]  # azure-core's HttpResponse has json(); its stub's base lacks it
        except (ValueError, AttributeError):
            body = None
        if isinstance(body, dict):
            inner: Any = body.get("error") if isinstance(body.get("error"), dict) else body
            code = inner.get("code") or code
            message = inner.get("message") or message
    return str(code or err.reason or "error"), _first_line(message or err.reason or "")
