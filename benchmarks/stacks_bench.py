"""The stack set against the single stack, per fleet: stack count, the largest stack, offline plan CPU time
of the whole set and of one CELL stack alone, in one run (`python -m benchmarks.stacks_bench [--sizes S,M,L]`).

CPU time of this process (time.process_time) around each plan; the SDK's mock monitor runs in-process.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from benchmarks.fleets import ROOT, write_fleet
from stamps.offline import plan_stack
from stamps.stacks.fleet import plan_fleet


def clear_caches() -> None:
    from stamps.config import stackfile
    from stamps.stacks import fleet

    stackfile._parse_cached.cache_clear()
    stackfile._config_view.cache_clear()
    fleet._load.cache_clear()


def cpu(fn):  # type: ignore[no-untyped-def]
    start = time.process_time()
    result = fn()
    return result, time.process_time() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="S,M,L")
    args = parser.parse_args(argv)
    table = Table(title="single stack vs stack set (offline plan, CPU seconds)")
    for col in ("fleet", "single: resources", "single: CPU s", "stacks", "largest stack", "set: CPU s",
                "one CELL stack: CPU s"):
        table.add_column(col, justify="right")
    with tempfile.TemporaryDirectory() as tmp:
        for size in args.sizes.split(","):
            config = write_fleet(size, Path(tmp))
            single, t_single = cpu(lambda c=config: plan_stack(ROOT, "prod", config_file=c))
            plans, t_set = cpu(lambda c=config: plan_fleet(ROOT, "prod", c))
            largest = max(plans, key=lambda p: len(p.custom()))
            # One CELL stack alone, its upstream outputs already known (as after the upstream stacks' `up`), from
            # cold: `pulumi up -s prod.cell.<cell>.<region>` parses and validates the whole fleet file itself.
            outputs = {p.stack: p.outputs for p in plans}
            clear_caches()
            cell = next(p.stack for p in plans if p.stack.startswith("prod.cell."))
            _, t_cell = cpu(lambda c=config, s=cell, o=outputs: plan_stack(ROOT, s, fleet_file=c, stack_outputs=o))
            table.add_row(size, str(len(single.custom())), f"{t_single:.2f}", str(len(plans)),
                          f"{len(largest.custom())} ({largest.stack})", f"{t_set:.2f}", f"{t_cell:.2f}")
    Console().print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
