"""CELL isolation (runbook: "CELL Isolation Procedure") and reinstatement.

Isolating records who and why in the CELL's config (`isolation: {reason, by, at}`); from it the program
empties the CELL's App Gateway pool, denies every caller at the app's ingress and lets it scale to zero
(the revision serves nothing), and disables the CELL's alert rules so the isolation does not page anyone.
Reinstating removes the record and everything returns as it was.
"""

from __future__ import annotations

import argparse
from typing import Any

from ops.playbooks.base import EXIT_OK, Context, PlaybookError, audit, cell_path, find_cell


def isolate(ctx: Context, args: argparse.Namespace) -> int:
    env = ctx.environment()
    find_cell(env, args.cell)
    if not args.reason.strip():
        raise PlaybookError("--reason: say why the CELL is isolated (it is recorded with your name)")
    current = next(c for c in env.cells if c.name == args.cell).isolation
    if current is not None:
        # The file says so; the deployed stack may not (a run that failed before this fix, a hand edit).
        ctx.already_done(f"CELL {args.cell!r} is already isolated by {current.by} at {current.at}: {current.reason}")
        return EXIT_OK
    tenants = [t.id for t in env.config.tenants if env.tenant_cells.get(t.id) == args.cell]
    record = {"reason": args.reason.strip(), "by": ctx.actor, "at": ctx.now().isoformat(timespec="seconds")}
    result = ctx.apply(f"isolate CELL {args.cell} ({len(tenants)} tenants: {', '.join(tenants) or 'none'})",
                       lambda cfg: cfg.set(f"{cell_path(args.cell)}.isolation", record))
    if result is not None:
        audit(ctx, "isolate", "isolated", cell=args.cell, reason=record["reason"], tenants=tenants)
    return EXIT_OK


def reinstate(ctx: Context, args: argparse.Namespace) -> int:
    env = ctx.environment()
    find_cell(env, args.cell)
    result = ctx.apply(f"reinstate CELL {args.cell}",
                       lambda cfg: cfg.delete(f"{cell_path(args.cell)}.isolation", missing_ok=True))
    if result is not None:
        audit(ctx, "reinstate", "reinstated", cell=args.cell)
    return EXIT_OK


def register(sub: argparse._SubParsersAction, common: Any) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("isolate", help="drain a CELL, stop its revision, mute its alerts", description=__doc__)
    p.add_argument("cell", metavar="CELL", help="CELL name from stamps:cells")
    p.add_argument("--reason", required=True, help="why (recorded with who and when)")
    common(p)
    p.set_defaults(func=isolate)
    p = sub.add_parser("reinstate", help="undo an isolation", description=__doc__)
    p.add_argument("cell", metavar="CELL", help="CELL name from stamps:cells")
    common(p)
    p.set_defaults(func=reinstate)
