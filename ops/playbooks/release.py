"""Blue-green release (runbook: "Application Updates").

Each step is one stack update of the CELLs' `canary: {version, weight}`: weight 0 creates the new revision
with no traffic, a health gate checks it through its `candidate` label, then traffic moves 10 → 50 → 100 %
with a wait and a health check between steps. The last step makes the version the CELL's `version` and
drops the canary. A failed check rolls back (canary removed: all traffic on the stable revision) and exits 1.
An interrupted release resumes from the weights in the stack file.
"""

from __future__ import annotations

import argparse
import re
from typing import Any

from ops.playbooks.base import EXIT_OK, Context, Failed, PlaybookError, Refused, audit, cell_path, find_cell
from stamps.config.model import CellConfig

VERSION = re.compile(r"^[0-9A-Za-z][0-9A-Za-z.-]{0,30}$")
DEFAULT_HEALTH_URL = "https://{label_fqdn}/health"


def _label_fqdn(app_fqdn: str, label: str) -> str:
    """Container Apps serves a traffic label at `<app>---<label>.<environment domain>`."""
    app, _, domain = app_fqdn.partition(".")
    return f"{app}---{label}.{domain}"


def _steps(text: str) -> list[int]:
    try:
        steps = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise PlaybookError(f"--steps: {text!r} is not a comma-separated list of percentages like 10,50,100") from None
    if not steps or steps != sorted(set(steps)) or steps[-1] != 100 or steps[0] <= 0:
        raise PlaybookError(f"--steps: {text!r} must rise strictly from above 0 and end at 100 (e.g. 10,50,100)")
    return steps


def _healthy(ctx: Context, args: argparse.Namespace, cells: list[CellConfig], label: str) -> list[str]:
    """URLs that failed the check; reads each primary CELL app's FQDN from the stack outputs."""
    outputs = ctx.outputs().get("cells") or {}
    failures = []
    for key, info in outputs.items():
        if info.get("role") != "primary" or info.get("cell") not in {c.name for c in cells}:
            continue
        fqdn = str(info.get("fqdn") or "")
        url = args.health_url.format(label_fqdn=_label_fqdn(fqdn, label), fqdn=fqdn, cell=info["cell"], key=key)
        status = ctx.health(url)
        ctx.console.print(f"  health {url}: {status or 'unreachable'}")
        if status != 200:
            failures.append(f"{url} → {status or 'unreachable'}")
    return failures


PLACEHOLDERS = ("label_fqdn", "fqdn", "cell", "key")


def check_health_url(template: str) -> None:
    """Preflight: the template must format with the known placeholders into an http(s) URL, before step 0."""
    from urllib.parse import urlsplit

    sample = {name: f"{name}.example" for name in PLACEHOLDERS}
    valid = ", ".join("{" + p + "}" for p in PLACEHOLDERS)
    try:
        url = template.format(**sample)
    except KeyError as err:
        raise PlaybookError(f"--health-url: unknown placeholder {{{err.args[0]}}}; valid: {valid}") from None
    except (IndexError, ValueError, AttributeError) as err:
        raise PlaybookError(f"--health-url: {template!r} is not a valid template ({err}); placeholders: "
                            f"{valid}, literal braces doubled ({{{{ }}}})") from None
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise PlaybookError(f"--health-url: {template!r} does not give an http(s) URL (e.g. {DEFAULT_HEALTH_URL})")


def run(ctx: Context, args: argparse.Namespace) -> int:
    if not VERSION.match(args.version):
        raise PlaybookError(f"VERSION: {args.version!r} must be letters, digits, dots and hyphens (e.g. 1.5.0)")
    steps = _steps(args.steps)
    check_health_url(args.health_url)
    env = ctx.environment()
    names = args.cells.split(",") if args.cells else [c.name for c in env.cells if c.isolation is None]
    for n in names:
        find_cell(env, n, "--cells")
    cells = [c for c in env.cells if c.name in names]
    for c in cells:
        if c.canary is not None and c.canary.version != args.version:
            raise Refused(f"--cells: CELL {c.name!r} is mid-release of {c.canary.version}; finish or roll it back "
                          f"(`stamps-ops release {c.canary.version} --rollback --cells {c.name}`) first")
    if args.rollback:
        return _rollback(ctx, cells, args.version, reason="requested")
    pending = [c for c in cells if not (c.version == args.version and c.canary is None)]
    if not pending:
        ctx.already_done(f"{', '.join(names)} already run {args.version}")
        return EXIT_OK
    done = min((c.canary.weight if c.canary else -1) for c in pending)
    try:
        _steps_of(ctx, args, pending, steps, done)
    except (Failed, KeyboardInterrupt):
        raise  # a failed check rolled back already; an interrupted release resumes from the stack file
    except Exception as err:
        if ctx.dry_run or not ctx.deployed:
            raise
        # Whatever broke after a step was deployed, this run's canary must not stay half-way.
        _rollback(ctx, pending, args.version, reason=f"error after a step: {type(err).__name__}")
        raise Failed(f"release {args.version} rolled back after an error: {err}") from err
    if not ctx.dry_run:
        ctx.console.print(f"[green]✓[/] {', '.join(c.name for c in pending)} now run {args.version}")
    return EXIT_OK


def _steps_of(ctx: Context, args: argparse.Namespace, pending: list[CellConfig], steps: list[int],
              done: int) -> None:
    for weight in [0, *steps]:
        if weight <= done:
            continue  # resumed: this step is already in the stack
        ctx.apply(f"release {args.version}: {weight}% of traffic on the new revision",
                  lambda cfg, w=weight: _set_weight(cfg, pending, args.version, w), local=True)  # type: ignore[misc]  # w binds this step's weight
        if ctx.dry_run:
            continue
        audit(ctx, "release", "step", version=args.version, weight=weight, cells=[c.name for c in pending])
        if weight == 100:
            break
        if weight > 0:
            ctx.console.print(f"  waiting {args.wait:.0f}s at {weight}% before the next check")
            ctx.sleep(args.wait)
        failures = _healthy(ctx, args, pending, "candidate")
        if failures:
            ctx.console.print(f"[red]health check failed at {weight}%[/]: {'; '.join(failures)}")
            _rollback(ctx, pending, args.version, reason=f"health check failed at {weight}%")
            raise Failed(f"release {args.version} rolled back at {weight}%: {'; '.join(failures)}")


def _set_weight(cfg: Any, cells: list[CellConfig], version: str, weight: int) -> None:
    for c in cells:
        if weight == 100:
            cfg.set(f"{cell_path(c.name)}.version", version)
            cfg.delete(f"{cell_path(c.name)}.canary", missing_ok=True)
        else:
            cfg.set(f"{cell_path(c.name)}.canary", {"version": version, "weight": weight})


def _rollback(ctx: Context, cells: list[CellConfig], version: str, *, reason: str) -> int:
    ctx.apply(f"roll back {version} ({reason}): all traffic on the stable revision",
              lambda cfg: [cfg.delete(f"{cell_path(c.name)}.canary", missing_ok=True) for c in cells])
    audit(ctx, "release", "rolled-back", version=version, reason=reason, cells=[c.name for c in cells])
    return EXIT_OK


def register(sub: argparse._SubParsersAction, common: Any) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("release", help="blue-green release with health-gated traffic steps", description=__doc__)
    p.add_argument("version", metavar="VERSION", help="image tag to release, e.g. 1.5.0")
    p.add_argument("--cells", help="comma-separated CELLs (default: every CELL not isolated)")
    p.add_argument("--steps", default="10,50,100", help="traffic percentages (default: 10,50,100)")
    p.add_argument("--wait", type=float, default=300.0, help="seconds to watch each step (default: 300)")
    p.add_argument("--health-url", default=DEFAULT_HEALTH_URL,
                   help="health URL template: {label_fqdn}, {fqdn}, {cell}, {key} (default: the candidate label)")
    p.add_argument("--rollback", action="store_true", help="drop the canary: all traffic back on stable")
    common(p)
    p.set_defaults(func=run)
