"""Notification channels from the environment: webhook URLs and keys are secrets, never config values.

| variable | channel |
| --- | --- |
| `STAMPS_SLACK_WEBHOOK_URL` (+ `STAMPS_SLACK_CHANNEL`) | Slack incoming webhook |
| `STAMPS_PAGERDUTY_ROUTING_KEY` (+ `STAMPS_PAGERDUTY_EVENTS_URL`) | PagerDuty Events API v2 |
| `STAMPS_STATUSPAGE_API_KEY` + `STAMPS_STATUSPAGE_PAGE_ID` (+ `STAMPS_STATUSPAGE_API`) | Statuspage incidents |

A channel whose variables are unset is simply not configured; the playbook says so in its report. A channel
whose variables are set but invalid (a non-https URL, a key without its page id) is bad input: every playbook
checks this in its preflight, before it changes anything (`ChannelConfigError`, exit 2, naming the variable).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any

from ops.notify import Notifier, PagerDutyEvents, Secret, SlackWebhook, StatuspageIncident
from stamps.errors import UsageError


class ChannelConfigError(UsageError):
    """A notification channel's environment variables are set but invalid; the message names the variable."""


def _build(variable: str, make: Callable[[], Any]) -> Any:
    try:
        return make()
    except (ValueError, TypeError) as err:
        # The message never echoes the value: it may be the secret itself.
        raise ChannelConfigError(f"{variable}: {err}; fix or unset it (notification channels are checked "
                                 "before a playbook changes anything)") from None


def notifier_from_env(env: Mapping[str, str] | None = None, *, dry_run: bool = False) -> Notifier:
    env = os.environ if env is None else env
    channels = []
    if env.get("STAMPS_SLACK_WEBHOOK_URL"):
        channels.append(_build("STAMPS_SLACK_WEBHOOK_URL", lambda: SlackWebhook(
            Secret(env["STAMPS_SLACK_WEBHOOK_URL"]), channel=env.get("STAMPS_SLACK_CHANNEL") or None)))
    if env.get("STAMPS_PAGERDUTY_ROUTING_KEY"):
        kwargs: dict[str, Any] = ({"events_url": env["STAMPS_PAGERDUTY_EVENTS_URL"]}
                                  if env.get("STAMPS_PAGERDUTY_EVENTS_URL") else {})
        variable = "STAMPS_PAGERDUTY_EVENTS_URL" if kwargs else "STAMPS_PAGERDUTY_ROUTING_KEY"
        channels.append(_build(variable, lambda: PagerDutyEvents(
            Secret(env["STAMPS_PAGERDUTY_ROUTING_KEY"]), **kwargs)))
    if env.get("STAMPS_STATUSPAGE_API_KEY") or env.get("STAMPS_STATUSPAGE_PAGE_ID"):
        if not (env.get("STAMPS_STATUSPAGE_API_KEY") and env.get("STAMPS_STATUSPAGE_PAGE_ID")):
            missing = ("STAMPS_STATUSPAGE_PAGE_ID" if env.get("STAMPS_STATUSPAGE_API_KEY")
                       else "STAMPS_STATUSPAGE_API_KEY")
            raise ChannelConfigError(f"{missing}: Statuspage needs both STAMPS_STATUSPAGE_API_KEY and "
                                     "STAMPS_STATUSPAGE_PAGE_ID; set the missing one or unset the other")
        kwargs_sp: dict[str, Any] = {"api_base": env["STAMPS_STATUSPAGE_API"]} if env.get("STAMPS_STATUSPAGE_API") \
            else {}
        variable = "STAMPS_STATUSPAGE_API" if kwargs_sp else "STAMPS_STATUSPAGE_PAGE_ID"
        channels.append(_build(variable, lambda: StatuspageIncident(
            Secret(env["STAMPS_STATUSPAGE_API_KEY"]), env["STAMPS_STATUSPAGE_PAGE_ID"], **kwargs_sp)))
    return Notifier(channels, dry_run=dry_run)
