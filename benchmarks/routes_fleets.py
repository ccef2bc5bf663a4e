"""`stamps routes` on prod and the benchmark fleets M and L, in every single-region failover state (CI runs it).

Prints, per fleet and state, the verdict, tenants reaching their CELL, and the time to plan and to walk; exits
4 when any state has a routing error. `python -m benchmarks.routes_fleets [--sizes S,M,L]`.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.fleets import ROOT, write_fleet
from stamps.commands.routes import failed_over_file, primaries
from stamps.offline import plan_stack
from stamps.routes import check_routes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="S,M,L", help="fleets to check (default: S,M,L)")
    args = parser.parse_args(argv)
    failed = False
    with tempfile.TemporaryDirectory(prefix="stamps-routes-") as tmp:
        work = Path(tmp)
        for name in ("Pulumi.yaml", "__main__.py"):
            shutil.copy(ROOT / name, work / name)
        (work / "stamps").symlink_to(ROOT / "stamps")
        print(f"{'fleet':<6} {'state':<22} {'resources':>9} {'tenants ok':>11} {'plan s':>7} {'walk s':>7}  verdict")
        for size in [s.strip().upper() for s in args.sizes.split(",") if s.strip()]:
            stack = "prod" if size == "S" else f"fleet-{size.lower()}"
            config = ROOT / "Pulumi.prod.yaml" if size == "S" else write_fleet(size, work)
            for state in [[], *([p] for p in primaries(config))]:
                cfg = failed_over_file(config, state) if state else config
                t0 = time.perf_counter()
                plan = plan_stack(work, stack, cfg)
                t1 = time.perf_counter()
                report = check_routes(plan.resources, plan.outputs, state)
                t2 = time.perf_counter()
                ok = sum(t.verdict == "ok" for t in report.tenants)
                verdict = "ok" if report.ok else "; ".join(f.message for f in report.errors[:3])
                failed |= not report.ok
                label = "failed over: " + ",".join(state) if state else "all primaries serve"
                print(f"{size:<6} {label:<22} {len(plan.resources):>9} {ok:>5}/{len(report.tenants):<5} "
                      f"{t1 - t0:>7.1f} {t2 - t1:>7.2f}  {verdict}", flush=True)
    return 4 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
