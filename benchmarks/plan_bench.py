"""How fast `stamps plan` is for fleets S, M and L, against the floor, with each offline shortcut on and off.

    python -m benchmarks.plan_bench [--sizes S,M,L] [--repeat 3] [--quick] [--json FILE] [--changes]

Every fleet number is one whole `stamps plan --out` process (`python -m stamps.cli`, tree printed to
/dev/null): CPU time (user+sys of the process, all threads, from the kernel) and wall time, the median of
`--repeat` runs, and its peak RSS. Runs are interleaved round-robin so load from other processes on the
machine spreads over all variants alike; CPU time is what to compare on a shared machine.

- marginal ms/resource S→L = (CPU(L) − CPU(S)) / (resources(L) − resources(S)): what one more resource
  costs, with imports and other fixed costs cancelled out.
- floor: the same marginal cost for plain `pulumi.CustomResource` registrations under the same mocks
  (benchmarks.floor: n = resources of S and of L, stock SDK), measured in the same run.
- variants: every shortcut on (what `stamps plan` does), then each one switched off by its variable
  (stamps/speedup.py), then the three plan-only shortcuts off (GC, stack capture, fast exit: what
  `stamps plan` did before them), then all off (the stock SDK). M is planned for the default variant only.
- `--against`: a plan of L diffed against the saved plan of M, as `stamps plan --against` does (whole
  process, and the diff plus its rendering alone, in-process).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from benchmarks.fleets import ROOT, write_fleet
from stamps import speedup

_OFF = "0"
# Variant → environment. The first is what `stamps plan` runs; the last is the stock SDK.
VARIANTS: dict[str, dict[str, str]] = {
    "all shortcuts on": {},
    f"GC not paused ({speedup.GC_ENV_VAR}=0)": {speedup.GC_ENV_VAR: _OFF},
    f"stock stack capture ({speedup.STACK_ENV_VAR}=0)": {speedup.STACK_ENV_VAR: _OFF},
    f"normal exit ({speedup.FAST_EXIT_ENV_VAR}=0)": {speedup.FAST_EXIT_ENV_VAR: _OFF},
    f"no alias speedup ({speedup.ENV_VAR}=0)": {speedup.ENV_VAR: _OFF},
    "plan shortcuts off (the alias speedup only, as before)": {
        var: _OFF for var in (speedup.GC_ENV_VAR, speedup.STACK_ENV_VAR, speedup.FAST_EXIT_ENV_VAR)
    },
    "all off (stock SDK)": {
        var: _OFF for var in (speedup.ENV_VAR, speedup.GC_ENV_VAR, speedup.STACK_ENV_VAR, speedup.FAST_EXIT_ENV_VAR)
    },
}
DEFAULT = next(iter(VARIANTS))
_ALL_VARS = VARIANTS["all off (stock SDK)"]


def run_cli(args: Sequence[str], env_overrides: dict[str, str]) -> dict[str, float]:
    """One `stamps` process: its CPU seconds (user+sys), wall seconds and peak RSS (MiB)."""
    env = {k: v for k, v in os.environ.items() if k not in _ALL_VARS}
    env.update(env_overrides)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    with tempfile.TemporaryFile() as err:
        wall0 = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-m", "stamps.cli", *args], cwd=ROOT, env=env,
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - wall0
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0:
            err.seek(0)
            raise RuntimeError(f"stamps {' '.join(args)} exited {proc.returncode}:\n{err.read().decode()}")
    return {"cpu_s": usage.ru_utime + usage.ru_stime, "wall_s": wall, "peak_mib": usage.ru_maxrss / 1024}


def _median_row(samples: list[dict[str, float]]) -> dict[str, float]:
    return {key: statistics.median(s[key] for s in samples) for key in samples[0]}


def bench(sizes: list[str], variants: list[str], repeat: int, tmp: Path) -> dict[str, Any]:
    configs = {size: write_fleet(size, tmp) for size in sizes}
    plans = {size: tmp / f"{size}.plan.json" for size in sizes}
    jobs = [(v, s) for v in variants for s in sizes if v == DEFAULT or s != "M"]
    samples: dict[tuple[str, str], list[dict[str, float]]] = {job: [] for job in jobs}
    for round_ in range(repeat):
        for variant, size in jobs:
            args = ["plan", "--project-dir", str(ROOT), "--config-file", str(configs[size]), "--out", str(plans[size])]
            samples[(variant, size)].append(run_cli(args, VARIANTS[variant]))
            print(f"  round {round_ + 1}/{repeat}: {variant}, {size}: {samples[(variant, size)][-1]}", file=sys.stderr)
    resources = {size: len(json.loads(plans[size].read_text())["resources"]) for size in sizes}
    rows = {f"{v}|{s}": {**_median_row(samples[(v, s)]), "resources": resources[s]} for v, s in jobs}
    return {"resources": resources, "rows": rows, "plans": {s: str(p) for s, p in plans.items()},
            "configs": {s: str(c) for s, c in configs.items()}}


def bench_floor(n_small: int, n_large: int, repeat: int) -> dict[str, float]:
    from benchmarks.floor import measure_floor

    small = statistics.median(measure_floor(n_small)["cpu_s"] for _ in range(repeat))
    large = statistics.median(measure_floor(n_large)["cpu_s"] for _ in range(repeat))
    return {"small_cpu_s": small, "large_cpu_s": large,
            "marginal_ms": 1000 * (large - small) / (n_large - n_small)}


def bench_against(large_config: str, earlier_plan: str, repeat: int, tmp: Path) -> dict[str, float]:
    """`stamps plan <L> --against <plan of M>`: the whole process, and the diff and its rendering alone."""
    from stamps.offline import Plan, diff_plans
    from stamps.offline.render import print_diff

    args = ["plan", "--project-dir", str(ROOT), "--config-file", large_config, "--no-tree",
            "--against", earlier_plan, "--out", str(tmp / "L-against.plan.json")]
    process = _median_row([run_cli(args, {}) for _ in range(repeat)])
    earlier, later = Plan.load(Path(earlier_plan)), Plan.load(tmp / "L-against.plan.json")
    diff_cpu = []
    for _ in range(repeat):
        c0 = time.process_time()
        diff = diff_plans(earlier, later)
        print_diff(diff, Console(file=io.StringIO(), width=160))
        diff_cpu.append(time.process_time() - c0)
    return {**process, "diff_cpu_s": statistics.median(diff_cpu), "creates": len(diff.creates)}


def _marginal(rows: dict[str, Any], variant: str, small: str, large: str) -> float | None:
    a, b = rows.get(f"{variant}|{small}"), rows.get(f"{variant}|{large}")
    if a is None or b is None or a["resources"] == b["resources"]:
        return None
    return 1000 * (b["cpu_s"] - a["cpu_s"]) / (b["resources"] - a["resources"])


def render(result: dict[str, Any], sizes: list[str], variants: list[str], console: Console) -> None:
    rows, floor = result["rows"], result.get("floor")
    small, large = sizes[0], sizes[-1]
    table = Table(title=f"stamps plan, whole process: CPU / wall seconds, median of {result['repeat']}")
    table.add_column("variant")
    for size in sizes:
        table.add_column(f"{size} ({result['resources'][size]}) CPU / wall", justify="right")
    table.add_column(f"{large} peak MiB", justify="right")
    table.add_column(f"marginal ms/res {small}→{large}", justify="right")
    table.add_column("× floor", justify="right")
    for variant in variants:
        cells = [variant]
        for size in sizes:
            row = rows.get(f"{variant}|{size}")
            cells.append(f"{row['cpu_s']:.2f} / {row['wall_s']:.2f}" if row else "-")
        big = rows.get(f"{variant}|{large}")
        cells.append(f"{big['peak_mib']:.0f}" if big else "-")
        marginal = _marginal(rows, variant, small, large)
        cells.append(f"{marginal:.2f}" if marginal is not None else "-")
        cells.append(f"{marginal / floor['marginal_ms']:.2f}" if marginal is not None and floor else "-")
        table.add_row(*cells)
    console.print(table)
    if floor:
        console.print(f"floor (plain CustomResource registrations under the same mocks, stock SDK, registration "
                      f"only): {floor['small_cpu_s']:.2f} s CPU for {result['resources'][small]}, "
                      f"{floor['large_cpu_s']:.2f} s for {result['resources'][large]}: marginal "
                      f"{floor['marginal_ms']:.2f} ms/resource")
    against = result.get("against")
    if against:
        console.print(f"--against on {large} (vs the plan of {result.get('against_base')}): whole process "
                      f"{against['cpu_s']:.2f} s CPU / {against['wall_s']:.2f} s wall; the diff and its rendering "
                      f"alone {1000 * against['diff_cpu_s']:.0f} ms CPU ({against['creates']} creates)")
    marginal = _marginal(rows, DEFAULT, small, large)
    if marginal is not None and floor:
        ratio = marginal / floor["marginal_ms"]
        verdict = "met" if ratio <= 1.5 else "NOT met"
        console.print(f"target marginal cost {small}→{large} ≤ 1.5× floor: {ratio:.2f}× — {verdict}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.plan_bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="S,M,L", help="fleets, smallest first (default S,M,L)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per measurement; the median counts (default 3)")
    parser.add_argument("--quick", action="store_true", help="only the default variant (no per-shortcut rows)")
    parser.add_argument("--no-floor", action="store_true")
    parser.add_argument("--json", help="write every measurement as JSON to this file")
    parser.add_argument("--changes", action="store_true",
                        help="also count what onboarding a tenant creates and a failover changes in prod")
    args = parser.parse_args(argv)
    sizes = args.sizes.split(",")
    if len(sizes) < 2 or args.repeat < 1:
        parser.error("--sizes needs at least two fleets and --repeat at least 1")
    variants = [DEFAULT] if args.quick else list(VARIANTS)
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        result = bench(sizes, variants, args.repeat, tmp)
        result["repeat"] = args.repeat
        small, large = sizes[0], sizes[-1]
        if not args.no_floor:
            result["floor"] = bench_floor(result["resources"][small], result["resources"][large], args.repeat)
        base = sizes[-2]
        result["against_base"] = base
        result["against"] = bench_against(result["configs"][large], result["plans"][base], args.repeat, tmp)
    console = Console(width=200)
    render(result, sizes, variants, console)
    if args.changes:
        onboard, failover = change_sizes()
        console.print(f"prod: onboarding a shared tenant creates {onboard} resources (target ≤ 2); "
                      f"a failover changes {failover} resources (target ≤ 6)")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
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
    failed_over = plan(lambda cfg: cfg["stamps:regions"][0].update({"servingFrom": "dr"}))
    return len(diff_plans(base, onboarded).creates), diff_plans(base, failed_over).changed


if __name__ == "__main__":
    sys.exit(main())
