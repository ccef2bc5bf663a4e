"""What a playbook's change touches, single stack vs stack set: stacks updated and resources changed, for
onboarding a tenant, failing over one region and scaling one CELL, on fleets S (prod) and L
(`python -m benchmarks.touch_bench [--sizes S,L]`). The same offline diff the playbooks use (ops/unitapply)."""

from __future__ import annotations

import argparse
import copy
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console
from rich.table import Table

from benchmarks.fleets import ROOT, fleet_doc
from ops.unitapply import changed_stacks
from stamps.offline import diff_plans, plan_stack
from stamps.stacks.fleet import plan_fleet

Edit = Callable[[dict[str, Any]], None]


def onboard(cfg: dict[str, Any]) -> None:
    shared = next(c["name"] for c in cfg["stamps:cells"] if c.get("model") == "shared")
    cfg["stamps:tenants"].append({"id": "newco", "tier": "basic", "email": "ops@newco.example", "cell": shared})


def failover(cfg: dict[str, Any]) -> None:
    region = next(r for r in cfg["stamps:regions"] if r.get("role") == "primary")
    region["servingFrom"] = "dr"


def scale(cfg: dict[str, Any]) -> None:
    cell = cfg["stamps:cells"][0]
    cell["replicas"] = {**cell.get("replicas", {"min": 1, "max": 10}), "max": 20}


CHANGES: dict[str, Edit] = {"onboard a tenant": onboard, "fail over one region": failover, "scale one CELL": scale}


def pinned(doc: dict[str, Any], directory: Path) -> dict[str, Any]:
    """Every tenant with the CELL placement gives it, as a fleet onboarded by `stamps-ops onboard` has: unpinned
    tenants are re-placed in config order, so adding one would move others (and their data would stay behind)."""
    from stamps.stacks.fleet import load_fleet

    env = load_fleet("stamps", "prod", write(doc, directory, "unpinned"))
    for t in doc["config"]["stamps:tenants"]:
        t["cell"] = env.tenant_cells[t["id"]]
    return doc


def write(doc: dict[str, Any], directory: Path, name: str) -> Path:
    path = directory / f"Pulumi.{name}.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="S,L")
    args = parser.parse_args(argv)
    table = Table(title="what a change touches: single stack vs stack set")
    for col in ("fleet", "change", "single: resources changed of", "set: stacks updated", "set: resources changed",
                "largest updated stack"):
        table.add_column(col, justify="right" if col != "change" else "left")
    with tempfile.TemporaryDirectory() as tmp:
        for size in args.sizes.split(","):
            base = pinned(fleet_doc(size), Path(tmp))
            base_file = write(base, Path(tmp), f"{size.lower()}-base")
            single_before = plan_stack(ROOT, "prod", config_file=base_file)
            set_before = plan_fleet(ROOT, "prod", base_file)
            for label, edit in CHANGES.items():
                doc = copy.deepcopy(base)
                edit(doc["config"])
                path = write(doc, Path(tmp), f"{size.lower()}-{len(label)}")
                single = diff_plans(single_before, plan_stack(ROOT, "prod", config_file=path)).changed
                after = plan_fleet(ROOT, "prod", path)
                touched = changed_stacks(set_before, after)
                before = {p.stack: p for p in set_before}
                changed = sum(diff_plans(before[p.stack], p).changed for p in touched)
                largest = max((len(p.custom()) for p in touched), default=0)
                table.add_row(size, label, f"{single} of {len(single_before.custom())}",
                              f"{len(touched)} of {len(after)}", str(changed), str(largest))
    Console().print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
