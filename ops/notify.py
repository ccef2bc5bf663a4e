"""Failover / incident notifications: Slack incoming webhook, PagerDuty Events API v2, Statuspage incidents.

Each channel gets its endpoint and credential from the caller wrapped in ``Secret`` (a Slack webhook URL
*is* a credential), retries 429/5xx a bounded number of times with timeouts, and returns a
``DeliveryResult`` instead of raising. ``Notifier`` fans an ``Incident`` out to all channels in parallel
and reports per channel, so a dead Slack never stops the page to the on-call. ``dry_run`` returns the
payloads (secrets redacted) without sending anything.

Secret hygiene: secrets are only revealed at the moment a request is built; results, errors, reprs and
log records carry redacted text. Because urllib3 logs request paths at DEBUG level (and a Slack webhook
path is the secret), a redacting filter is attached to the urllib3/requests loggers when this module is
imported.
"""

from __future__ import annotations

import abc
import email.utils
import hmac
import ipaddress
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, ClassVar, Final, NoReturn, Protocol
from urllib.parse import quote, urlsplit

import requests

__all__ = [
    "REDACTED",
    "Action",
    "DeliveryResult",
    "HttpSettings",
    "Incident",
    "NotificationChannel",
    "NotificationReport",
    "Notifier",
    "PagerDutyEvents",
    "Secret",
    "Severity",
    "SlackWebhook",
    "StatuspageIncident",
    "redact",
]

_LOG = logging.getLogger(__name__)

REDACTED: Final = "**********"

# ----------------------------------------------------------------------------------- secrets & redaction

_registry_lock = threading.Lock()
_secret_fragments: set[str] = set()
_MIN_FRAGMENT = 8  # shorter fragments would redact ordinary words; real keys/paths are far longer


def _register_secret(value: str) -> None:
    fragments = {value}
    parts = urlsplit(value)
    if parts.scheme in ("http", "https") and parts.netloc:
        # urllib3 logs "POST /services/T/B/X" — the path alone must be redacted too.
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        fragments.update({path, parts.path})
    with _registry_lock:
        _secret_fragments.update(f for f in fragments if len(f) >= _MIN_FRAGMENT)


def redact(text: str) -> str:
    """Replace every known secret (and a secret URL's path) in ``text`` with ``REDACTED``."""
    with _registry_lock:
        fragments = sorted(_secret_fragments, key=len, reverse=True)
    for fragment in fragments:
        if fragment in text:
            text = text.replace(fragment, REDACTED)
    return text


class Secret:
    """A string that never shows itself in repr/str/format/pickles; call ``reveal()`` at the point of use."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        if not isinstance(value, str) or not value.strip():
            raise ValueError("a Secret needs a non-empty string value")
        self._value = value
        _register_secret(value)

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return f"Secret({REDACTED!r})"

    def __str__(self) -> str:
        return REDACTED

    def __format__(self, format_spec: str) -> str:
        return REDACTED

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Secret):
            return NotImplemented
        return hmac.compare_digest(self._value.encode(), other._value.encode())

    __hash__ = None  # type: ignore[assignment]  # equal-by-value but deliberately not usable as a key

    def __reduce__(self) -> NoReturn:
        raise TypeError("Secret values cannot be pickled")


class _RedactingFilter(logging.Filter):
    """Rewrites log records that contain a registered secret; never drops records."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a malformed record is not ours to break
            return True
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        if record.exc_info and not record.exc_text:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
        elif record.exc_text:
            record.exc_text = redact(record.exc_text)
        return True


_FILTER = _RedactingFilter()
# Loggers that see request URLs (urllib3 at DEBUG) or exception texts containing them.
_FILTERED_LOGGERS: Final = (
    "urllib3",
    "urllib3.connectionpool",
    "urllib3.poolmanager",
    "urllib3.util.retry",
    "requests",
    __name__,
)
for _logger_name in _FILTERED_LOGGERS:
    _logger = logging.getLogger(_logger_name)
    if _FILTER not in _logger.filters:
        _logger.addFilter(_FILTER)

# ------------------------------------------------------------------------------------------ model


class Severity(StrEnum):
    """PagerDuty Events v2 severities (also drive Slack wording and Statuspage impact)."""

    CRITICAL = "critical"
    ERROR = "error"
    WARNING = "warning"
    INFO = "info"


class Action(StrEnum):
    TRIGGER = "trigger"
    RESOLVE = "resolve"


@dataclass(frozen=True)
class Incident:
    """What happened, for humans (Slack), pagers (PagerDuty) and customers (Statuspage).

    ``summary``/``details`` are internal (resource names, metrics); the public status page only ever
    gets ``public_title``/``public_message`` (or neutral defaults), never internal detail.
    ``dedup_key`` ties a resolve to its trigger; when omitted it is derived from source/component/summary
    so a later resolve with the same fields closes the same PagerDuty alert.
    """

    summary: str
    severity: Severity = Severity.ERROR
    source: str = "stamps-ops"
    component: str | None = None
    details: Mapping[str, Any] = field(default_factory=dict)
    action: Action = Action.TRIGGER
    dedup_key: str | None = None
    public_title: str | None = None
    public_message: str | None = None
    statuspage_incident_id: str | None = None  # needed to resolve an incident opened earlier

    @property
    def effective_dedup_key(self) -> str:
        # PagerDuty caps dedup_key at 255 characters.
        return (self.dedup_key or f"{self.source}:{self.component or '-'}:{self.summary}")[:255]


@dataclass(frozen=True)
class DeliveryResult:
    """Outcome for one channel. ``error`` is redacted text; ``payload`` is only set in dry-run mode."""

    channel: str
    ok: bool
    attempts: int = 0
    status_code: int | None = None
    error: str | None = None
    reference: str | None = None  # PagerDuty dedup_key / Statuspage incident id
    dry_run: bool = False
    skipped: bool = False
    payload: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class HttpSettings:
    """Bounded retries and timeouts shared by the HTTP channels."""

    max_attempts: int = 3
    backoff: float = 0.5  # first retry waits this long, then doubles
    backoff_max: float = 8.0
    max_retry_after: float = 30.0  # honour Retry-After up to this many seconds
    connect_timeout: float = 3.05
    read_timeout: float = 10.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")


class NotificationChannel(Protocol):
    name: str

    def send(self, incident: Incident) -> DeliveryResult: ...

    def preview(self, incident: Incident) -> DeliveryResult: ...

    def close(self) -> None: ...


# ------------------------------------------------------------------------------------------ transport


@dataclass(frozen=True)
class _Request:
    method: str
    url: str  # may embed a secret (Slack): never log or return it
    body: Mapping[str, Any]
    headers: Mapping[str, str]


class _HttpChannel(abc.ABC):
    """Retry/timeout/redaction plumbing; subclasses only build requests and read references."""

    name: str = "http"
    # Rate limiting and transient server trouble; other 4xx mean "fix the request", so no retry.
    retry_statuses: ClassVar[frozenset[int]] = frozenset({408, 425, 429, 500, 502, 503, 504})

    def __init__(
        self,
        *,
        name: str | None,
        settings: HttpSettings | None,
        session: requests.Session | None,
        sleep: Callable[[float], None] | None,
    ) -> None:
        if name:
            self.name = name
        self.settings = settings or HttpSettings()
        self._owns_session = session is None
        self._session = session or requests.Session()
        self._sleep = sleep or time.sleep

    # subclasses -------------------------------------------------------------------------------
    @abc.abstractmethod
    def _build(self, incident: Incident) -> _Request | None:
        """The request for this incident, or None when the channel has nothing to send for it."""

    def _preview_body(self, request: _Request) -> Mapping[str, Any]:
        return request.body

    def _reference(self, response: requests.Response, incident: Incident) -> str | None:
        return None

    def _skip_reason(self, incident: Incident) -> str:
        return "nothing to send for this incident"

    # public -----------------------------------------------------------------------------------
    def preview(self, incident: Incident) -> DeliveryResult:
        request = self._build(incident)
        if request is None:
            return DeliveryResult(self.name, ok=True, dry_run=True, skipped=True, error=self._skip_reason(incident))
        return DeliveryResult(self.name, ok=True, dry_run=True, payload=self._preview_body(request))

    def send(self, incident: Incident) -> DeliveryResult:
        request = self._build(incident)
        if request is None:
            return DeliveryResult(self.name, ok=True, skipped=True, error=self._skip_reason(incident))
        return self._deliver(request, incident)

    def close(self) -> None:
        if self._owns_session:
            self._session.close()

    # internals --------------------------------------------------------------------------------
    def _deliver(self, request: _Request, incident: Incident) -> DeliveryResult:
        s = self.settings
        status: int | None = None
        error = "not attempted"
        for attempt in range(1, s.max_attempts + 1):
            delay = min(s.backoff * 2 ** (attempt - 1), s.backoff_max)
            try:
                response = self._session.request(
                    request.method,
                    request.url,
                    json=request.body,
                    headers=dict(request.headers),
                    timeout=(s.connect_timeout, s.read_timeout),
                    allow_redirects=False,  # a redirect would re-send the credential somewhere else
                )
            except requests.Timeout:
                status, error = None, "request timed out"
            except requests.RequestException as exc:
                # requests' messages embed the URL, i.e. possibly the webhook secret: redact.
                status, error = None, f"{type(exc).__name__}: {redact(str(exc))[:300]}"
            else:
                with response:
                    status = response.status_code
                    if 200 <= status < 300:
                        return DeliveryResult(
                            self.name,
                            ok=True,
                            attempts=attempt,
                            status_code=status,
                            reference=self._reference(response, incident),
                        )
                    error = f"HTTP {status}: {redact(response.text.strip())[:300]}"
                    if status not in self.retry_statuses:
                        return DeliveryResult(self.name, ok=False, attempts=attempt, status_code=status, error=error)
                    retry_after = _retry_after_seconds(response.headers.get("Retry-After"))
                    if retry_after is not None:
                        delay = min(retry_after, s.max_retry_after)
            if attempt < s.max_attempts:
                _LOG.info(
                    "%s delivery attempt %d/%d failed (%s); retrying in %.2fs",
                    self.name,
                    attempt,
                    s.max_attempts,
                    error,
                    delay,
                )
                self._sleep(delay)
        return DeliveryResult(
            self.name,
            ok=False,
            attempts=s.max_attempts,
            status_code=status,
            error=f"gave up after {s.max_attempts} attempts: {error}",
        )


def _retry_after_seconds(value: str | None) -> float | None:
    """Retry-After is either delay-seconds or an HTTP-date (RFC 9110 §10.2.3)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _require_https(url: str, what: str) -> None:
    """Credentials only travel over TLS, except to loopback (local receivers in tests/dev)."""
    parts = urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return
    if parts.scheme == "http" and parts.hostname:
        host = parts.hostname
        try:
            if host == "localhost" or ipaddress.ip_address(host).is_loopback:
                return
        except ValueError:
            pass
    # Deliberately not echoing the URL: it may be the secret itself.
    raise ValueError(f"{what} must be an https URL")


# ------------------------------------------------------------------------------------------ channels


_SLACK_PREFIX: Final = {
    Severity.CRITICAL: ":rotating_light:",
    Severity.ERROR: ":red_circle:",
    Severity.WARNING: ":warning:",
    Severity.INFO: ":information_source:",
}


class SlackWebhook(_HttpChannel):
    """Slack incoming webhook: ``POST <webhook url>`` with ``{"text", "username", "channel"}``.

    (Webhooks owned by a Slack app ignore ``username``/``channel`` overrides; legacy ones honour them.)
    """

    name = "slack"

    def __init__(
        self,
        webhook_url: Secret,
        *,
        username: str | None = "stamps-ops",
        channel: str | None = None,
        name: str | None = None,
        settings: HttpSettings | None = None,
        session: requests.Session | None = None,
        sleep: Callable[[float], None] | None = None,
    ) -> None:
        _require_https(webhook_url.reveal(), "Slack webhook URL")
        super().__init__(name=name, settings=settings, session=session, sleep=sleep)
        self._url = webhook_url
        self.username = username
        self.channel = channel

    def _build(self, incident: Incident) -> _Request:
        body: dict[str, Any] = {"text": _slack_text(incident)}
        if self.username:
            body["username"] = self.username
        if self.channel:
            body["channel"] = self.channel
        return _Request("POST", self._url.reveal(), body, {"Content-Type": "application/json"})


def _slack_text(incident: Incident) -> str:
    where = incident.source + (f" / {incident.component}" if incident.component else "")
    if incident.action is Action.RESOLVE:
        head = f":white_check_mark: *[RESOLVED]* {incident.summary}"
    else:
        head = f"{_SLACK_PREFIX[incident.severity]} *[{incident.severity.value.upper()}]* {incident.summary}"
    lines = [head, f"_{where}_"]
    lines.extend(f"• {key}: {value}" for key, value in incident.details.items())
    return "\n".join(lines)


class PagerDutyEvents(_HttpChannel):
    """PagerDuty Events API v2: ``POST /v2/enqueue`` (answers 202 with the dedup_key)."""

    name = "pagerduty"
    DEFAULT_URL: ClassVar[str] = "https://events.pagerduty.com/v2/enqueue"

    def __init__(
        self,
        routing_key: Secret,
        *,
        events_url: str = DEFAULT_URL,
        name: str | None = None,
        settings: HttpSettings | None = None,
        session: requests.Session | None = None,
        sleep: Callable[[float], None] | None = None,
    ) -> None:
        _require_https(events_url, "PagerDuty events URL")
        super().__init__(name=name, settings=settings, session=session, sleep=sleep)
        self._routing_key = routing_key
        self.events_url = events_url

    def _build(self, incident: Incident) -> _Request:
        body: dict[str, Any] = {
            "routing_key": self._routing_key.reveal(),
            "event_action": incident.action.value,
            "dedup_key": incident.effective_dedup_key,
        }
        if incident.action is Action.TRIGGER:
            # The payload is required for trigger events and ignored for resolve.
            body["payload"] = {
                "summary": incident.summary[:1024],  # Events API limit
                "severity": incident.severity.value,
                "source": incident.source,
                "component": incident.component or incident.source,
                "custom_details": _jsonable(incident.details),
            }
        return _Request("POST", self.events_url, body, {"Content-Type": "application/json"})

    def _preview_body(self, request: _Request) -> Mapping[str, Any]:
        return {**request.body, "routing_key": REDACTED}

    def _reference(self, response: requests.Response, incident: Incident) -> str | None:
        data = _json_or_none(response)
        key = data.get("dedup_key") if isinstance(data, dict) else None
        return str(key) if key else incident.effective_dedup_key


_IMPACT: Final = {
    Severity.CRITICAL: "critical",
    Severity.ERROR: "major",
    Severity.WARNING: "minor",
    Severity.INFO: "none",
}


class StatuspageIncident(_HttpChannel):
    """Statuspage (Atlassian) incidents: ``POST /v1/pages/{page_id}/incidents`` with ``Authorization: OAuth``.

    A resolve ``PATCH``es the incident named by ``Incident.statuspage_incident_id`` (the ``reference`` the
    trigger returned); without one there is nothing to resolve and the channel reports ``skipped``.
    """

    name = "statuspage"
    DEFAULT_API: ClassVar[str] = "https://api.statuspage.io"
    # Statuspage signalled rate limiting with 420 before adopting 429 and still may; both carry Retry-After.
    retry_statuses: ClassVar[frozenset[int]] = _HttpChannel.retry_statuses | {420}

    def __init__(
        self,
        api_key: Secret,
        page_id: str,
        *,
        api_base: str = DEFAULT_API,
        component_ids: Sequence[str] = (),
        name: str | None = None,
        settings: HttpSettings | None = None,
        session: requests.Session | None = None,
        sleep: Callable[[float], None] | None = None,
    ) -> None:
        _require_https(api_base, "Statuspage API base URL")
        if not page_id:
            raise ValueError("page_id is required")
        super().__init__(name=name, settings=settings, session=session, sleep=sleep)
        self._api_key = api_key
        self.page_id = page_id
        self.api_base = api_base.rstrip("/")
        self.component_ids = tuple(component_ids)

    def _build(self, incident: Incident) -> _Request | None:
        headers = {"Authorization": f"OAuth {self._api_key.reveal()}", "Content-Type": "application/json"}
        incidents_url = f"{self.api_base}/v1/pages/{quote(self.page_id, safe='')}/incidents"
        if incident.action is Action.RESOLVE:
            if not incident.statuspage_incident_id:
                return None
            body = {
                "incident": {
                    "status": "resolved",
                    "body": incident.public_message or "This incident has been resolved.",
                }
            }
            url = f"{incidents_url}/{quote(incident.statuspage_incident_id, safe='')}"
            return _Request("PATCH", url, body, headers)
        fields: dict[str, Any] = {
            "name": incident.public_title or "Degraded service",
            "status": "investigating",
            "impact_override": _IMPACT[incident.severity],
            "body": incident.public_message
            or "We are investigating reports of degraded service and will post updates here.",
        }
        if self.component_ids:
            fields["component_ids"] = list(self.component_ids)
        return _Request("POST", incidents_url, {"incident": fields}, headers)

    def _preview_body(self, request: _Request) -> Mapping[str, Any]:
        # The key lives in a header, not the body, so the body is safe to show as-is.
        return request.body

    def _reference(self, response: requests.Response, incident: Incident) -> str | None:
        data = _json_or_none(response)
        ident = data.get("id") if isinstance(data, dict) else None
        return str(ident) if ident else incident.statuspage_incident_id

    def _skip_reason(self, incident: Incident) -> str:
        return "no statuspage_incident_id to resolve"


def _json_or_none(response: requests.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def _jsonable(details: Mapping[str, Any]) -> dict[str, Any]:
    """custom_details must be JSON: keep JSON scalars/containers, stringify everything else."""

    def conv(value: Any) -> Any:
        if value is None or isinstance(value, bool | int | float | str):
            return value
        if isinstance(value, Mapping):
            return {str(k): conv(v) for k, v in value.items()}
        if isinstance(value, list | tuple | set | frozenset):
            return [conv(v) for v in value]
        return str(value)

    return {str(k): conv(v) for k, v in details.items()}


# ------------------------------------------------------------------------------------------ fan-out


@dataclass(frozen=True)
class NotificationReport:
    incident: Incident
    results: tuple[DeliveryResult, ...]

    @property
    def ok(self) -> bool:
        """Every channel delivered (or had legitimately nothing to do)."""
        return all(r.ok for r in self.results)

    @property
    def failed(self) -> tuple[DeliveryResult, ...]:
        return tuple(r for r in self.results if not r.ok)

    def by_channel(self) -> dict[str, DeliveryResult]:
        return {r.channel: r for r in self.results}


class Notifier:
    """Sends one incident to every configured channel concurrently and reports per channel."""

    def __init__(self, channels: Sequence[NotificationChannel], *, dry_run: bool = False) -> None:
        self.channels = tuple(channels)
        self.dry_run = dry_run

    def notify(self, incident: Incident) -> NotificationReport:
        if not self.channels:
            return NotificationReport(incident, ())
        # Threads, not sequence: a channel stuck in its timeouts/retries must not delay the page.
        with ThreadPoolExecutor(max_workers=len(self.channels), thread_name_prefix="notify") as pool:
            futures = [pool.submit(self._one, channel, incident) for channel in self.channels]
            results = tuple(f.result() for f in futures)
        report = NotificationReport(incident, results)
        for result in results:
            if result.ok:
                _LOG.info(
                    "notification %s via %s%s (attempts=%d)",
                    "previewed" if result.dry_run else ("skipped" if result.skipped else "delivered"),
                    result.channel,
                    f": {result.error}" if result.skipped and result.error else "",
                    result.attempts,
                )
            else:
                _LOG.warning("notification via %s failed: %s", result.channel, result.error)
        return report

    def _one(self, channel: NotificationChannel, incident: Incident) -> DeliveryResult:
        name = getattr(channel, "name", type(channel).__name__)
        try:
            return channel.preview(incident) if self.dry_run else channel.send(incident)
        except Exception as exc:  # isolate: one broken channel must not cost the others their delivery
            return DeliveryResult(str(name), ok=False, error=f"{type(exc).__name__}: {redact(str(exc))[:300]}")

    def close(self) -> None:
        for channel in self.channels:
            try:
                channel.close()
            except Exception:  # closing is best effort
                _LOG.debug("closing channel %s failed", getattr(channel, "name", channel), exc_info=True)

    def __enter__(self) -> Notifier:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
