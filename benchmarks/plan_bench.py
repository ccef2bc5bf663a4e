"""How fast `stamps plan` is for fleets S, M and L, against the floor of plain CustomResource registrations.

    python -m benchmarks.plan_bench [--sizes S,M,L] [--no-floor] [--stock]

Each fleet is planned in a fresh interpreter (the SDK keeps process-wide state, and peak memory must be the
plan's own). The floor is the same number of plain `pulumi.CustomResource` registrations under the same
mocks (benchmarks.floor). `--stock` plans with the SDK speedup off, to show what it buys.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from benchmarks.fleets import ROOT, write_fleet

_CHILD = """
import json, resource, sys, time
from pathlib import Path
c0, w0 = time.process_time(), time.perf_counter()
from stamps.offline import plan_stack
plan = plan_stack(Path(sys.argv[1]), "prod", Path(sys.argv[2]))
cold_cpu, cold_wall = time.process_time() - c0, time.perf_counter() - w0
# Steady state: the same plan again in the same process, so one-time costs (module imports, pydantic and
# SDK type metadata, ~2 s) are not charged per resource. This is what a resource costs the program.
c1 = time.process_time()
plan = plan_stack(Path(sys.argv[1]), "prod", Path(sys.argv[2]))
warm_cpu = time.process_time() - c1
from stamps import speedup
print(json.dumps({
    "resources": len(plan.resources), "custom": sum(1 for r in plan.resources if r["custom"]),
    "cpu_s": cold_cpu, "wall_s": cold_wall, "warm_cpu_s": warm_cpu,
    "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "speedup": speedup.status(),
}))
"""


def plan_fleet(size: str, directory: Path, *, stock: bool = False) -> dict[str, Any]:
    config = write_fleet(size, directory)
    env = {**os.environ, "STAMPS_SDK_SPEEDUP": "0" if stock else "1"}
    out = subprocess.run(
        [sys.executable, "-c", _CHILD, str(ROOT), str(config)], capture_output=True, text=True, env=env, check=True
    )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    result["size"] = size
    result["ms_per_resource"] = 1000 * result["warm_cpu_s"] / result["resources"]
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.plan_bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--sizes", default="S,M,L")
    parser.add_argument("--no-floor", action="store_true")
    parser.add_argument("--stock", action="store_true", help="also plan with the SDK speedup off")
    parser.add_argument("--json", help="write the rows as JSON to this file")
    args = parser.parse_args(argv)
    from benchmarks.floor import measure_floor

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for size in args.sizes.split(","):
            row = plan_fleet(size, Path(tmp))
            if args.stock:
                stock = plan_fleet(size, Path(tmp), stock=True)
                row["stock_ms_per_resource"] = stock["ms_per_resource"]
            if not args.no_floor:
                floor = measure_floor(row["resources"])
                row["floor_ms_per_resource"] = floor["ms_per_resource"]
            rows.append(row)
    base = rows[0]["ms_per_resource"]
    table = Table(title="stamps plan: cost per resource (CPU)")
    for col in ("fleet", "resources", "cold CPU s", "cold wall s", "ms/resource", "× floor", "× S", "peak MiB"):
        table.add_column(col, justify="right")
    if args.stock:
        table.add_column("stock ms/resource", justify="right")
    for r in rows:
        cells = [
            r["size"],
            str(r["resources"]),
            f"{r['cpu_s']:.1f}",
            f"{r['wall_s']:.1f}",
            f"{r['ms_per_resource']:.2f}",
            f"{r['ms_per_resource'] / r['floor_ms_per_resource']:.2f}" if "floor_ms_per_resource" in r else "-",
            f"{r['ms_per_resource'] / base:.2f}",
            f"{r['peak_mib']:.0f}",
        ]
        if args.stock:
            cells.append(f"{r['stock_ms_per_resource']:.2f}")
        table.add_row(*cells)
    if not args.no_floor:
        table.caption = (
            "cold: one `stamps plan` run from a fresh interpreter, imports included; ms/resource: the same "
            "plan again in that process (steady state); floor: as many plain pulumi.CustomResource "
            "registrations under the same mocks"
        )
    console = Console(width=140)
    console.print(table)
    for r in rows:
        if "floor_ms_per_resource" in r:
            print(f"{r['size']}: floor {r['floor_ms_per_resource']:.2f} ms/resource; speedup {r['speedup']}")
    onboard, failover = change_sizes()
    console.print(f"prod: onboarding a shared tenant creates {onboard} resources (target ≤ 2); "
                  f"a failover changes {failover} resources (target ≤ 6)")
    if args.json:
        Path(args.json).write_text(json.dumps({"fleets": rows, "onboard_creates": onboard,
                                               "failover_changes": failover}, indent=2))
    return 0


def change_sizes() -> tuple[int, int]:
    """How many resources onboarding one shared tenant creates, and how many a failover changes, in prod."""
    import yaml

    from benchmarks.fleets import prod_doc
    from stamps.offline import diff_plans, plan_stack

    def plan(mutate: Any) -> Any:
        doc = prod_doc()
        mutate(doc["config"])
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "Pulumi.prod.yaml"
            path.write_text(yaml.safe_dump(doc, sort_keys=False))
            return plan_stack(ROOT, "prod", path)

    base = plan(lambda cfg: None)
    onboarded = plan(lambda cfg: cfg["stamps:tenants"].append(
        {"id": "newco", "tier": "basic", "cell": "retail", "email": "it@newco.example"}))
    failed_over = plan(lambda cfg: cfg.update({"stamps:activeRegion": "westus"}))
    return len(diff_plans(base, onboarded).creates), diff_plans(base, failed_over).changed


if __name__ == "__main__":
    sys.exit(main())
