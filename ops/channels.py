"""Notification channels from the environment: webhook URLs and keys are secrets, never config values.

| variable | channel |
| --- | --- |
| `STAMPS_SLACK_WEBHOOK_URL` (+ `STAMPS_SLACK_CHANNEL`) | Slack incoming webhook |
| `STAMPS_PAGERDUTY_ROUTING_KEY` (+ `STAMPS_PAGERDUTY_EVENTS_URL`) | PagerDuty Events API v2 |
| `STAMPS_STATUSPAGE_API_KEY` + `STAMPS_STATUSPAGE_PAGE_ID` (+ `STAMPS_STATUSPAGE_API`) | Statuspage incidents |

A channel whose variables are unset is simply not configured; the playbook says so in its report.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from ops.notify import Notifier, PagerDutyEvents, Secret, SlackWebhook, StatuspageIncident


def notifier_from_env(env: Mapping[str, str] | None = None, *, dry_run: bool = False) -> Notifier:
    env = os.environ if env is None else env
    channels = []
    if env.get("STAMPS_SLACK_WEBHOOK_URL"):
        channels.append(SlackWebhook(Secret(env["STAMPS_SLACK_WEBHOOK_URL"]),
                                     channel=env.get("STAMPS_SLACK_CHANNEL") or None))
    if env.get("STAMPS_PAGERDUTY_ROUTING_KEY"):
        kwargs = {"events_url": env["STAMPS_PAGERDUTY_EVENTS_URL"]} if env.get("STAMPS_PAGERDUTY_EVENTS_URL") else {}
        channels.append(PagerDutyEvents(Secret(env["STAMPS_PAGERDUTY_ROUTING_KEY"]), **kwargs))
    if env.get("STAMPS_STATUSPAGE_API_KEY") and env.get("STAMPS_STATUSPAGE_PAGE_ID"):
        kwargs = {"api_base": env["STAMPS_STATUSPAGE_API"]} if env.get("STAMPS_STATUSPAGE_API") else {}
        channels.append(StatuspageIncident(Secret(env["STAMPS_STATUSPAGE_API_KEY"]),
                                            env["STAMPS_STATUSPAGE_PAGE_ID"], **kwargs))
    return Notifier(channels, dry_run=dry_run)
