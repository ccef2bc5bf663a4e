"""DR failover, failback and drills per primary region (runbook: "DR Procedures", monthly "Disaster recovery test").

Every primary region serves its own CELLs; failover moves ONE primary region's CELLs to their standbys in its
DR region. It is one config value, `stamps:regions[name=R].servingFrom: dr`: the program derives that region's
Traffic Manager priorities (one atomic profile update), its lowered DNS TTL and its standby CELLs' active
replica counts from it; no other region's resources change. Failback deletes the value. A drill disables the
region's Traffic Manager endpoint (`trafficEnabled: false`), verifies traffic moved to the DR endpoint, and
re-enables it — always, even when the verification fails. A drill interrupted half-way resumes on re-run.

Blobs: a standby CELL uses its primary's geo-redundant (GZRS/GRS) storage account. While the primary region is
down that account's endpoint is unreachable until a customer-managed account failover makes its copy in the paired
region the primary (learn.microsoft.com/azure/storage/common/storage-disaster-recovery-guidance). That failover
loses what was written after the account's Last Sync Time and leaves the account locally redundant, so it is its
own step: `failover-storage` shows each account's Last Sync Time, then starts the failover (ARM
`POST .../storageAccounts/<name>/failover`); `failover` names it when it is still to do.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from rich.markup import escape

from ops.playbooks.base import (
    EXIT_OK,
    Context,
    Failed,
    PlaybookError,
    Refused,
    audit,
    cell_storage_id,
    stack_subscription,
)
from stamps.environment import Environment
from stamps.errors import clip


def _endpoint_health(ctx: Context, env: Environment, primary: str, region: str) -> tuple[bool | None, str]:
    """Traffic Manager's probe verdict for `region`'s endpoint in `primary`'s profile, with a reason when unknown."""
    try:
        profiles = ctx.outputs().get("trafficManagerProfiles") or {}
    except Exception as err:  # the runner's own error types differ; any failure means "unknown"
        return None, f"cannot read stack outputs: {err}"
    profile_id = profiles.get(primary) if isinstance(profiles, dict) else None
    if not profile_id:
        return None, f"the stack has no Traffic Manager profile for {primary} in its trafficManagerProfiles output"
    try:
        reader = ctx.metrics()
        return reader.endpoint_health(str(profile_id), f"endpoint-{region}"), ""
    except Exception as err:  # AzureReadError, missing credential: say why, let the caller decide
        first = (str(err).splitlines() or [""])[0]
        # Messages lead with the cause (a credential, a status code); the resource id after it may be cut.
        return None, f"cannot read Azure Monitor ({type(err).__name__}: {clip(first, 400)})"


def _primary(env: Environment, region: str | None, arg: str = "--region") -> str:
    primaries = env.primary_regions
    if region is None:
        if len(primaries) == 1:
            return primaries[0]
        raise PlaybookError(f"{arg}: name the primary region; valid: {', '.join(primaries)}")
    if region not in primaries:
        raise PlaybookError(f"{arg}: {region!r} is not a primary region; valid: {', '.join(primaries)}")
    return region


def unprotected_cells(env: Environment, primary: str) -> list[str]:
    """The primary's CELLs with no standby: a failover strands their tenants."""
    standbys = {i.name for i in env.instances if i.role == "standby"}
    return sorted(c.name for c in env.cells if c.region == primary and c.name not in standbys)


def _serving_path(region: str) -> str:
    return f"stamps:regions[name={region}].servingFrom"


def _notify(ctx: Context, summary: str, *, resolve: bool = False, **details: Any) -> None:
    from ops.notify import Action, Incident, Severity

    incident = Incident(
        summary=summary, severity=Severity.CRITICAL, component="traffic-routing",
        action=Action.RESOLVE if resolve else Action.TRIGGER,
        dedup_key=f"stamps-{ctx.stack}-dr-{details.get('region', '')}",
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


def failover(ctx: Context, args: argparse.Namespace) -> int:
    env = ctx.environment()
    primary = _primary(env, args.region)
    dr = env.regions[primary].dr_region
    if env.failed_over(primary):
        ctx.console.print(f"[green]✓[/] {primary}'s CELLs already serve from {dr}: nothing to change")
        _storage_reminder(ctx, env, primary)
        return EXIT_OK
    stranded = unprotected_cells(env, primary)
    accepted = {c for a in args.accept_unprotected or [] for c in a.split(",") if c}
    unknown = sorted(accepted - {c.name for c in env.cells})
    if unknown:
        raise PlaybookError(f"--accept-unprotected: no CELL named {', '.join(unknown)}")
    if sorted(set(stranded) - accepted):
        missing = sorted(set(stranded) - accepted)
        raise Refused(f"{primary} holds CELLs without a standby: {', '.join(missing)}. A failover leaves their "
                      f"tenants unreachable until failback; re-run with --accept-unprotected {','.join(missing)} "
                      "to fail over anyway")
    healthy, why = _endpoint_health(ctx, env, primary, primary)
    ctx.console.print(f"{primary} endpoint health: "
                      f"{'healthy' if healthy else 'unhealthy' if healthy is False else 'unknown'} {escape(why)}",
                      soft_wrap=True)
    if healthy and not ctx.force:
        raise Refused(f"{primary} is healthy; a failover would move its traffic off a working region. Re-run with "
                      "--force to fail over anyway")
    if healthy is None and not ctx.force and not ctx.dry_run:
        raise Refused(f"cannot confirm {primary} is down ({why}); re-run with --force to fail over")
    result = ctx.apply(f"failover {primary} → {dr}", lambda cfg: cfg.set(_serving_path(primary), "dr"))
    if result is not None or ctx.dry_run:
        _notify(ctx, f"DISASTER RECOVERY: {ctx.stack} {primary} failed over to {dr}", region=primary,
                source=primary, target=dr, forced=ctx.force, stranded=stranded)
        audit(ctx, "failover", "failed-over", region=primary, source=primary, target=dr, forced=ctx.force,
              stranded=stranded)
        _storage_reminder(ctx, env, primary)
    return EXIT_OK


def _geo_cells(env: Environment, primary: str) -> list[str]:
    """The primary region's CELLs whose blobs are geo-redundant: those with a standby, in a region with a pair."""
    from stamps.config.capabilities import storage_sku

    return [c.name for c in env.cells if c.region == primary and c.standby is not None
            and storage_sku(primary, zone_redundant=False, geo=True).sku != "Standard_LRS"]


def _storage_reminder(ctx: Context, env: Environment, primary: str) -> None:
    cells = _geo_cells(env, primary)
    if cells:
        ctx.console.print(f"[yellow]![/] blobs of {', '.join(cells)} are reachable again once their storage accounts "
                          f"fail over to the paired region: `stamps-ops failover-storage --region {primary}` (shows "
                          "what the failover may lose first)", soft_wrap=True)


def failover_storage(ctx: Context, args: argparse.Namespace) -> int:
    """Customer-managed (unplanned) failover of the region's CELL storage accounts, each skipped when done."""
    from ops.arm import API_VERSIONS, ArmReadError

    env = ctx.environment()
    primary = _primary(env, args.region)
    cells = _geo_cells(env, primary)
    if not cells:
        ctx.console.print(f"no CELL of {primary} has geo-redundant storage: nothing to fail over")
        return EXIT_OK
    subscription = stack_subscription(ctx, "failing its storage over")
    api = API_VERSIONS["storage"]
    if ctx.dry_run:
        for cell in cells:
            ctx.console.print(f"would fail over CELL {cell}'s storage: POST {cell_storage_id(env, subscription, cell)}"
                              f"/failover?api-version={api}", soft_wrap=True)
        return EXIT_OK
    arm = ctx.arm()
    try:
        for cell in cells:
            account = cell_storage_id(env, subscription, cell)
            name = account.rsplit("/", 1)[1]
            try:
                state = arm.get(account, api, params={"$expand": "geoReplicationStats"})
                props = state.get("properties") or {}
                where = str(props.get("primaryLocation") or "").replace(" ", "").lower()
                if where and where != primary:
                    ctx.console.print(f"[green]✓[/] {name}: its primary is {where} already")
                    continue
                if props.get("failoverInProgress"):
                    ctx.console.print(f"{name}: a failover is in progress already")
                    continue
                sku = str((state.get("sku") or {}).get("name") or "")
                if "GRS" not in sku and "GZRS" not in sku:
                    raise Failed(f"{name} is {sku or 'of unknown redundancy'}: it has no geo copy to fail over to")
                synced = (props.get("geoReplicationStats") or {}).get("lastSyncTime") or "unknown"
                ctx.console.print(f"{name}: blobs written after {synced} (its Last Sync Time) are lost by the failover")
                op = arm.change("POST", f"{account}/failover", api, None, wait=args.wait, final_state_via="location")
            except ArmReadError as err:
                raise Failed(f"storage failover of CELL {cell} ({name}): {err}; re-run to retry") from None
            done = op.status == "Succeeded"
            audit(ctx, "failover-storage", "storage-failed-over" if done else "storage-failover-started",
                  region=primary, cell=cell, account=name, lastSyncTime=synced, monitor=op.monitor)
            ctx.console.print(f"{name}: " + ("failed over" if done else f"failover started; follow it at {op.monitor}"),
                              soft_wrap=True)
    finally:
        close = getattr(arm, "close", None)
        if callable(close):
            close()
    return EXIT_OK


def failback(ctx: Context, args: argparse.Namespace) -> int:
    env = ctx.environment()
    primary = _primary(env, args.region)
    dr = env.regions[primary].dr_region
    if not env.failed_over(primary):
        ctx.console.print(f"[green]✓[/] {primary} already serves its own CELLs: nothing to change")
        return EXIT_OK
    healthy, why = _endpoint_health(ctx, env, primary, primary)
    ctx.console.print(f"{primary} endpoint health: "
                      f"{'healthy' if healthy else 'unhealthy' if healthy is False else 'unknown'} {escape(why)}",
                      soft_wrap=True)
    if not healthy and not ctx.force and not ctx.dry_run:
        raise Refused(f"{primary} is not confirmed healthy ({why or 'probe says down'}); failing back would send "
                      "traffic to a broken region. Re-run with --force to fail back anyway")
    result = ctx.apply(f"failback {dr} → {primary}", lambda cfg: cfg.delete(_serving_path(primary), missing_ok=True))
    if result is not None or ctx.dry_run:
        _notify(ctx, f"DISASTER RECOVERY: {ctx.stack} {primary} failed back from {dr}", resolve=True,
                region=primary, target=primary)
        audit(ctx, "failback", "failed-back", region=primary, source=dr, target=primary)
    return EXIT_OK


def dr_drill(ctx: Context, args: argparse.Namespace) -> int:
    env = ctx.environment()
    primary = _primary(env, args.region)
    if env.failed_over(primary):
        raise Refused(f"{primary} is failed over to {env.serving_region(primary)}; fail back before drilling")
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
    ctx.console.print(f"[green]✓[/] drill passed: {dr} took {primary}'s traffic, {primary} is back")
    return EXIT_OK


def _wait_for_traffic(ctx: Context, env: Environment, primary: str, dr: str | None, timeout: float,
                      poll: float) -> bool:
    """Traffic moved when the primary endpoint reads down (disabled) and the DR endpoint reads up."""
    if dr is None:
        return False
    deadline = time.monotonic() + timeout
    while True:
        dr_up, why_dr = _endpoint_health(ctx, env, primary, dr)
        primary_up, _ = _endpoint_health(ctx, env, primary, primary)
        ctx.console.print(f"  {dr}: {dr_up} {why_dr}  {primary}: {primary_up}")
        if dr_up and primary_up is False:
            return True
        if time.monotonic() >= deadline:
            return False
        ctx.sleep(poll)


def _positive(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number of seconds") from None
    if number <= 0:
        raise argparse.ArgumentTypeError(f"{value!r} must be more than 0 seconds")
    return number


def register(sub: argparse._SubParsersAction, common: Any) -> None:  # type: ignore[type-arg]
    region_help = "the primary region (default: the only one, when there is one)"
    p = sub.add_parser("failover", help="move one primary region's CELLs to their standbys (refuses a healthy "
                                        "region without --force)", description=__doc__)
    p.add_argument("--region", metavar="REGION", help=region_help)
    p.add_argument("--force", action="store_true", help="fail over even if the region looks healthy")
    p.add_argument("--accept-unprotected", action="append", metavar="CELL[,CELL]",
                   help="fail over although these CELLs of the region have no standby (their tenants go dark)")
    common(p)
    p.set_defaults(func=failover)

    p = sub.add_parser("failover-storage", help="fail a region's CELL storage accounts over to their paired region "
                                                "(shows what each may lose first)", description=__doc__)
    p.add_argument("--region", metavar="REGION", help=region_help)
    p.add_argument("--wait", action="store_true", help="follow each account failover until Azure reports it done")
    common(p)
    p.set_defaults(func=failover_storage)

    p = sub.add_parser("failback", help="move a failed-over region's CELLs back to it", description=__doc__)
    p.add_argument("--region", metavar="REGION", help=region_help)
    p.add_argument("--force", action="store_true", help="fail back even if the region is not confirmed healthy")
    common(p)
    p.set_defaults(func=failback)

    p = sub.add_parser("dr-drill", help="disable a region's endpoint, verify its DR region took traffic, re-enable it",
                       description=__doc__)
    p.add_argument("--region", metavar="REGION", help=region_help)
    p.add_argument("--verify-timeout", type=_positive, default=300.0, help="seconds to wait for traffic to move")
    p.add_argument("--poll", type=_positive, default=30.0, help="seconds between health reads")
    common(p)
    p.set_defaults(func=dr_drill)
