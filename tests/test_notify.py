"""Notification channels and the fan-out Notifier against a local HTTP receiver."""

from __future__ import annotations

import json
import logging
import pickle
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from ops.notify import (
    REDACTED,
    Action,
    DeliveryResult,
    HttpSettings,
    Incident,
    Notifier,
    PagerDutyEvents,
    Secret,
    Severity,
    SlackWebhook,
    StatuspageIncident,
    redact,
)

# Distinctive values so a leak anywhere is unambiguous.
SLACK_PATH = "/services/T0STAMPS/B0OPS/slackSecretToken123456"
ROUTING_KEY = "pdRoutingKey0123456789abcdefSECRET"
STATUSPAGE_KEY = "statuspageApiKey-9876543210-SECRET"
PAGE_ID = "pg42stamps"

FAST = HttpSettings(max_attempts=3, backoff=0.25, backoff_max=1.0, max_retry_after=10.0, read_timeout=5.0)


# --------------------------------------------------------------------------- local receiver


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers.items() if k.lower() == name.lower()), None)


@dataclass
class Scripted:
    status: int
    body: bytes
    headers: dict[str, str]
    delay: float = 0.0


@dataclass
class Receiver:
    """Records every request; answers like the real services unless a path is scripted to misbehave."""

    base_url: str = ""
    requests: list[Received] = field(default_factory=list)
    scripts: dict[str, list[Scripted]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def script(
        self,
        path_prefix: str,
        status: int,
        *,
        times: int = 1,
        body: Any = "",
        headers: dict[str, str] | None = None,
        delay: float = 0.0,
    ) -> None:
        raw = body if isinstance(body, bytes) else (body if isinstance(body, str) else json.dumps(body)).encode()
        with self.lock:
            self.scripts.setdefault(path_prefix, []).extend(
                Scripted(status, raw, dict(headers or {}), delay) for _ in range(times)
            )

    def on(self, path_prefix: str) -> list[Received]:
        return [r for r in self.requests if r.path.startswith(path_prefix)]

    def answer(self, req: Received) -> Scripted:
        with self.lock:
            self.requests.append(req)
            for prefix, queue in self.scripts.items():
                if req.path.startswith(prefix) and queue:
                    return queue.pop(0)
        if req.path.startswith("/services/"):
            return Scripted(200, b"ok", {"Content-Type": "text/html"})
        if req.path == "/v2/enqueue":
            dedup = req.json().get("dedup_key")
            body = {"status": "success", "message": "Event processed", "dedup_key": dedup}
            return Scripted(202, json.dumps(body).encode(), {"Content-Type": "application/json"})
        if req.path.startswith("/v1/pages/") and req.method == "POST":
            incident = {"id": "inc-1001", **req.json()["incident"]}
            return Scripted(201, json.dumps(incident).encode(), {"Content-Type": "application/json"})
        if req.path.startswith("/v1/pages/") and req.method == "PATCH":
            incident = {"id": req.path.rsplit("/", 1)[-1], **req.json()["incident"]}
            return Scripted(200, json.dumps(incident).encode(), {"Content-Type": "application/json"})
        return Scripted(404, b"not found", {})


def _handler(receiver: Receiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            return

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            req = Received(self.command, self.path, dict(self.headers.items()), self.rfile.read(length))
            reply = receiver.answer(req)
            if reply.delay:
                time.sleep(reply.delay)  # simulate a hung upstream for timeout tests
            try:
                self.send_response(reply.status)
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(reply.body)))
                self.end_headers()
                self.wfile.write(reply.body)
            except OSError:
                pass  # the client already gave up (timeout test)

        do_POST = do_PATCH = do_GET = _serve

    return Handler


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    rec = Receiver()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(rec))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    rec.base_url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield rec
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


class SleepRecorder:
    """Stands in for time.sleep: records requested delays so tests stay fast and timing-free."""

    def __init__(self) -> None:
        self.calls: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


@pytest.fixture
def sleeps() -> SleepRecorder:
    return SleepRecorder()


def slack(receiver: Receiver, sleeps: SleepRecorder, **kw: Any) -> SlackWebhook:
    return SlackWebhook(Secret(receiver.base_url + SLACK_PATH), settings=FAST, sleep=sleeps, **kw)


def pagerduty(receiver: Receiver, sleeps: SleepRecorder) -> PagerDutyEvents:
    return PagerDutyEvents(
        Secret(ROUTING_KEY), events_url=receiver.base_url + "/v2/enqueue", settings=FAST, sleep=sleeps
    )


def statuspage(receiver: Receiver, sleeps: SleepRecorder, **kw: Any) -> StatuspageIncident:
    return StatuspageIncident(
        Secret(STATUSPAGE_KEY), PAGE_ID, api_base=receiver.base_url, settings=FAST, sleep=sleeps, **kw
    )


FAILOVER = Incident(
    summary="Stamp eus-1 unhealthy: failing over tenants to weu-1",
    severity=Severity.CRITICAL,
    source="stamps-ops/failover",
    component="stamp-eus-1",
    details={"tm_endpoint": "eus-1", "sql_cpu_percent": 97.5, "tenants": ["t1", "t2"]},
    dedup_key="failover-stamp-eus-1",
    public_title="Elevated errors in East US",
    public_message="Some customers in East US see errors. We are moving traffic to another region.",
)


# --------------------------------------------------------------------------- Secret


def test_secret_never_shows_itself() -> None:
    secret = Secret("hunter2-is-not-a-good-password")
    rendered = [repr(secret), str(secret), f"{secret}", f"{secret!r}", format(secret, ">40"), str([secret])]
    assert all("hunter2" not in text for text in rendered)
    assert REDACTED in str(secret)
    assert secret.reveal() == "hunter2-is-not-a-good-password"
    assert secret == Secret("hunter2-is-not-a-good-password")
    assert secret != Secret("something-else-entirely")
    with pytest.raises(TypeError):
        pickle.dumps(secret)
    with pytest.raises(TypeError):
        hash(secret)
    with pytest.raises(ValueError, match=r"^a Secret needs a non-empty string value$"):
        Secret("   ")


def test_redact_covers_secret_urls_and_their_paths() -> None:
    Secret("https://hooks.example.test/services/TAAAA/BBBBB/cccccccccccc")
    assert redact("POST /services/TAAAA/BBBBB/cccccccccccc 200") == f"POST {REDACTED} 200"
    assert "cccccccccccc" not in redact("url=https://hooks.example.test/services/TAAAA/BBBBB/cccccccccccc")


def test_secret_urls_must_be_https_except_loopback() -> None:
    with pytest.raises(ValueError) as info:
        SlackWebhook(Secret("http://hooks.slack.com/services/T1/B1/plaintextSecret99"))
    assert "plaintextSecret99" not in str(info.value)
    with pytest.raises(ValueError):
        PagerDutyEvents(Secret(ROUTING_KEY), events_url="http://events.pagerduty.com/v2/enqueue")
    # https anywhere and http on loopback are fine
    SlackWebhook(Secret("https://hooks.slack.com/services/T1/B1/okSecret12345")).close()
    PagerDutyEvents(Secret(ROUTING_KEY), events_url="http://localhost:9/v2/enqueue").close()


# --------------------------------------------------------------------------- payload shapes


def test_slack_payload_shape(receiver: Receiver, sleeps: SleepRecorder) -> None:
    channel = slack(receiver, sleeps, username="stamps-bot", channel="#ops-incidents")
    result = channel.send(FAILOVER)

    assert result == DeliveryResult("slack", ok=True, attempts=1, status_code=200)
    (req,) = receiver.requests
    assert (req.method, req.path) == ("POST", SLACK_PATH)
    assert req.header("Content-Type") == "application/json"
    body = req.json()
    assert set(body) == {"text", "username", "channel"}
    assert body["username"] == "stamps-bot" and body["channel"] == "#ops-incidents"
    assert body["text"].startswith(":rotating_light: *[CRITICAL]* Stamp eus-1 unhealthy")
    assert "stamps-ops/failover / stamp-eus-1" in body["text"]
    assert "• sql_cpu_percent: 97.5" in body["text"]


def test_slack_resolve_wording(receiver: Receiver, sleeps: SleepRecorder) -> None:
    resolved = Incident(summary="Stamp eus-1 healthy again", action=Action.RESOLVE, component="stamp-eus-1")
    assert slack(receiver, sleeps, channel=None).send(resolved).ok
    body = receiver.requests[0].json()
    assert body["text"].startswith(":white_check_mark: *[RESOLVED]* Stamp eus-1 healthy again")
    assert "channel" not in body


def test_pagerduty_trigger_payload_shape(receiver: Receiver, sleeps: SleepRecorder) -> None:
    result = pagerduty(receiver, sleeps).send(FAILOVER)

    assert result.ok and result.status_code == 202
    assert result.reference == "failover-stamp-eus-1"
    (req,) = receiver.requests
    assert (req.method, req.path) == ("POST", "/v2/enqueue")
    assert req.json() == {
        "routing_key": ROUTING_KEY,
        "event_action": "trigger",
        "dedup_key": "failover-stamp-eus-1",
        "payload": {
            "summary": FAILOVER.summary,
            "severity": "critical",
            "source": "stamps-ops/failover",
            "component": "stamp-eus-1",
            "custom_details": {"tm_endpoint": "eus-1", "sql_cpu_percent": 97.5, "tenants": ["t1", "t2"]},
        },
    }


def test_pagerduty_resolve_reuses_derived_dedup_key(receiver: Receiver, sleeps: SleepRecorder) -> None:
    trigger = Incident(summary="DTU > 95% on sql-eus-1", severity=Severity.WARNING, component="sql-eus-1")
    resolve = Incident(summary=trigger.summary, component="sql-eus-1", action=Action.RESOLVE)
    channel = pagerduty(receiver, sleeps)
    assert channel.send(trigger).ok and channel.send(resolve).ok

    first, second = (r.json() for r in receiver.requests)
    assert first["dedup_key"] == second["dedup_key"] == "stamps-ops:sql-eus-1:DTU > 95% on sql-eus-1"
    assert first["payload"]["severity"] == "warning"
    assert second == {"routing_key": ROUTING_KEY, "event_action": "resolve", "dedup_key": first["dedup_key"]}


def test_statuspage_incident_shape_and_public_wording(receiver: Receiver, sleeps: SleepRecorder) -> None:
    result = statuspage(receiver, sleeps, component_ids=["cmp-api"]).send(FAILOVER)

    assert result.ok and result.status_code == 201 and result.reference == "inc-1001"
    (req,) = receiver.requests
    assert (req.method, req.path) == ("POST", f"/v1/pages/{PAGE_ID}/incidents")
    assert req.header("Authorization") == f"OAuth {STATUSPAGE_KEY}"
    assert req.json() == {
        "incident": {
            "name": "Elevated errors in East US",
            "status": "investigating",
            "impact_override": "critical",
            "body": FAILOVER.public_message,
            "component_ids": ["cmp-api"],
        }
    }
    # Internal detail stays off the public page.
    assert "stamp-eus-1" not in req.body.decode() and "97.5" not in req.body.decode()


def test_statuspage_resolve_patches_known_incident_or_skips(receiver: Receiver, sleeps: SleepRecorder) -> None:
    channel = statuspage(receiver, sleeps)
    resolved = Incident(summary="ok", action=Action.RESOLVE, statuspage_incident_id="inc-1001")
    result = channel.send(resolved)
    assert result.ok and result.reference == "inc-1001"
    (req,) = receiver.requests
    assert (req.method, req.path) == ("PATCH", f"/v1/pages/{PAGE_ID}/incidents/inc-1001")
    assert req.json()["incident"]["status"] == "resolved"

    skipped = channel.send(Incident(summary="ok", action=Action.RESOLVE))
    assert skipped.ok and skipped.skipped and skipped.attempts == 0
    assert len(receiver.requests) == 1


def test_severity_maps_to_statuspage_impact(receiver: Receiver, sleeps: SleepRecorder) -> None:
    channel = statuspage(receiver, sleeps)
    for severity in Severity:
        channel.send(Incident(summary="x", severity=severity))
    impacts = [r.json()["incident"]["impact_override"] for r in receiver.requests]
    assert impacts == ["critical", "major", "minor", "none"]


# --------------------------------------------------------------------------- retries


def test_5xx_is_retried_with_backoff_then_delivered(receiver: Receiver, sleeps: SleepRecorder) -> None:
    receiver.script("/v2/enqueue", 503, times=2, body={"status": "unavailable"})
    result = pagerduty(receiver, sleeps).send(FAILOVER)

    assert result.ok and result.attempts == 3
    assert len(receiver.on("/v2/enqueue")) == 3
    assert sleeps.calls == [0.25, 0.5]


def test_429_honours_retry_after_capped(receiver: Receiver, sleeps: SleepRecorder) -> None:
    receiver.script(SLACK_PATH, 429, body="rate_limited", headers={"Retry-After": "4"})
    receiver.script(SLACK_PATH, 429, body="rate_limited", headers={"Retry-After": "600"})
    result = slack(receiver, sleeps).send(FAILOVER)

    assert result.ok and result.attempts == 3
    assert sleeps.calls == [4.0, FAST.max_retry_after]


def test_statuspage_420_is_treated_as_rate_limit(receiver: Receiver, sleeps: SleepRecorder) -> None:
    receiver.script("/v1/pages/", 420, body={"error": "rate limited"}, headers={"Retry-After": "1"})
    result = statuspage(receiver, sleeps).send(FAILOVER)
    assert result.ok and result.attempts == 2
    assert sleeps.calls == [1.0]


def test_client_errors_are_not_retried(receiver: Receiver, sleeps: SleepRecorder) -> None:
    receiver.script("/v2/enqueue", 400, body={"status": "invalid event", "message": "Event object is invalid"})
    result = pagerduty(receiver, sleeps).send(FAILOVER)

    assert not result.ok and result.attempts == 1 and result.status_code == 400
    assert result.error is not None and "HTTP 400" in result.error and "Event object is invalid" in result.error
    assert sleeps.calls == []


def test_retries_are_bounded(receiver: Receiver, sleeps: SleepRecorder) -> None:
    receiver.script(SLACK_PATH, 500, times=10, body="internal_error")
    result = slack(receiver, sleeps).send(FAILOVER)

    assert not result.ok and result.status_code == 500
    assert result.attempts == FAST.max_attempts == len(receiver.requests)
    assert result.error == "gave up after 3 attempts: HTTP 500: internal_error"
    assert len(sleeps.calls) == FAST.max_attempts - 1


def test_timeout_is_reported_without_secret(receiver: Receiver, sleeps: SleepRecorder) -> None:
    receiver.script(SLACK_PATH, 200, body="ok", delay=2.0)
    quick = HttpSettings(max_attempts=1, connect_timeout=1.0, read_timeout=0.2)
    channel = SlackWebhook(Secret(receiver.base_url + SLACK_PATH), settings=quick, sleep=sleeps)
    result = channel.send(FAILOVER)
    assert not result.ok and result.status_code is None
    assert result.error == "gave up after 1 attempts: request timed out"


def test_connection_errors_are_retried_and_redacted(sleeps: SleepRecorder) -> None:
    with socket.socket() as probe:  # a port with no listener
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    channel = SlackWebhook(Secret(f"http://127.0.0.1:{port}{SLACK_PATH}"), settings=FAST, sleep=sleeps)
    result = channel.send(FAILOVER)

    assert not result.ok and result.attempts == 3 and sleeps.calls == [0.25, 0.5]
    assert result.error is not None and result.error.startswith("gave up after 3 attempts: ConnectionError")
    assert "slackSecretToken" not in result.error and "/services/" not in result.error


# --------------------------------------------------------------------------- Notifier


def test_one_failing_channel_does_not_block_the_others(receiver: Receiver, sleeps: SleepRecorder) -> None:
    receiver.script(SLACK_PATH, 503, times=10, body="down")
    notifier = Notifier([slack(receiver, sleeps), pagerduty(receiver, sleeps), statuspage(receiver, sleeps)])

    report = notifier.notify(FAILOVER)
    notifier.close()

    assert [r.channel for r in report.results] == ["slack", "pagerduty", "statuspage"]
    by_channel = report.by_channel()
    assert not by_channel["slack"].ok and by_channel["slack"].attempts == 3
    assert by_channel["pagerduty"].ok and by_channel["pagerduty"].reference == "failover-stamp-eus-1"
    assert by_channel["statuspage"].ok and by_channel["statuspage"].reference == "inc-1001"
    assert not report.ok and [r.channel for r in report.failed] == ["slack"]
    assert len(receiver.on("/v2/enqueue")) == 1 and len(receiver.on("/v1/pages/")) == 1


class _ExplodingChannel:
    name = "exploding"

    def send(self, incident: Incident) -> DeliveryResult:
        raise RuntimeError(f"boom while posting to {ROUTING_KEY}")

    def preview(self, incident: Incident) -> DeliveryResult:
        raise RuntimeError("boom")

    def close(self) -> None:
        raise RuntimeError("close failed")


def test_a_crashing_channel_is_isolated_and_redacted(receiver: Receiver, sleeps: SleepRecorder) -> None:
    Secret(ROUTING_KEY)  # registered, as it would be when the real channel is configured
    with Notifier([_ExplodingChannel(), pagerduty(receiver, sleeps)]) as notifier:
        report = notifier.notify(FAILOVER)

    crashed, paged = report.results
    assert not crashed.ok and crashed.error == f"RuntimeError: boom while posting to {REDACTED}"
    assert paged.ok


def test_dry_run_returns_payloads_without_sending(receiver: Receiver, sleeps: SleepRecorder) -> None:
    notifier = Notifier(
        [slack(receiver, sleeps), pagerduty(receiver, sleeps), statuspage(receiver, sleeps)], dry_run=True
    )
    report = notifier.notify(FAILOVER)

    assert receiver.requests == []
    assert report.ok and all(r.dry_run and r.attempts == 0 for r in report.results)
    slack_payload, pd_payload, sp_payload = (r.payload for r in report.results)
    assert slack_payload is not None and set(slack_payload) == {"text", "username"}
    assert pd_payload is not None and pd_payload["routing_key"] == REDACTED
    assert pd_payload["event_action"] == "trigger" and pd_payload["payload"]["severity"] == "critical"
    assert sp_payload is not None and sp_payload["incident"]["status"] == "investigating"
    rendered = repr(report)
    assert ROUTING_KEY not in rendered and STATUSPAGE_KEY not in rendered and SLACK_PATH not in rendered


def test_secrets_never_reach_logs_or_results(
    receiver: Receiver, sleeps: SleepRecorder, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)  # includes urllib3's per-request DEBUG lines
    receiver.script(SLACK_PATH, 500, times=1, body="oops")
    receiver.script("/v1/pages/", 503, times=5, body="down")
    channels = [slack(receiver, sleeps), pagerduty(receiver, sleeps), statuspage(receiver, sleeps)]
    with Notifier(channels) as notifier:
        report = notifier.notify(FAILOVER)

    assert any(r.name.startswith("urllib3") for r in caplog.records)  # the risky logger did log
    assert any("retrying" in r.getMessage() for r in caplog.records)
    leaked = [s for s in (SLACK_PATH, "slackSecretToken", ROUTING_KEY, STATUSPAGE_KEY) if s in caplog.text]
    assert leaked == []
    rendered = repr(report) + "".join(str(r.error) for r in report.results)
    assert all(s not in rendered for s in (SLACK_PATH, ROUTING_KEY, STATUSPAGE_KEY))
    assert repr(channels[0].__dict__).count("slackSecretToken") == 0
