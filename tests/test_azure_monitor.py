"""MetricsReader against the local fake ARM, through the real MonitorManagementClient and azure-identity."""

from __future__ import annotations

import datetime as dt
import logging
import socket
from collections.abc import Iterator
from typing import Any

import pytest
from azure.core.credentials import AccessToken
from azure.identity import ManagedIdentityCredential

from ops.azure_monitor import (
    CONTAINER_APP_CPU_PERCENT,
    CONTAINER_APP_MEMORY_PERCENT,
    CONTAINER_APP_REPLICAS,
    SQL_DB_CPU_PERCENT,
    SQL_DB_DTU_CONSUMPTION_PERCENT,
    TM_ENDPOINT_STATE,
    Aggregation,
    AzureReadError,
    MetricReading,
    MetricsReader,
    RetrySettings,
)
from tests.fake_arm import FakeArm, FakeResponse, RecordingTransport, fake_arm_fixture  # noqa: F401

NOW = dt.datetime(2030, 1, 1, 12, 0, tzinfo=dt.UTC)
FAST = RetrySettings(total=3, backoff_factor=0.5, backoff_max=4.0, max_retry_after=30.0, timeout=30.0)


def make_reader(arm: FakeArm, **overrides: Any) -> MetricsReader:
    kwargs: dict[str, Any] = {
        "arm_endpoint": arm.base_url,
        "subscription_id": arm.subscription_id,
        "connection_verify": arm.ca_file,
        "retry": FAST,
        "clock": lambda: NOW,
    }
    kwargs.update(overrides)
    return MetricsReader(**kwargs)


@pytest.fixture
def transport(fake_arm: FakeArm) -> RecordingTransport:
    return RecordingTransport(connection_verify=fake_arm.ca_file)


@pytest.fixture
def reader(fake_arm: FakeArm, transport: RecordingTransport) -> Iterator[MetricsReader]:
    with make_reader(fake_arm, transport=transport) as r:
        yield r


@pytest.fixture
def app_id(fake_arm: FakeArm) -> str:
    return fake_arm.resource_id("rg-stamp-eus-1", "Microsoft.App/containerApps", "api")


# --------------------------------------------------------------------------- happy paths


def test_latest_uses_default_credential_managed_identity_and_sends_bearer(fake_arm: FakeArm, app_id: str) -> None:
    fake_arm.set_metric(app_id, CONTAINER_APP_CPU_PERCENT, [30.0, 45.5], unit="Percent")
    # No credential injected: DefaultAzureCredential must find the fake via IDENTITY_ENDPOINT/HEADER.
    with make_reader(fake_arm) as reader:
        assert reader.latest(app_id, CONTAINER_APP_CPU_PERCENT) == 45.5

    (token_req,) = fake_arm.token_requests
    assert token_req.header("X-IDENTITY-HEADER") == fake_arm.identity_header
    assert token_req.query["api-version"] == "2019-08-01"
    assert token_req.query["resource"] == fake_arm.base_url  # audience derived from the ARM endpoint

    (req,) = fake_arm.metric_requests()
    assert req.header("Authorization") == f"Bearer {fake_arm.access_token}"
    assert req.path == f"{app_id}/providers/Microsoft.Insights/metrics"
    assert req.query["metricnames"] == "CpuPercentage"
    assert req.query["aggregation"] == "Average"
    assert req.query["interval"] == "PT5M"
    assert req.query["timespan"] == "2030-01-01T11:30:00Z/2030-01-01T12:00:00Z"
    assert req.query["api-version"]
    assert "$filter" not in req.query


def test_latest_reading_is_typed(fake_arm: FakeArm, reader: MetricsReader, app_id: str) -> None:
    end = dt.datetime(2030, 1, 1, 11, 55, tzinfo=dt.UTC)
    fake_arm.set_metric(app_id, "Replicas", [2, 3], unit="Count", end=end)

    reading = reader.latest_reading(app_id, CONTAINER_APP_REPLICAS, Aggregation.MAXIMUM)

    assert reading == MetricReading(
        resource_id=app_id,
        metric="Replicas",
        aggregation=Aggregation.MAXIMUM,
        value=3.0,
        timestamp=end,
        unit="Count",
        dimensions={},
    )
    assert fake_arm.metric_requests()[0].query["aggregation"] == "Maximum"


def test_latest_skips_trailing_empty_points_and_returns_none_without_data(
    fake_arm: FakeArm, reader: MetricsReader, app_id: str
) -> None:
    fake_arm.set_metric(app_id, CONTAINER_APP_CPU_PERCENT, [12.0, 80.0, None, None])
    assert reader.latest(app_id, CONTAINER_APP_CPU_PERCENT) == 80.0

    fake_arm.set_metric(app_id, CONTAINER_APP_CPU_PERCENT, [None, None])
    assert reader.latest(app_id, CONTAINER_APP_CPU_PERCENT) is None


def test_latest_reads_the_requested_aggregation(fake_arm: FakeArm, reader: MetricsReader, app_id: str) -> None:
    fake_arm.set_metric(app_id, CONTAINER_APP_CPU_PERCENT, [{"average": 40.0, "maximum": 95.0}])
    assert reader.latest(app_id, CONTAINER_APP_CPU_PERCENT, "maximum") == 95.0  # case-insensitive
    assert reader.latest(app_id, CONTAINER_APP_CPU_PERCENT, Aggregation.AVERAGE) == 40.0


def test_latest_many_is_one_call_with_comma_joined_names(fake_arm: FakeArm, reader: MetricsReader, app_id: str) -> None:
    fake_arm.set_metric(app_id, CONTAINER_APP_CPU_PERCENT, [50.0, 71.0], unit="Percent")
    fake_arm.set_metric(app_id, CONTAINER_APP_MEMORY_PERCENT, [60.0], unit="Percent")
    fake_arm.set_metric(app_id, CONTAINER_APP_REPLICAS, [None], unit="Count")

    result = reader.latest_many(app_id, [CONTAINER_APP_CPU_PERCENT, CONTAINER_APP_MEMORY_PERCENT, "Replicas"])

    assert len(fake_arm.metric_requests()) == 1
    assert fake_arm.metric_requests()[0].query["metricnames"] == "CpuPercentage,MemoryPercentage,Replicas"
    cpu, mem = result[CONTAINER_APP_CPU_PERCENT], result[CONTAINER_APP_MEMORY_PERCENT]
    assert cpu is not None and (cpu.value, cpu.unit) == (71.0, "Percent")
    assert mem is not None and mem.value == 60.0
    assert result["Replicas"] is None


def test_batch_matches_metric_names_case_insensitively(fake_arm: FakeArm, reader: MetricsReader) -> None:
    db_id = fake_arm.resource_id("rg-stamp-eus-1", "Microsoft.Sql/servers", "sql-eus-1/databases/tenants")
    fake_arm.set_metric(db_id, SQL_DB_CPU_PERCENT, [{"maximum": 88.0}])
    fake_arm.set_metric(db_id, SQL_DB_DTU_CONSUMPTION_PERCENT, [{"maximum": 91.5}])

    result = reader.latest_many(db_id, ["CPU_PERCENT", SQL_DB_DTU_CONSUMPTION_PERCENT], Aggregation.MAXIMUM)

    cpu, dtu = result["CPU_PERCENT"], result[SQL_DB_DTU_CONSUMPTION_PERCENT]
    assert cpu is not None and (cpu.metric, cpu.value) == ("cpu_percent", 88.0)
    assert dtu is not None and dtu.value == 91.5


def test_explicit_timespan_and_dimension_filter_are_sent(fake_arm: FakeArm, reader: MetricsReader, app_id: str) -> None:
    fake_arm.set_metric(app_id, "Requests", [7.0], unit="Count", dimensions={"revisionName": "api--o'b"})
    start = dt.datetime(2030, 1, 1, 10, 0, tzinfo=dt.UTC)
    end = dt.datetime(2030, 1, 1, 11, 0, tzinfo=dt.UTC)

    series = reader.series(
        app_id,
        ["Requests"],
        Aggregation.TOTAL,
        interval="PT1H",
        timespan=(start, end),
        dimensions={"revisionName": "*"},
    )

    query = fake_arm.metric_requests()[0].query
    assert query["timespan"] == "2030-01-01T10:00:00Z/2030-01-01T11:00:00Z"
    assert query["interval"] == "PT1H"
    assert query["$filter"] == "revisionName eq '*'"
    (only,) = series["Requests"]
    assert only.dimensions == {"revisionName": "api--o'b"}
    assert [p.value for p in only.points] == [7.0]

    reader.series(app_id, ["Requests"], dimensions={"revisionName": "api--o'b"})
    assert fake_arm.metric_requests()[1].query["$filter"] == "revisionName eq 'api--o''b'"  # OData quote escape


# --------------------------------------------------------------------------- Traffic Manager


def test_endpoint_health_uses_tm_metric_with_endpoint_filter(fake_arm: FakeArm, reader: MetricsReader) -> None:
    profile = fake_arm.resource_id("rg-global", "Microsoft.Network/trafficManagerProfiles", "stamps-tm")
    fake_arm.set_metric(profile, TM_ENDPOINT_STATE, [1, 1], unit="Count", dimensions={"EndpointName": "eus-1"})
    fake_arm.set_metric(profile, TM_ENDPOINT_STATE, [1, 0], unit="Count", dimensions={"EndpointName": "weu-1"})

    assert reader.endpoint_health(profile, "eus-1") is True
    assert reader.endpoint_health(profile, "weu-1") is False
    assert reader.endpoint_health(profile, "sea-1") is None  # no series for that endpoint

    first = fake_arm.metric_requests()[0].query
    assert first["metricnames"] == "ProbeAgentCurrentEndpointStateByProfileResourceId"
    assert first["$filter"] == "EndpointName eq 'eus-1'"
    assert first["aggregation"] == "Maximum"
    assert first["interval"] == "PT1M"


# --------------------------------------------------------------------------- retries and errors


def test_429_is_retried_honouring_retry_after(
    fake_arm: FakeArm, reader: MetricsReader, transport: RecordingTransport, app_id: str
) -> None:
    fake_arm.set_metric(app_id, CONTAINER_APP_CPU_PERCENT, [33.0])
    fake_arm.fail_next(429, times=2, retry_after=7)

    assert reader.latest(app_id, CONTAINER_APP_CPU_PERCENT) == 33.0
    assert len(fake_arm.metric_requests()) == 3
    # The server's delay, not the (much smaller) exponential backoff, is what the policy waited for.
    assert transport.sleeps == [7.0, 7.0]


def test_retry_after_is_capped(fake_arm: FakeArm, transport: RecordingTransport, app_id: str) -> None:
    fake_arm.set_metric(app_id, CONTAINER_APP_CPU_PERCENT, [1.0])
    fake_arm.fail_next(429, times=1, retry_after=3600)
    capped = RetrySettings(total=2, backoff_factor=0.1, max_retry_after=2.5)
    with make_reader(fake_arm, transport=transport, retry=capped) as reader:
        assert reader.latest(app_id, CONTAINER_APP_CPU_PERCENT) == 1.0
    assert transport.sleeps == [2.5]


def test_503_without_retry_after_uses_exponential_backoff(
    fake_arm: FakeArm, reader: MetricsReader, transport: RecordingTransport, app_id: str
) -> None:
    fake_arm.set_metric(app_id, CONTAINER_APP_CPU_PERCENT, [5.0])
    fake_arm.fail_next(503, times=3)

    assert reader.latest(app_id, CONTAINER_APP_CPU_PERCENT) == 5.0
    assert len(fake_arm.metric_requests()) == 4
    # azure-core retries the first failure immediately, then factor * 2**(n-1): 0.5*2, 0.5*4.
    assert transport.sleeps == [1.0, 2.0]


def test_exhausted_retries_raise_one_clear_error(
    fake_arm: FakeArm, reader: MetricsReader, transport: RecordingTransport, app_id: str
) -> None:
    fake_arm.set_metric(app_id, CONTAINER_APP_CPU_PERCENT, [5.0])
    fake_arm.fail_next(503, times=50)

    with pytest.raises(AzureReadError) as info:
        reader.latest(app_id, CONTAINER_APP_CPU_PERCENT)

    err = info.value
    assert len(fake_arm.metric_requests()) == FAST.total + 1
    assert err.status_code == 503
    assert err.error_code == "ServiceUnavailable"
    assert err.resource_id == app_id
    assert err.metrics == ("CpuPercentage",)
    text = str(err)
    assert app_id in text and "CpuPercentage" in text
    assert "HTTP 503" in text and "after 3 retries" in text
    assert fake_arm.access_token not in text and fake_arm.identity_header not in text


def test_exhausted_429_reports_throttling(fake_arm: FakeArm, reader: MetricsReader, app_id: str) -> None:
    fake_arm.set_metric(app_id, CONTAINER_APP_CPU_PERCENT, [5.0])
    fake_arm.fail_next(429, times=50, retry_after=1)

    with pytest.raises(AzureReadError, match=r"HTTP 429 TooManyRequests") as info:
        reader.latest(app_id, CONTAINER_APP_CPU_PERCENT)
    assert info.value.status_code == 429
    assert len(fake_arm.metric_requests()) == FAST.total + 1


def test_unknown_metric_is_not_retried(fake_arm: FakeArm, reader: MetricsReader, app_id: str) -> None:
    fake_arm.set_metric(app_id, CONTAINER_APP_CPU_PERCENT, [5.0])

    with pytest.raises(AzureReadError) as info:
        reader.latest(app_id, "CPUPercent")

    assert len(fake_arm.metric_requests()) == 1
    assert info.value.status_code == 400
    assert info.value.error_code == "BadRequest"
    assert "Failed to find metric configuration" in str(info.value)
    assert "retries" not in str(info.value)


def test_missing_resource_is_a_404_read_error(fake_arm: FakeArm, reader: MetricsReader) -> None:
    gone = fake_arm.resource_id("rg-gone", "Microsoft.App/containerApps", "nope")
    with pytest.raises(AzureReadError) as info:
        reader.latest(gone, CONTAINER_APP_CPU_PERCENT)
    assert info.value.status_code == 404
    assert info.value.error_code == "ResourceNotFound"
    assert len(fake_arm.metric_requests()) == 1


def test_token_failure_becomes_read_error_without_leaking_the_identity_header(fake_arm: FakeArm, app_id: str) -> None:
    fake_arm.set_metric(app_id, CONTAINER_APP_CPU_PERCENT, [5.0])
    fake_arm.fail_token_next(401, times=5)
    # ManagedIdentityCredential is the step DefaultAzureCredential would use here; injecting it keeps the
    # test independent of whichever developer tools (az, azd, pwsh) happen to be installed.
    with (
        make_reader(fake_arm, credential=ManagedIdentityCredential()) as reader,
        pytest.raises(AzureReadError, match="could not obtain an ARM access token") as info,
    ):
        reader.latest(app_id, CONTAINER_APP_CPU_PERCENT)
    assert fake_arm.metric_requests() == []  # never called ARM without a token
    assert fake_arm.identity_header not in str(info.value)
    assert info.value.status_code is None


def test_unreachable_endpoint_is_retried_then_reported(fake_arm: FakeArm, transport: RecordingTransport) -> None:
    with socket.socket() as probe:  # a port that was free a moment ago and has no listener now
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    app = fake_arm.resource_id("rg", "Microsoft.App/containerApps", "api")
    with (
        make_reader(fake_arm, arm_endpoint=f"https://127.0.0.1:{port}", transport=transport) as reader,
        pytest.raises(AzureReadError, match="unreachable after retries"),
    ):
        reader.latest(app, CONTAINER_APP_CPU_PERCENT)
    # Three retries: the first is immediate, then exponential backoff (0.5 * 2, 0.5 * 4).
    assert transport.sleeps == [1.0, 2.0]


# --------------------------------------------------------------------------- credentials, scopes, logs


class _StaticCredential:
    """A minimal TokenCredential recording the scopes it was asked for."""

    def __init__(self, token: str) -> None:
        self.token = token
        self.scopes: list[tuple[str, ...]] = []

    def get_token(self, *scopes: str, **_: Any) -> AccessToken:
        self.scopes.append(scopes)
        return AccessToken(self.token, int(NOW.timestamp()) + 10**9)


def test_injected_credential_and_explicit_scopes(fake_arm: FakeArm, app_id: str) -> None:
    fake_arm.set_metric(app_id, CONTAINER_APP_CPU_PERCENT, [9.0])
    cred = _StaticCredential(fake_arm.access_token)
    scope = "https://management.usgovcloudapi.net/.default"
    with make_reader(fake_arm, credential=cred, credential_scopes=[scope]) as reader:
        assert reader.latest(app_id, CONTAINER_APP_CPU_PERCENT) == 9.0
    assert cred.scopes and set(cred.scopes) == {(scope,)}
    assert fake_arm.token_requests == []  # the injected credential replaced DefaultAzureCredential


def test_wrong_token_is_a_401_read_error(fake_arm: FakeArm, app_id: str) -> None:
    fake_arm.set_metric(app_id, CONTAINER_APP_CPU_PERCENT, [9.0])
    with (
        make_reader(fake_arm, credential=_StaticCredential("not-the-issued-token")) as reader,
        pytest.raises(AzureReadError) as info,
    ):
        reader.latest(app_id, CONTAINER_APP_CPU_PERCENT)
    assert info.value.status_code == 401
    assert info.value.error_code == "AuthenticationFailed"
    assert "not-the-issued-token" not in str(info.value)


def test_token_and_identity_header_never_reach_logs(
    fake_arm: FakeArm, app_id: str, caplog: pytest.LogCaptureFixture
) -> None:
    fake_arm.set_metric(app_id, CONTAINER_APP_CPU_PERCENT, [9.0])
    fake_arm.fail_next(503, times=1)
    caplog.set_level(logging.DEBUG)
    with make_reader(fake_arm, transport=RecordingTransport(connection_verify=fake_arm.ca_file)) as reader:
        assert reader.latest(app_id, CONTAINER_APP_CPU_PERCENT) == 9.0
    assert caplog.records  # azure-core / azure-identity did log the exchange...
    assert fake_arm.access_token not in caplog.text  # ...but not the bearer token
    assert fake_arm.identity_header not in caplog.text


# --------------------------------------------------------------------------- argument validation


def test_argument_validation(reader: MetricsReader, app_id: str) -> None:
    with pytest.raises(TypeError):
        reader.latest_many(app_id, "CpuPercentage")
    with pytest.raises(ValueError, match="at most 20"):
        reader.latest_many(app_id, [f"m{i}" for i in range(21)])
    with pytest.raises(ValueError, match="no commas"):
        reader.latest_many(app_id, ["CpuPercentage,MemoryPercentage"])
    naive = dt.datetime(2030, 1, 1, 10, 0)
    with pytest.raises(ValueError, match="timezone-aware"):
        reader.latest(app_id, CONTAINER_APP_CPU_PERCENT, timespan=(naive, naive))
    with pytest.raises(ValueError):
        reader.latest(app_id, CONTAINER_APP_CPU_PERCENT, aggregation="Median")


# --------------------------------------------------------------------------- the fake itself (reused by playbook tests)


def test_fake_arm_custom_routes_and_scoped_failures(fake_arm: FakeArm) -> None:
    import requests  # plain client: this checks the fake, not the reader

    endpoint = (
        fake_arm.resource_id("rg-global", "Microsoft.Network/trafficManagerProfiles", "tm") + "/azureEndpoints/eus-1"
    )
    fake_arm.add_route("PATCH", r".*/azureEndpoints/[^/]+", lambda req: FakeResponse(200, {"echo": req.json()}))
    fake_arm.fail_next(503, times=1, path_contains="/azureEndpoints/")
    url = f"{fake_arm.base_url}{endpoint}?api-version=2022-04-01"
    auth = {"Authorization": f"Bearer {fake_arm.access_token}"}
    body = {"properties": {"endpointStatus": "Disabled"}}

    first = requests.patch(url, json=body, headers=auth, verify=fake_arm.ca_file, timeout=5)
    second = requests.patch(url, json=body, headers=auth, verify=fake_arm.ca_file, timeout=5)
    unauthenticated = requests.patch(url, json=body, verify=fake_arm.ca_file, timeout=5)

    assert first.status_code == 503 and first.json()["error"]["code"] == "ServiceUnavailable"
    assert second.status_code == 200 and second.json() == {"echo": body}
    assert unauthenticated.status_code == 401
    assert [r.method for r in fake_arm.requests] == ["PATCH"] * 3
    assert fake_arm.requests[1].json() == body
