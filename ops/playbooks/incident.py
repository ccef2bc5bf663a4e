"""Incident response (runbook: "Incident Response" → "Incident Classification", "Global Outage Response").

`incident classify` applies the runbook's severity levels (P0 critical … P3 low) to what the operator knows
(scope, CELLs affected, share of users, workaround) and prints the level, its response time and escalation,
and why.

`incident respond` runs the global-outage playbook, every step printed and recorded:

1. assessment  Traffic Manager profile (profileStatus, monitor status, every endpoint's status and probe)
               and the Front Door profile (resourceState) and endpoint (enabledState), read from ARM for the
               resources the stack declares, compared with what the stack config wants. Without
               --severity the assessment sets the level (global entry point down → P0, a regional endpoint
               down → P1, else P2; an assessment that cannot read Azure assumes P0, as this playbook is run
               for a suspected global outage).
2. mitigation  only what the stack itself can fix: a profile or endpoint disabled contrary to the config is
               drift, so `pulumi refresh` adopts the live state and a `pulumi up` (targeted at the drifted
               resources) re-asserts the stack's desired state. There is no config change to make, which is
               why this step calls the runner directly rather than `Context.apply` (which deploys config
               edits). An endpoint the config itself disables (a DR drill) is left alone. No drift: says so.
3. communication  a Statuspage incident (public wording only) and a Slack message via the notifier.
4. escalation  P0/P1 trigger PagerDuty with a dedup key per incident, so a re-run (`--incident-id`) never
               pages twice; P2/P3 are not paged.

The incident log is `.stamps/incidents/<id>.json`, rewritten atomically after every step, so a crash
mid-playbook still shows what was done. `--dry-run` assesses, shows the mitigation it would run and the
notification payloads (credentials redacted), and sends, changes and records nothing.
"""

from __future__ import annotations

import argparse
import json
import re
from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, Final

from rich.markup import escape
from rich.table import Table

from ops.arm import API_VERSIONS as API
from ops.arm import subscription_of
from ops.azure_monitor import AzureReadError
from ops.notify import Incident, NotificationReport, Notifier, Severity
from ops.playbooks.base import EXIT_FAILED, EXIT_OK, Context, PlaybookError, show_result
from ops.reports import STATUS_STYLE, iso, read_json, worst
from ops.runner import OfflineRunner, Runner, RunnerError, RunResult
from ops.stackconfig import StackLockedError, stack_lock
from stamps.atomicfile import PRIVATE, write_json_atomic
from stamps.environment import Environment

# ------------------------------------------------------------------------------------------ levels


@dataclass(frozen=True)
class Level:
    id: str
    name: str
    description: str
    response: str
    escalation: str
    examples: tuple[str, ...]
    severity: Severity  # PagerDuty severity / Slack wording / Statuspage impact

    @property
    def label(self) -> str:
        return f"{self.id}-{self.name}"

    @property
    def pages(self) -> bool:
        return self.id in ("P0", "P1")


# The runbook's "Severity Levels" block, verbatim in substance.
LEVELS: Final[dict[str, Level]] = {lv.id: lv for lv in (
    Level("P0", "Critical", "Complete service outage affecting all users", "15 minutes",
          "Immediate executive notification", ("Global Front Door down", "All Traffic Manager endpoints failed"),
          Severity.CRITICAL),
    Level("P1", "High", "Major service degradation affecting multiple CELLs", "30 minutes",
          "Operations manager notification", ("Regional Application Gateway down", "Multiple CELL failures"),
          Severity.ERROR),
    Level("P2", "Medium", "Single CELL or limited service impact", "2 hours", "Team lead notification",
          ("Single CELL database issues", "Storage performance degradation"), Severity.WARNING),
    Level("P3", "Low", "Minor issues with workarounds available", "24 hours", "Standard ticket queue",
          ("Non-critical monitoring alerts", "Documentation updates"), Severity.INFO),
)}


def classify(env: Environment, scope: str, cells: int | None, region: str | None, users: float | None,
             workaround: bool) -> tuple[Level, list[str]]:
    """The runbook's level for what is known, with the reasoning, one line per rule that applied."""
    why: list[str] = []
    if users is not None and users >= 100:
        level = "P0"
        why.append(f"{users:g}% of users affected: a complete outage for everyone (P0)")
    elif scope == "global":
        if users is None:
            level = "P0"
            why.append("global scope: Front Door / Traffic Manager sit in front of every CELL, so every user "
                       "is affected (P0); pass --users-affected if only some are")
        else:
            level = "P1"
            why.append(f"global scope but {users:g}% of users affected: a major degradation, not a complete "
                       "outage (P1)")
    elif scope == "region":
        level = "P1"
        where = f" {region}" if region else ""
        serving = [i.key for i in env.instances if region in (None, i.region)]
        why.append(f"region{where} down: its Application Gateway fronts several CELLs "
                   f"({', '.join(serving) or 'none deployed'}) — major degradation across CELLs (P1)")
    else:
        count = cells or 1
        level = "P1" if count >= 2 else "P2"
        why.append(f"{count} CELL{'s' if count != 1 else ''} affected: "
                   + ("multiple CELL failures (P1)" if count >= 2 else "single CELL, limited impact (P2)"))
    if workaround:
        if level == "P2":
            level = "P3"
            why.append("a workaround is available: minor issue (P3)")
        else:
            why.append(f"a workaround is available, but it does not lower a {level}: the impact is still major")
    return LEVELS[level], why


def show_levels(ctx: Context, chosen: Level, why: Sequence[str]) -> None:
    table = Table(title="incident severity levels (runbook)")
    for col in ("level", "description", "response", "escalation", "examples"):
        table.add_column(col, overflow="fold")
    for lv in LEVELS.values():
        style = "bold reverse" if lv is chosen else ""
        table.add_row(lv.label, lv.description, lv.response, lv.escalation, "; ".join(lv.examples), style=style)
    ctx.console.print(table)
    ctx.console.print(f"[bold]{chosen.label}[/]: {chosen.description}; respond within {chosen.response}; "
                      f"escalation: {chosen.escalation}", soft_wrap=True)
    for line in why:
        ctx.console.print(f"  because {escape(line)}", soft_wrap=True)


def run_classify(ctx: Context, args: argparse.Namespace) -> int:
    env = ctx.environment()
    if args.cells is not None:
        if args.scope != "cells":
            raise PlaybookError("--cells: only with --scope cells")
        total = len(env.instances)
        if not 1 <= args.cells <= total:
            raise PlaybookError(f"--cells: must be between 1 and {total} (the stack's CELL instances), "
                                f"got {args.cells}")
    if args.region is not None and args.region not in env.regions:
        raise PlaybookError(f"--region: {args.region!r} is not a region of this stack; valid: "
                            f"{', '.join(env.regions)}")
    if args.users_affected is not None and not 0 <= args.users_affected <= 100:
        raise PlaybookError(f"--users-affected: a percentage 0-100, got {args.users_affected:g}")
    level, why = classify(env, args.scope, args.cells, args.region, args.users_affected, args.workaround)
    show_levels(ctx, level, why)
    return EXIT_OK


# ------------------------------------------------------------------------------------------ assessment


@dataclass
class Assessment:
    traffic_managers: list[dict[str, Any]] = field(default_factory=list)  # one per primary region's profile
    front_door: dict[str, Any] = field(default_factory=dict)
    drift: list[dict[str, str]] = field(default_factory=list)  # {"resource", "kind", "actual", "desired"}
    problems: list[tuple[str, str]] = field(default_factory=list)  # (level, text)
    errors: list[str] = field(default_factory=list)

    def level(self) -> tuple[str, list[str]]:
        p0 = [t for lv, t in self.problems if lv == "P0"]
        p1 = [t for lv, t in self.problems if lv == "P1"]
        if p0:
            return "P0", p0
        if self.errors:
            return "P0", ["the assessment could not read Azure; this playbook is run for a suspected global "
                          "outage, so it assumes P0 (pass --severity to override)"]
        if p1:
            return "P1", p1
        return "P2", ["Traffic Manager and Front Door are up: the impact is not global"]


def assess(env: Environment, outputs: dict[str, Any], arm: Any) -> Assessment:
    a = Assessment()
    profiles = {str(k): str(v) for k, v in (outputs.get("trafficManagerProfiles") or {}).items() if v}
    if not profiles:
        a.errors.append("the stack has no trafficManagerProfiles output (not deployed?)")
        return a
    for primary in env.primary_regions:
        if primary not in profiles:
            a.errors.append(f"the stack's trafficManagerProfiles output has no profile for {primary}")
            continue
        try:
            _assess_traffic_manager(env, primary, profiles[primary], arm, a)
        except AzureReadError as err:
            a.errors.append(str(err))
    try:
        _assess_front_door(env, subscription_of(next(iter(profiles.values()))), arm, a)
    except AzureReadError as err:
        a.errors.append(str(err))
    return a


def profile_endpoints(env: Environment, primary: str) -> dict[str, str]:
    """The endpoints a primary's profile declares (endpoint name → desired status): its gateway, and its DR
    region's when any of its CELLs has a standby there."""
    out = {f"endpoint-{primary}": "Enabled" if env.regions[primary].traffic_enabled else "Disabled"}
    dr = env.regions[primary].dr_region
    if dr and any(i.cell.region == primary and i.role == "standby" for i in env.instances):
        out[f"endpoint-{dr}"] = "Enabled"
    return out


def _assess_traffic_manager(env: Environment, primary: str, tm_id: str, arm: Any, a: Assessment) -> None:
    props = arm.get(tm_id, API["trafficManager"]).get("properties") or {}
    status = str(props.get("profileStatus") or "?")
    monitor = str((props.get("monitorConfig") or {}).get("profileMonitorStatus") or "?")
    endpoints = {str(e.get("name")): e.get("properties") or {} for e in props.get("endpoints") or []}
    info: dict[str, Any] = {"region": primary, "id": tm_id, "profileStatus": status,
                            "profileMonitorStatus": monitor, "endpoints": []}
    a.traffic_managers.append(info)
    if status != "Enabled":
        a.drift.append({"resource": "traffic-manager", "profile": primary, "kind": "profile", "actual": status,
                        "desired": "Enabled"})
        a.problems.append(("P0", f"Traffic Manager profile of {primary} is {status}: no DNS answers for its CELLs"))
    serving = []
    for name, desired in profile_endpoints(env, primary).items():
        ep = endpoints.get(name)
        actual = str(ep.get("endpointStatus")) if ep is not None else "Missing"
        probe = str(ep.get("endpointMonitorStatus")) if ep is not None else "-"
        info["endpoints"].append({"name": name, "endpointStatus": actual, "desired": desired,
                                  "endpointMonitorStatus": probe})
        if actual != desired:
            a.drift.append({"resource": "traffic-manager", "profile": primary, "kind": name, "actual": actual,
                            "desired": desired})
        if desired == "Enabled":
            healthy = actual == "Enabled" and probe in ("Online", "CheckingEndpoint")
            serving.append(healthy)
            if not healthy:
                a.problems.append(("P1", f"Traffic Manager {primary} {name} is {actual}, probe {probe}"))
    if (serving and not any(serving)) or monitor in ("Degraded", "Inactive"):
        a.problems.append(("P0", f"All Traffic Manager endpoints of {primary} failed (profile monitor {monitor})"))


def _assess_front_door(env: Environment, subscription: str, arm: Any, a: Assessment) -> None:
    n = env.naming
    profile = (f"/subscriptions/{subscription}/resourceGroups/{n.global_group()}/providers/Microsoft.Cdn/"
               f"profiles/{n.front_door()}")
    props = arm.get(profile, API["cdn"]).get("properties") or {}
    state = str(props.get("resourceState") or "?")
    ep = arm.get(f"{profile}/afdEndpoints/{n.front_door_endpoint()}", API["cdn"]).get("properties") or {}
    enabled = str(ep.get("enabledState") or "?")
    a.front_door = {"id": profile, "resourceState": state, "provisioningState": props.get("provisioningState"),
                    "endpoint": n.front_door_endpoint(), "enabledState": enabled,
                    "deploymentStatus": ep.get("deploymentStatus")}
    if state != "Active":
        a.problems.append(("P0", f"Global Front Door down: profile is {state}"))
    if enabled != "Enabled":
        a.drift.append({"resource": "front-door", "kind": "endpoint", "actual": enabled, "desired": "Enabled"})
        a.problems.append(("P0", f"Global Front Door down: endpoint {n.front_door_endpoint()} is {enabled}"))


# ------------------------------------------------------------------------------------------ the log


@dataclass
class Step:
    step: str
    status: str  # ok | skipped | warn | fail | error
    detail: str
    data: dict[str, Any] = field(default_factory=dict)


class IncidentLog:
    """`.stamps/incidents/<id>.json`, rewritten atomically after each step (never in a dry run)."""

    def __init__(self, ctx: Context, incident_id: str, fresh: dict[str, Any]) -> None:
        self.ctx = ctx
        self.path = ctx.state_dir / "incidents" / f"{incident_id}.json"
        self.data = read_json(self.path, None) or fresh
        self.run: dict[str, Any] = {"at": iso(ctx.now()), "actor": ctx.actor, "steps": []}
        self.data.setdefault("runs", []).append(self.run)

    def record(self, step: Step) -> None:
        self.run["steps"].append({"step": step.step, "status": step.status, "detail": step.detail,
                                  "at": iso(self.ctx.now()), **({"data": step.data} if step.data else {})})
        self.save()

    def save(self) -> None:
        if not self.ctx.dry_run:
            write_json_atomic(self.path, self.data, mode=PRIVATE)


def _print_step(ctx: Context, number: int, step: Step) -> None:
    ctx.console.print(f"[bold]{number}. {step.step}[/]: [{STATUS_STYLE[step.status]}]{step.status}[/] — "
                      f"{escape(step.detail)}", soft_wrap=True)


# ------------------------------------------------------------------------------------------ steps


def step_assessment(ctx: Context, a: Assessment) -> Step:
    fd = a.front_door
    parts = []
    for tm in a.traffic_managers:
        eps = ", ".join(f"{e['name']} {e['endpointStatus']}/{e['endpointMonitorStatus']}" for e in tm["endpoints"])
        parts.append(f"Traffic Manager {tm['region']} {tm['profileStatus']} (monitor {tm['profileMonitorStatus']}; "
                     f"{eps})")
    if fd:
        parts.append(f"Front Door {fd['resourceState']}, endpoint {fd['enabledState']}")
    status = "error" if a.errors else ("warn" if a.problems else "ok")
    detail = "; ".join(parts + [f"cannot read: {e}" for e in a.errors]) or "nothing could be read"
    return Step("assessment", status, detail, {"trafficManagers": a.traffic_managers, "frontDoor": fd, "drift": a.drift,
                                               "problems": [t for _, t in a.problems], "errors": a.errors})


def _targets(ctx: Context, a: Assessment) -> dict[str, list[str]]:
    """URNs of the drifted resources by the stack that holds them, whatever the runner: refresh and update
    touch only them (`--target`). One stack, or the routing unit stack of a fleet deployed as units.

    They come from the offline plan of the stack file, so finding them reads nothing from Azure (a region in
    the middle of an outage included).
    """
    profiles = {f"routing-tm-{d['profile']}" for d in a.drift if d["resource"] == "traffic-manager"}
    front_door = any(d["resource"] == "front-door" for d in a.drift)
    if ctx.units:
        from stamps.stacks.fleet import plan_fleet
        from stamps.stacks.units import split_stack

        plans = plan_fleet(ctx.project_dir, split_stack(ctx.stack)[0], ctx.config_file().path)
    else:
        offline = ctx.runner if isinstance(ctx.runner, OfflineRunner) else OfflineRunner(ctx.project_dir, ctx.stack)
        plans = [offline.plan()]
    found: dict[str, list[str]] = {}
    for plan in plans:
        urns = [r["urn"] for r in plan.resources
                if (r["type"] == "azure-native:trafficmanager:Profile" and r["name"] in profiles)
                or (front_door and r["type"] == "azure-native:cdn:AFDEndpoint")]
        if urns:
            found[plan.stack if ctx.units else ctx.stack] = urns
    return found


def _runner_for(ctx: Context, stack: str) -> tuple[Runner, AbstractContextManager[Any]]:
    """The runner of `stack` and the lock to hold around its update (a unit stack has its own lock)."""
    if not ctx.units or ctx.runner_kind == "offline" or ctx.stack_runner is None:
        return ctx.runner, ctx.locked()
    return ctx.stack_runner(stack), stack_lock(ctx.project_dir, stack, holder=ctx.playbook)


def step_mitigation(ctx: Context, a: Assessment) -> Step:
    if not a.drift:
        note = " (the assessment was incomplete)" if a.errors else ""
        return Step("mitigation", "skipped" if a.errors else "ok",
                    f"no drift{note}: Traffic Manager and Front Door are as the stack declares them; the outage "
                    "is not something a stack update can fix — investigate the regions and CELLs")
    what = "; ".join(f"{d['resource']} {d.get('profile', '')} {d['kind']} is {d['actual']}, the stack says "
                     f"{d['desired']}".replace("  ", " ") for d in a.drift)
    results: list[RunResult] = []
    try:
        by_stack = _targets(ctx, a)
        targets = [urn for urns in by_stack.values() for urn in urns]
        if not targets:
            # Never fall back to a whole-stack refresh: it would read (and wait on) every resource of the
            # failed region in the middle of the outage.
            return Step("mitigation", "fail",
                        f"drift found ({what}) but no resource of stack {ctx.stack} matches it, so nothing was "
                        "refreshed or updated (a whole-stack refresh is never run during an outage); check that "
                        "the stack declares the drifted resource, or re-enable it in the Azure portal",
                        {"drift": a.drift, "targets": []})
        if ctx.dry_run:
            for stack, urns in by_stack.items():
                flags = " ".join(f"--target {t}" for t in urns)
                where = f" on stack {stack}" if ctx.units else ""
                ctx.console.print(f"  (dry run) would run `pulumi refresh {flags}`, then `pulumi up {flags} "
                                  f"--target-dependents`{where}", soft_wrap=True)
            return Step("mitigation", "skipped", f"dry run: drift found ({what}); targeted refresh + update not "
                        "run", {"drift": a.drift, "targets": targets})
        for stack, urns in by_stack.items():
            runner, lock = _runner_for(ctx, stack)
            with lock:
                # Adopt the live (disabled) state of the drifted resources only, then re-assert them.
                runner.refresh(targets=urns)
                results.append(runner.up(None, targets=urns))
    except (RunnerError, StackLockedError) as err:
        return Step("mitigation", "fail", f"drift found ({what}) but the stack update failed: {err}",
                    {"drift": a.drift})
    for result in results:
        show_result(result, ctx.console, dry_run=False)
    return Step("mitigation", "ok", f"re-asserted the stack's desired state ({what}): "
                f"{'; '.join(r.summary_line() for r in results)}",
                {"drift": a.drift, "targets": targets, "summary": [r.change_summary for r in results]})


def _subset(base: Any, names: set[str], dry_run: bool) -> Notifier:
    channels = [c for c in getattr(base, "channels", ()) if getattr(c, "name", "") in names]
    # A dry run never sends, whatever the injected notifier was built with.
    return Notifier(channels, dry_run=dry_run or bool(getattr(base, "dry_run", False)))


def _delivery(ctx: Context, report: NotificationReport) -> tuple[str, str, list[dict[str, Any]]]:
    rows = []
    for r in report.results:
        rows.append({"channel": r.channel, "ok": r.ok, "dryRun": r.dry_run, "skipped": r.skipped,
                     "statusCode": r.status_code, "attempts": r.attempts, "reference": r.reference,
                     "error": r.error})
        if r.dry_run and r.payload is not None:
            ctx.console.print(f"  (dry run) {r.channel} payload:")
            ctx.console.print_json(json.dumps(dict(r.payload), default=str))
    text = "; ".join(
        f"{r.channel}: " + ("previewed" if r.dry_run else "skipped" if r.skipped else
                            f"sent{f' ({r.reference})' if r.reference else ''}" if r.ok else f"FAILED {r.error}")
        for r in report.results)
    return ("fail" if not report.ok else "skipped" if all(r.dry_run for r in report.results) else "ok"), text, rows


def step_communication(ctx: Context, base: Any, incident: Incident, log: IncidentLog) -> Step:
    names = {"slack", "statuspage"}
    if log.data.get("statuspageIncidentId"):
        names.discard("statuspage")  # one public incident per incident, however often respond runs
    notifier = _subset(base, names, ctx.dry_run)
    if not notifier.channels:
        return Step("communication", "skipped",
                    "no Slack/Statuspage channel configured (STAMPS_SLACK_WEBHOOK_URL, STAMPS_STATUSPAGE_API_KEY "
                    "+ STAMPS_STATUSPAGE_PAGE_ID)" + (f"; status page incident {log.data['statuspageIncidentId']} "
                                                       "already open" if log.data.get("statuspageIncidentId") else ""))
    report = notifier.notify(incident)
    status, text, rows = _delivery(ctx, report)
    if log.data.get("statuspageIncidentId"):
        text += f"; status page incident {log.data['statuspageIncidentId']} already open"
    page = report.by_channel().get("statuspage")
    if page is not None and page.ok and page.reference and not page.dry_run:
        log.data["statuspageIncidentId"] = page.reference
    return Step("communication", status, text, {"deliveries": rows})


def step_escalation(ctx: Context, base: Any, incident: Incident, level: Level) -> Step:
    if not level.pages:
        return Step("escalation", "skipped", f"{level.label}: not paged ({level.escalation}; "
                                             f"respond within {level.response})")
    notifier = _subset(base, {"pagerduty"}, ctx.dry_run)
    if not notifier.channels:
        return Step("escalation", "fail", f"{level.label} must page the on-call but no PagerDuty channel is "
                                          "configured (STAMPS_PAGERDUTY_ROUTING_KEY)")
    status, text, rows = _delivery(ctx, notifier.notify(incident))
    return Step("escalation", status, f"{text}; {level.escalation}; dedup key {incident.effective_dedup_key}",
                {"deliveries": rows, "dedupKey": incident.effective_dedup_key})


# ------------------------------------------------------------------------------------------ respond

INCIDENT_ID: Final = re.compile(r"^inc-[A-Za-z0-9-]{1,60}$")


def run_respond(ctx: Context, args: argparse.Namespace) -> int:
    env = ctx.environment()
    now = ctx.now()
    if args.incident_id is not None:
        if not INCIDENT_ID.match(args.incident_id):
            raise PlaybookError(f"--incident-id: {args.incident_id!r} is not an incident id like inc-20300101T1200Z")
        if not (ctx.state_dir / "incidents" / f"{args.incident_id}.json").is_file():
            raise PlaybookError(f"--incident-id: no incident log {args.incident_id} under "
                                f"{ctx.state_dir / 'incidents'}; omit it to open a new incident")
    incident_id = args.incident_id or f"inc-{now:%Y%m%dT%H%M%SZ}"
    ctx.console.rule(f"[bold red]global outage response[/] — stack {ctx.stack}, incident {incident_id}")
    log = IncidentLog(ctx, incident_id, {"id": incident_id, "stack": ctx.stack, "openedAt": iso(now),
                                         "openedBy": ctx.actor, "summary": args.summary})
    steps: list[Step] = []

    def done(step: Step) -> None:
        steps.append(step)
        _print_step(ctx, len(steps), step)
        log.record(step)

    arm = ctx.arm()
    try:
        try:
            outputs = ctx.outputs()
        except RunnerError as err:
            outputs = {}
            ctx.console.print(f"  cannot read stack outputs: {escape(str(err))}", soft_wrap=True)
        assessment = assess(env, outputs, arm)
    finally:
        close = getattr(arm, "close", None)
        if callable(close):
            close()
    derived, reasons = assessment.level()
    level = LEVELS[args.severity or derived]
    why = [f"--severity {args.severity} given (the assessment says {derived})"] if args.severity else reasons
    done(step_assessment(ctx, assessment))
    show_levels(ctx, level, why)
    log.data.update({"severity": level.id, "severityReasons": why, "dedupKey": f"stamps-{ctx.stack}-{incident_id}"})
    done(step_mitigation(ctx, assessment))

    incident = Incident(
        summary=f"[{level.id}] {args.summary}", severity=level.severity, source=f"stamps-ops/{ctx.stack}",
        component="global-infrastructure", dedup_key=log.data["dedupKey"],
        details={"incident": incident_id, "stack": ctx.stack, "severity": level.label, "actor": ctx.actor,
                 "assessment": steps[0].detail, "mitigation": steps[1].detail, "respondWithin": level.response},
        public_title="Service Disruption", public_message="We are investigating reports of service disruption.",
    )
    with ctx.notifier() as base:
        done(step_communication(ctx, base, incident, log))
        done(step_escalation(ctx, base, incident, level))
    log.save()
    overall = worst([s.status for s in steps])
    where = "not recorded (dry run)" if ctx.dry_run else f"log: {log.path}"
    ctx.console.print(f"incident {incident_id}: {level.label}, steps {overall}; {where}", soft_wrap=True)
    return EXIT_FAILED if overall in ("fail", "error") else EXIT_OK


def register(sub: argparse._SubParsersAction, common: Any) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("incident", help="classify an incident (P0-P3) or run the global-outage response",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    steps = p.add_subparsers(dest="incident_command", required=True, metavar="COMMAND")

    c = steps.add_parser("classify", help="the runbook's severity for what is known, with the reasoning")
    c.add_argument("--scope", required=True, choices=("global", "region", "cells"), help="what is affected")
    c.add_argument("--cells", type=int, metavar="N", help="how many CELLs are affected (--scope cells)")
    c.add_argument("--region", metavar="R", help="the affected region")
    c.add_argument("--users-affected", type=float, metavar="PERCENT", help="share of users affected, 0-100")
    c.add_argument("--workaround", action="store_true", help="a workaround is available")
    common(c)
    c.set_defaults(func=run_classify, lock_stack=False)

    r = steps.add_parser("respond", help="global-outage playbook: assess, mitigate, communicate, escalate")
    r.add_argument("--severity", choices=tuple(LEVELS), help="override the level the assessment derives")
    r.add_argument("--summary", default="Service disruption under investigation", help="what is happening")
    r.add_argument("--incident-id", metavar="ID", help="continue this incident (re-run): no second page or "
                                                       "status page incident")
    common(r)
    # Paging must never wait for (or be refused by) another playbook's stack lock; only the mitigation takes it.
    r.set_defaults(func=run_respond, lock_stack=False)
