"""Local fake of Azure Resource Manager (HTTPS) and an App Service managed-identity token endpoint (HTTP).

Why this shape: the ops layer talks to Azure through the *real* azure-mgmt-monitor client and
azure-identity's ``DefaultAzureCredential``. To exercise that code without a subscription we serve
ARM-shaped JSON over TLS (azure-core's bearer-token policy refuses plain http) using a throw-away CA
generated at start-up, and serve tokens through the App Service managed-identity protocol
(``IDENTITY_ENDPOINT`` + ``IDENTITY_HEADER``), which is the first credential in DefaultAzureCredential's
chain that needs nothing but environment variables.

Usage (context manager)::

    with FakeArm() as arm:
        arm.set_metric(app_id, "CpuPercentage", [40.0, 55.0], unit="Percent")
        arm.fail_next(429, times=1, retry_after=0)
        # point the client at arm.base_url, verify TLS with arm.ca_file,
        # export arm.managed_identity_env() for DefaultAzureCredential
        ...
        assert arm.requests[-1].header("Authorization") == f"Bearer {arm.access_token}"

Other ARM reads: ``arm.set_resource(resource_id, body)`` serves a GET of one resource (or an error with
``status=``), ``arm.set_collection(path, items, page_size=2)`` a paged list, ``add_route`` anything else
(e.g. a POST query).

or as a pytest fixture: ``from tests.fake_arm import fake_arm_fixture  # noqa: F401`` in a test module
(or ``pytest_plugins = ["tests.fake_arm"]`` in the root conftest) and request ``fake_arm``; the fixture
also exports the managed-identity variables and clears service-principal ones via ``monkeypatch``.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import ipaddress
import json
import re
import secrets
import shutil
import ssl
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, urlsplit

import pytest
from azure.core.pipeline.transport import RequestsTransport
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = [
    "AGGREGATION_KEYS",
    "FakeArm",
    "FakeResponse",
    "MetricValueSpec",
    "RecordedRequest",
    "RecordingTransport",
    "fake_arm_fixture",
]

# Keys Azure Monitor uses for aggregations inside a data point (lower-case in the REST payload).
AGGREGATION_KEYS = ("average", "minimum", "maximum", "total", "count")

# Environment variables that would make DefaultAzureCredential pick something other than the fake's
# managed identity (service principal, workload identity, other MI flavours) or restrict the chain.
_COMPETING_CREDENTIAL_ENV = (
    "AZURE_CLIENT_ID",
    "AZURE_CLIENT_SECRET",
    "AZURE_TENANT_ID",
    "AZURE_CLIENT_CERTIFICATE_PATH",
    "AZURE_CLIENT_CERTIFICATE_PASSWORD",
    "AZURE_USERNAME",
    "AZURE_PASSWORD",
    "AZURE_FEDERATED_TOKEN_FILE",
    "AZURE_TOKEN_CREDENTIALS",
    "IDENTITY_SERVER_THUMBPRINT",
    "IMDS_ENDPOINT",
    "MSI_ENDPOINT",
    "MSI_SECRET",
)

_METRICS_PATH = re.compile(r"^(?P<rid>/.+?)/providers/microsoft\.insights/metrics/?$", re.IGNORECASE)
_FILTER_CLAUSE = re.compile(r"(?P<dim>[\w.\-]+)\s+eq\s+'(?P<val>[^']*)'", re.IGNORECASE)

# A data point value: a single number (reported under every requested aggregation), None (a point with
# no data, as Azure returns for idle periods), or an explicit per-aggregation mapping.
MetricValueSpec = float | int | None | Mapping[str, float]


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the fake saw it. ``query`` keeps the last value of each parameter."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    target: str  # "arm" or "token"

    def header(self, name: str) -> str | None:
        """Case-insensitive header lookup (HTTP header names are case-insensitive)."""
        lowered = name.lower()
        for key, value in self.headers.items():
            if key.lower() == lowered:
                return value
        return None

    def json(self) -> Any:
        return json.loads(self.body.decode("utf-8")) if self.body else None


@dataclass(frozen=True)
class FakeResponse:
    """What a custom route returns."""

    status: int = 200
    body: Any = None
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass
class _Series:
    dimensions: dict[str, str]
    points: list[tuple[dt.datetime, MetricValueSpec]]


@dataclass
class _Metric:
    name: str
    unit: str
    series: list[_Series]


@dataclass
class _Failure:
    status: int
    remaining: int
    retry_after: float | None
    path_contains: str | None
    body: Any


@dataclass
class _Stored:
    status: int
    body: Any
    items: list[Any] | None  # a collection: served as {"value": [...]} (paged when page_size is set)
    page_size: int | None


_Route = tuple[str, re.Pattern[str], Callable[[RecordedRequest], FakeResponse]]


class FakeArm:
    """Threaded HTTPS fake of ARM's metrics API plus an HTTP managed-identity token endpoint."""

    def __init__(
        self,
        *,
        subscription_id: str = "00000000-0000-0000-0000-000000000000",
        region: str = "eastus",
    ) -> None:
        self.subscription_id = subscription_id
        self.region = region
        # Random per instance so tests can prove the *issued* token is what reaches ARM.
        self.access_token = "fake-arm-token-" + secrets.token_hex(16)
        self.identity_header = "fake-identity-header-" + secrets.token_hex(16)
        self.requests: list[RecordedRequest] = []
        self.token_requests: list[RecordedRequest] = []
        self._lock = threading.Lock()
        self._metrics: dict[tuple[str, str], _Metric] = {}
        self._failures: list[_Failure] = []
        self._token_failures: list[_Failure] = []
        self._routes: list[_Route] = []
        self._resources: dict[str, _Stored] = {}
        self._tmpdir: Path | None = None
        self._arm: ThreadingHTTPServer | None = None
        self._token: ThreadingHTTPServer | None = None
        self._threads: list[threading.Thread] = []
        self.ca_file = ""
        self.base_url = ""
        self.identity_endpoint = ""

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> FakeArm:
        self._tmpdir = Path(tempfile.mkdtemp(prefix="fake-arm-"))
        ca_path, cert_path, key_path = _write_tls_material(self._tmpdir)
        self.ca_file = str(ca_path)

        tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        tls.load_cert_chain(cert_path, key_path)
        self._arm = _TlsThreadingServer(("127.0.0.1", 0), _make_handler(self, "arm"), tls)
        self._token = _QuietThreadingServer(("127.0.0.1", 0), _make_handler(self, "token"))
        self.base_url = f"https://127.0.0.1:{self._arm.server_address[1]}"
        # Same path App Service uses; plain http on loopback exactly like the real sidecar endpoint.
        self.identity_endpoint = f"http://127.0.0.1:{self._token.server_address[1]}/msi/token"
        for server in (self._arm, self._token):
            thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self) -> None:
        for server in (self._arm, self._token):
            if server is not None:
                server.shutdown()
                server.server_close()
        for thread in self._threads:
            thread.join(timeout=5)
        self._threads.clear()
        self._arm = self._token = None
        if self._tmpdir is not None:
            shutil.rmtree(self._tmpdir, ignore_errors=True)
            self._tmpdir = None

    def __enter__(self) -> FakeArm:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ configuration
    def managed_identity_env(self) -> dict[str, str]:
        """Variables that make DefaultAzureCredential's managed-identity step use this fake."""
        return {"IDENTITY_ENDPOINT": self.identity_endpoint, "IDENTITY_HEADER": self.identity_header}

    def resource_id(self, resource_group: str, provider_type: str, name: str) -> str:
        """ARM resource ID in this subscription, e.g. ("rg", "Microsoft.App/containerApps", "api")."""
        return f"/subscriptions/{self.subscription_id}/resourceGroups/{resource_group}/providers/{provider_type}/{name}"

    def set_metric(
        self,
        resource_id: str,
        name: str,
        values: Sequence[MetricValueSpec],
        *,
        unit: str = "Percent",
        dimensions: Mapping[str, str] | None = None,
        grain: dt.timedelta = dt.timedelta(minutes=1),
        end: dt.datetime | None = None,
    ) -> None:
        """Define (or replace) one time series of ``name`` on ``resource_id``; values are oldest first.

        The last value is stamped ``end`` (default: the current minute, UTC) and earlier ones step back by
        ``grain``. Series with different ``dimensions`` coexist, which is how dimension filters
        (e.g. Traffic Manager's ``EndpointName``) are served. The fake does not re-aggregate: the stored
        points come back whatever ``interval`` was asked for.
        """
        stop = end or dt.datetime.now(dt.UTC).replace(second=0, microsecond=0)
        count = len(values)
        points = [(stop - grain * (count - 1 - i), value) for i, value in enumerate(values)]
        dims = dict(dimensions or {})
        key = (_norm_path(resource_id), name.lower())
        with self._lock:
            metric = self._metrics.get(key)
            if metric is None:
                metric = self._metrics[key] = _Metric(name=name, unit=unit, series=[])
            metric.unit = unit
            metric.series = [s for s in metric.series if _lower_dims(s.dimensions) != _lower_dims(dims)]
            metric.series.append(_Series(dimensions=dims, points=points))

    def clear_metrics(self) -> None:
        with self._lock:
            self._metrics.clear()

    def fail_next(
        self,
        status: int,
        times: int = 1,
        retry_after: float | None = None,
        *,
        path_contains: str | None = None,
        body: Any = None,
    ) -> None:
        """Answer the next ``times`` ARM requests (optionally only those whose path contains
        ``path_contains``, case-insensitive) with ``status``; ``retry_after`` adds a Retry-After header
        (whole seconds are sent as ``Retry-After``, fractions as ``retry-after-ms``, both honoured by
        azure-core)."""
        with self._lock:
            self._failures.append(_Failure(status, times, retry_after, path_contains, body))

    def fail_token_next(self, status: int, times: int = 1) -> None:
        """Answer the next ``times`` token requests with ``status`` (App Service error shape)."""
        with self._lock:
            self._token_failures.append(_Failure(status, times, None, None, None))

    def add_route(
        self,
        method: str,
        path_pattern: str,
        responder: Callable[[RecordedRequest], FakeResponse] | FakeResponse | Any,
    ) -> None:
        """Serve another ARM endpoint (e.g. a Traffic Manager PATCH for failover tests).

        ``path_pattern`` is a regular expression matched case-insensitively against the whole path;
        ``responder`` is a callable, a ``FakeResponse`` or a JSON body returned with 200. Routes are
        checked before the built-in metrics handler; the bearer token is enforced for them as well.
        """
        if callable(responder):
            func = responder
        elif isinstance(responder, FakeResponse):
            fixed = responder

            def func(_req: RecordedRequest) -> FakeResponse:
                return fixed
        else:
            fixed_body = responder

            def func(_req: RecordedRequest) -> FakeResponse:
                return FakeResponse(200, fixed_body)

        with self._lock:
            self._routes.append((method.upper(), re.compile(path_pattern, re.IGNORECASE), func))

    def set_resource(self, path: str, body: Any, *, status: int = 200) -> None:
        """Serve ``GET path`` (an ARM id, matched case-insensitively, any query) with ``body``.

        Setting the same path again replaces it; ``status`` other than 200 serves ``body`` as that error
        (e.g. 404 with an ARM error body). Custom routes (``add_route``) are checked first.
        """
        with self._lock:
            self._resources[_norm_path(path)] = _Stored(status, body, None, None)

    def set_collection(self, path: str, items: Sequence[Any], *, page_size: int | None = None) -> None:
        """Serve ``GET path`` as an ARM list: ``{"value": [...]}``; with ``page_size``, in pages linked by
        ``nextLink`` (an absolute URL on this server carrying ``$skiptoken``), as ARM pages large lists."""
        with self._lock:
            self._resources[_norm_path(path)] = _Stored(200, None, list(items), page_size)

    def remove_resource(self, path: str) -> None:
        with self._lock:
            self._resources.pop(_norm_path(path), None)

    def requests_to(self, path: str, method: str | None = None) -> list[RecordedRequest]:
        """The ARM requests whose path equals ``path`` (case-insensitive), optionally of one method."""
        key = _norm_path(path)
        return [r for r in list(self.requests)
                if _norm_path(r.path) == key and (method is None or r.method == method.upper())]

    def metric_requests(self) -> list[RecordedRequest]:
        """The ARM requests that hit the metrics endpoint, in arrival order."""
        return [r for r in list(self.requests) if _METRICS_PATH.match(r.path)]

    # ------------------------------------------------------------------ request handling
    def _record(self, req: RecordedRequest) -> None:
        with self._lock:
            (self.requests if req.target == "arm" else self.token_requests).append(req)

    def _take_failure(self, queue: list[_Failure], path: str) -> _Failure | None:
        with self._lock:
            for failure in queue:
                if failure.path_contains and failure.path_contains.lower() not in path.lower():
                    continue
                failure.remaining -= 1
                if failure.remaining <= 0:
                    queue.remove(failure)
                return failure
        return None

    def _handle_token(self, req: RecordedRequest) -> FakeResponse:
        failure = self._take_failure(self._token_failures, req.path)
        if failure is not None:
            return FakeResponse(failure.status, {"statusCode": failure.status, "message": "injected failure"})
        if req.header("X-IDENTITY-HEADER") != self.identity_header:
            return FakeResponse(401, {"statusCode": 401, "message": "missing or wrong X-IDENTITY-HEADER"})
        resource = req.query.get("resource")
        if not resource:
            return FakeResponse(400, {"statusCode": 400, "message": "resource is required"})
        return FakeResponse(
            200,
            {
                "access_token": self.access_token,
                "expires_on": str(int(time.time()) + 3600),
                "resource": resource,
                "token_type": "Bearer",
                "client_id": "11111111-1111-1111-1111-111111111111",
            },
        )

    def _handle_arm(self, req: RecordedRequest) -> FakeResponse:
        failure = self._take_failure(self._failures, req.path)
        if failure is not None:
            headers: dict[str, str] = {}
            if failure.retry_after is not None:
                if float(failure.retry_after).is_integer():
                    headers["Retry-After"] = str(int(failure.retry_after))
                else:
                    headers["retry-after-ms"] = str(int(failure.retry_after * 1000))
            body = failure.body
            if body is None:
                body = {"error": {"code": _error_code(failure.status), "message": "injected failure"}}
            return FakeResponse(failure.status, body, headers)

        # Cosmos DB's data plane (`/dbs/...`) takes the Entra token as `type=aad&ver=1.0&sig=...`, URL-encoded.
        data_plane = req.path.startswith("/dbs/")
        expected = (quote(f"type=aad&ver=1.0&sig={self.access_token}", safe="") if data_plane
                    else f"Bearer {self.access_token}")
        if req.header("Authorization") != expected:
            return FakeResponse(
                401,
                {"error": {"code": "AuthenticationFailed", "message": "missing or invalid bearer token"}},
            )
        if "api-version" not in req.query and not data_plane:
            return FakeResponse(
                400, {"error": {"code": "MissingApiVersionParameter", "message": "api-version is required"}}
            )

        with self._lock:
            routes = list(self._routes)
        for method, pattern, func in routes:
            if method == req.method and pattern.fullmatch(req.path):
                return func(req)

        with self._lock:
            stored = self._resources.get(_norm_path(req.path)) if req.method == "GET" else None
        if stored is not None:
            return self._stored_response(req, stored)

        match = _METRICS_PATH.match(req.path)
        if req.method == "GET" and match:
            return self._metrics_response(match.group("rid"), req.query)
        return FakeResponse(404, {"error": {"code": "NotFound", "message": f"no fake route for {req.path}"}})

    def _stored_response(self, req: RecordedRequest, stored: _Stored) -> FakeResponse:
        if stored.items is None:
            return FakeResponse(stored.status, stored.body)
        start = int(req.query.get("$skiptoken") or 0)
        size = stored.page_size or max(len(stored.items), 1)
        page: dict[str, Any] = {"value": stored.items[start:start + size]}
        if start + size < len(stored.items):
            page["nextLink"] = (f"{self.base_url}{req.path}?api-version={req.query.get('api-version', '')}"
                                f"&$skiptoken={start + size}")
        return FakeResponse(200, page)

    def _metrics_response(self, resource_id: str, query: Mapping[str, str]) -> FakeResponse:
        rid = _norm_path(resource_id)
        names = [n.strip() for n in query.get("metricnames", "").split(",") if n.strip()]
        aggregations = [a.strip().lower() for a in query.get("aggregation", "average").split(",") if a.strip()]
        bad_aggs = [a for a in aggregations if a not in AGGREGATION_KEYS]
        if bad_aggs:
            return FakeResponse(400, {"code": "BadRequest", "message": f"invalid aggregation {bad_aggs}"})
        filters = {m.group("dim").lower(): m.group("val") for m in _FILTER_CLAUSE.finditer(query.get("$filter", ""))}
        if query.get("$filter") and not filters:
            return FakeResponse(400, {"code": "BadRequest", "message": "could not parse $filter"})

        with self._lock:
            known = {key[1]: m for key, m in self._metrics.items() if key[0] == rid}
            if not known:
                return FakeResponse(
                    404,
                    {"error": {"code": "ResourceNotFound", "message": f"resource {resource_id} not found"}},
                )
            if not names:
                names = [next(iter(known.values())).name]
            missing = [n for n in names if n.lower() not in known]
            if missing:
                # Mirrors the real 400 for a metric name the resource type does not define.
                return FakeResponse(
                    400,
                    {
                        "code": "BadRequest",
                        "message": "Failed to find metric configuration for provider: "
                        f"resource: {resource_id}, metric: '{missing[0]}', "
                        f"Valid metrics: {', '.join(m.name for m in known.values())}",
                    },
                )
            value = [_metric_json(resource_id, known[n.lower()], aggregations, filters) for n in names]

        interval = query.get("interval", "PT1M")
        now = dt.datetime.now(dt.UTC).replace(microsecond=0)
        timespan = query.get("timespan") or f"{_iso(now - dt.timedelta(hours=1))}/{_iso(now)}"
        return FakeResponse(
            200,
            {
                "cost": 0,
                "timespan": timespan,
                "interval": interval,
                "value": value,
                "namespace": _namespace_of(resource_id),
                "resourceregion": self.region,
            },
        )


class RecordingTransport(RequestsTransport):
    """azure-core's requests transport, except that retry sleeps are recorded instead of slept.

    Inject it (``transport=RecordingTransport(connection_verify=arm.ca_file)``) to make retry tests
    instant and to check the delays the RetryPolicy asked for (e.g. that ``Retry-After`` was honoured)
    without measuring wall-clock time.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.sleeps: list[float] = []

    def sleep(self, duration: float) -> None:
        self.sleeps.append(duration)


# ---------------------------------------------------------------------- helpers


def _metric_json(
    resource_id: str, metric: _Metric, aggregations: Sequence[str], filters: Mapping[str, str]
) -> dict[str, Any]:
    if filters:
        chosen = [
            s
            for s in metric.series
            if all(
                val == "*" or _lower_dims(s.dimensions).get(dim, "").lower() == val.lower()
                for dim, val in filters.items()
            )
        ]
    else:
        # Without a filter Azure rolls dimensions up into one series; the fake returns the
        # undimensioned series if one was set, else the first one.
        plain = [s for s in metric.series if not s.dimensions]
        chosen = (plain or metric.series)[:1]

    timeseries = []
    for series in chosen:
        metadata = []
        if filters:
            for dim_name, dim_value in series.dimensions.items():
                if dim_name.lower() in filters:
                    metadata.append({"name": {"value": dim_name, "localizedValue": dim_name}, "value": dim_value})
        timeseries.append({"metadatavalues": metadata, "data": [_point(t, v, aggregations) for t, v in series.points]})
    return {
        "id": f"{resource_id}/providers/Microsoft.Insights/metrics/{metric.name}",
        "type": "Microsoft.Insights/metrics",
        "name": {"value": metric.name, "localizedValue": metric.name},
        "displayDescription": "",
        "unit": metric.unit,
        "timeseries": timeseries,
        "errorCode": "Success",
    }


def _point(stamp: dt.datetime, value: MetricValueSpec, aggregations: Sequence[str]) -> dict[str, Any]:
    point: dict[str, Any] = {"timeStamp": _iso(stamp)}
    if value is None:
        return point  # Azure omits the aggregation keys for intervals without data.
    if isinstance(value, Mapping):
        for agg in aggregations:
            if agg in value:
                point[agg] = float(value[agg])
        return point
    for agg in aggregations:
        point[agg] = float(value)
    return point


def _iso(stamp: dt.datetime) -> str:
    return stamp.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _norm_path(path: str) -> str:
    return "/" + path.strip("/").lower()


def _lower_dims(dims: Mapping[str, str]) -> dict[str, str]:
    return {k.lower(): v for k, v in dims.items()}


def _namespace_of(resource_id: str) -> str:
    parts = resource_id.strip("/").split("/")
    try:
        idx = max(i for i, p in enumerate(parts) if p.lower() == "providers")
    except ValueError:
        return ""
    provider = parts[idx + 1] if idx + 1 < len(parts) else ""
    types = parts[idx + 2 :: 2]
    return "/".join([provider, *types])


def _error_code(status: int) -> str:
    return {
        429: "TooManyRequests",
        500: "InternalServerError",
        502: "BadGateway",
        503: "ServiceUnavailable",
        504: "GatewayTimeout",
    }.get(status, f"Http{status}")


def _write_tls_material(directory: Path) -> tuple[Path, Path, Path]:
    """A throw-away CA plus a 127.0.0.1/localhost leaf it signed.

    A proper CA + leaf (rather than one self-signed leaf) keeps OpenSSL's strict chain checks happy.
    """
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "stamps fake-arm test CA")])
    ca_ski = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(ca_ski, critical=False)
        .sign(ca_key, hashes.SHA256())
    )

    leaf_key = ec.generate_private_key(ec.SECP256R1())
    leaf_cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(leaf_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(leaf_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )

    ca_path = directory / "ca.pem"
    cert_path = directory / "server.pem"
    key_path = directory / "server.key"
    ca_path.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    cert_path.write_bytes(leaf_cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        leaf_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return ca_path, cert_path, key_path


class _QuietThreadingServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


class _TlsThreadingServer(_QuietThreadingServer):
    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler], tls: ssl.SSLContext) -> None:
        super().__init__(address, handler)
        self._tls = tls

    def get_request(self) -> tuple[Any, Any]:
        sock, addr = self.socket.accept()
        # Handshake lazily in the handler thread so one slow client cannot stall accept().
        return self._tls.wrap_socket(sock, server_side=True, do_handshake_on_connect=False), addr

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients that drop connections (e.g. on shutdown) are not test failures; stay quiet.
        return


def _make_handler(fake: FakeArm, target: str) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            return  # keep test output clean

        def _dispatch(self) -> None:
            split = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            path = "/" + split.path.lstrip("/")
            req = RecordedRequest(
                method=self.command,
                path=path,
                query=dict(parse_qsl(split.query, keep_blank_values=True)),
                headers={k: v for k, v in self.headers.items()},
                body=body,
                target=target,
            )
            fake._record(req)
            try:
                resp = fake._handle_token(req) if target == "token" else fake._handle_arm(req)
            except Exception as exc:  # surface fake bugs as 500s the test can see
                resp = FakeResponse(500, {"error": {"code": "FakeArmBug", "message": repr(exc)}})
            payload = b"" if resp.body is None else json.dumps(resp.body).encode("utf-8")
            self.send_response(resp.status)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(payload)))
            self.send_header("x-ms-request-id", secrets.token_hex(8))
            for name, value in resp.headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(payload)

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _dispatch

    return Handler


@contextlib.contextmanager
def serving(monkeypatch: pytest.MonkeyPatch, **kwargs: Any) -> Iterator[FakeArm]:
    """A started ``FakeArm(**kwargs)`` with DefaultAzureCredential's environment pointed at it."""
    for name in _COMPETING_CREDENTIAL_ENV:
        monkeypatch.delenv(name, raising=False)
    with FakeArm(**kwargs) as arm:
        for name, value in arm.managed_identity_env().items():
            monkeypatch.setenv(name, value)
        yield arm


@pytest.fixture(name="fake_arm")
def fake_arm_fixture(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeArm]:
    with serving(monkeypatch) as arm:
        yield arm
