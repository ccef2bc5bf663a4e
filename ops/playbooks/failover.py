"""DR failover, failback and drills (runbook: "DR Procedures", monthly "Disaster recovery test").

Failover is one config value, `stamps:activeRegion`: the program derives Traffic Manager priorities (one
atomic profile update), Front Door origin priorities, the lowered DNS TTL and the standby CELLs' active
replica counts from it. Failback sets it back. A drill disables the primary's Traffic Manager endpoint
(`regions[].trafficEnabled: false`), verifies traffic moved to the DR region, and re-enables it — always,
even when the verification fails. A drill interrupted half-way resumes from the stack file on re-run.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from ops.playbooks.base import EXIT_OK, Context, Failed, PlaybookError, Refused, audit
from stamps.environment import Environment


def _endpoint_health(ctx: Context, env: Environment, region: str) -> tuple[bool | None, str]:
    """Traffic Manager's probe verdict for a region's endpoint, with a reason when it is unknown."""
    try:
        profile_id = ctx.outputs().get("trafficManagerProfileId")
    except Exception as err:  # the runner's own error types differ; any failure means "unknown"
        return None, f"cannot read stack outputs: {err}"
    if not profile_id:
        return None, "the stack has no trafficManagerProfileId output yet"
    try:
        reader = ctx.metrics()
        return reader.endpoint_health(str(profile_id), f"endpoint-{region}"), ""
    except Exception as err:  # AzureReadError, missing credential: say why, let the caller decide
        first = (str(err).splitlines() or [""])[0]
        return None, f"cannot read Azure Monitor ({type(err).__name__}: {first[:160]})"


def _notify(ctx: Context, summary: str, *, resolve: bool = False, **details: Any) -> None:
    from ops.notify import Action, Incident, Severity

    incident = Incident(
        summary=summary, severity=Severity.CRITICAL, component="traffic-routing",
        action=Action.RESOLVE if resolve else Action.TRIGGER, dedup_key=f"stamps-{ctx.stack}-dr",
        details={"stack": ctx.stack, "actor": ctx.actor, **details},
        public_title="Service failover" if not resolve else "Service restored to primary region",
        public_message="We moved traffic to our disaster-recovery region while we investigate."
        if not resolve else "Traffic is back on our primary region.",
    )
    with ctx.notifier() as notifier:
        report = notifier.notify(incident)
    for r in report.results:
        state = "previewed" if r.dry_run else ("skipped" if r.skipped else ("sent" if r.ok else "FAILED"))
        ctx.console.print(f"  notify {r.channel}: {state}{f' ({r.error})' if r.error else ''}")
    if not report.results:
        ctx.console.print("  notify: no channels configured (STAMPS_SLACK_WEBHOOK_URL, "
                          "STAMPS_PAGERDUTY_ROUTING_KEY, STAMPS_STATUSPAGE_API_KEY)")


def _serving_regions(env: Environment) -> list[str]:
    return sorted(set(env.primary_regions) | {i.region for i in env.instances if i.role == "standby"})


def failover(ctx: Context, args: argparse.Namespace) -> int:
    env = ctx.environment()
    target = args.to
    valid = [r for r in _serving_regions(env) if r != env.active_region]
    if target not in valid:
        raise PlaybookError(f"--to: {target!r} cannot take traffic from {env.active_region}; valid: "
                            f"{', '.join(valid) or '(none: no region holds standby CELLs)'}")
    if target == env.active_region:
        ctx.console.print(f"[green]✓[/] {target} already serves traffic: nothing to change")
        return EXIT_OK
    healthy, why = _endpoint_health(ctx, env, env.active_region)
    ctx.console.print(f"primary {env.active_region} endpoint health: "
                      f"{'healthy' if healthy else 'unhealthy' if healthy is False else 'unknown'} {why}")
    if healthy and not ctx.force:
        raise Refused(f"the active region {env.active_region} is healthy; a failover would move traffic off a "
                      "working region. Re-run with --force to fail over anyway")
    if healthy is None and not ctx.force and not ctx.dry_run:
        raise Refused(f"cannot confirm {env.active_region} is down ({why}); re-run with --force to fail over")
    result = ctx.apply(f"failover {env.active_region} → {target}",
                       lambda cfg: cfg.set("stamps:activeRegion", target))
    if result is not None or ctx.dry_run:
        _notify(ctx, f"DISASTER RECOVERY: failover of {ctx.stack} from {env.active_region} to {target}",
                source=env.active_region, target=target, forced=ctx.force)
        audit(ctx, "failover", "failed-over", source=env.active_region, target=target, forced=ctx.force)
    return EXIT_OK


def failback(ctx: Context, args: argparse.Namespace) -> int:
    env = ctx.environment()
    home = next((r.name for r in env.config.regions if r.role == "primary" and r.dr_region == env.active_region),
                env.primary_regions[0])
    if env.active_region == home:
        ctx.console.print(f"[green]✓[/] {home} already serves traffic: nothing to change")
        return EXIT_OK
    healthy, why = _endpoint_health(ctx, env, home)
    ctx.console.print(f"primary {home} endpoint health: "
                      f"{'healthy' if healthy else 'unhealthy' if healthy is False else 'unknown'} {why}")
    if not healthy and not ctx.force and not ctx.dry_run:
        raise Refused(f"{home} is not confirmed healthy ({why or 'probe says down'}); failing back would send "
                      "traffic to a broken region. Re-run with --force to fail back anyway")
    result = ctx.apply(f"failback {env.active_region} → {home}", lambda cfg: cfg.set("stamps:activeRegion", home))
    if result is not None or ctx.dry_run:
        _notify(ctx, f"DISASTER RECOVERY: {ctx.stack} failed back to {home}", resolve=True, target=home)
        audit(ctx, "failback", "failed-back", source=env.active_region, target=home)
    return EXIT_OK


def dr_drill(ctx: Context, args: argparse.Namespace) -> int:
    env = ctx.environment()
    primary = env.active_region
    if primary not in env.primary_regions:
        raise Refused(f"the stack is failed over to {primary}; fail back before drilling")
    dr = env.regions[primary].dr_region
    path = f"stamps:regions[name={primary}].trafficEnabled"
    resumed = not env.regions[primary].traffic_enabled
    if resumed:
        ctx.console.print(f"resuming an interrupted drill: {primary}'s endpoint is still disabled")
    ctx.apply(f"dr-drill: disable {primary}'s Traffic Manager endpoint", lambda cfg: cfg.set(path, False))
    moved = True
    if ctx.dry_run:
        ctx.console.print(f"(dry run) then: wait up to {args.verify_timeout:.0f}s for {dr} to take traffic, and "
                          f"re-enable {primary} (the exact reverse of the change above)")
        return EXIT_OK
    audit(ctx, "dr-drill", "primary-disabled", region=primary, resumed=resumed)
    moved = _wait_for_traffic(ctx, env, primary, dr, args.verify_timeout, args.poll)
    # Re-enable no matter what the verification said: a drill must never leave the primary out.
    ctx.apply(f"dr-drill: re-enable {primary}'s Traffic Manager endpoint",
              lambda cfg: cfg.delete(path, missing_ok=True))
    audit(ctx, "dr-drill", "primary-enabled", region=primary, traffic_moved=moved)
    if not moved:
        raise Failed(f"dr-drill: {dr} did not report a healthy endpoint within {args.verify_timeout}s while "
                     f"{primary} was disabled; {primary} is re-enabled. Investigate the DR region before relying "
                     "on a failover")
    ctx.console.print(f"[green]✓[/] drill passed: {dr} took traffic, {primary} is back")
    return EXIT_OK


def _wait_for_traffic(ctx: Context, env: Environment, primary: str, dr: str | None, timeout: float,
                      poll: float) -> bool:
    """Traffic moved when the primary endpoint reads down (disabled) and the DR endpoint reads up."""
    if dr is None:
        return False
    deadline = time.monotonic() + timeout
    while True:
        dr_up, why_dr = _endpoint_health(ctx, env, dr)
        primary_up, _ = _endpoint_health(ctx, env, primary)
        ctx.console.print(f"  {dr}: {dr_up} {why_dr}  {primary}: {primary_up}")
        if dr_up and primary_up is False:
            return True
        if time.monotonic() >= deadline:
            return False
        ctx.sleep(poll)


def register(sub: argparse._SubParsersAction, common: Any) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("failover", help="move traffic to the DR region (refuses a healthy primary without --force)",
                       description=__doc__)
    p.add_argument("--to", required=True, metavar="REGION", help="the region to serve traffic from")
    p.add_argument("--force", action="store_true", help="fail over even if the primary looks healthy")
    common(p)
    p.set_defaults(func=failover)

    p = sub.add_parser("failback", help="move traffic back to the primary region", description=__doc__)
    p.add_argument("--force", action="store_true", help="fail back even if the primary is not confirmed healthy")
    common(p)
    p.set_defaults(func=failback)

    p = sub.add_parser("dr-drill", help="disable the primary endpoint, verify traffic moved, re-enable it",
                       description=__doc__)
    p.add_argument("--verify-timeout", type=float, default=300.0, help="seconds to wait for traffic to move")
    p.add_argument("--poll", type=float, default=30.0, help="seconds between health reads")
    common(p)
    p.set_defaults(func=dr_drill)
