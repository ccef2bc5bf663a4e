"""Generated fleets for the speed benchmark: S is prod; M and L follow the runbook's growth matrix.

M: 3 regions, 10 CELLs, 200 tenants (the 6-month projection's shape).
L: 4 regions, 20 CELLs, 1,000 tenants (the 12-month projection).
Tenants carry no `cell:` so placement spreads them, as onboarding would.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]

# (primary, dr) pairs; a DR region may back several primaries.
LAYOUTS: dict[str, dict[str, Any]] = {
    "M": {"pairs": [("eastus", "westus"), ("centralus", "westus")], "cells": 10, "tenants": 200},
    "L": {"pairs": [("eastus", "westus"), ("westeurope", "northeurope")], "cells": 20, "tenants": 1000},
}


def prod_doc() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "Pulumi.prod.yaml").read_text())


def fleet_doc(size: str) -> dict[str, Any]:
    """The stack file of fleet `size` (S returns prod unchanged)."""
    doc = copy.deepcopy(prod_doc())
    if size == "S":
        return doc
    layout = LAYOUTS[size]
    cfg = doc["config"]
    primaries = [p for p, _ in layout["pairs"]]
    drs = sorted({d for _, d in layout["pairs"]})
    regions = [
        {"name": p, "role": "primary", "drRegion": d, "addressSpace": f"10.{10 + i}.0.0/16"}
        for i, (p, d) in enumerate(layout["pairs"])
    ] + [{"name": d, "role": "dr", "addressSpace": f"10.{100 + i}.0.0/16"} for i, d in enumerate(drs)]
    cfg["stamps:regions"] = regions
    cfg.pop("stamps:activeRegion", None)
    dr_of = dict(layout["pairs"])
    n_cells = layout["cells"]
    n_dedicated = max(1, n_cells // 5)
    shared_capacity = -(-(layout["tenants"] - n_dedicated) // (n_cells - n_dedicated)) + 5
    cells = []
    for i in range(n_cells):
        region = primaries[i % len(primaries)]
        dedicated = i < n_dedicated
        cells.append(
            {
                "name": f"{'ded' if dedicated else 'shr'}{i:02d}",
                "region": region,
                "model": "dedicated" if dedicated else "shared",
                "capacity": 1 if dedicated else shared_capacity,
                "replicas": {"min": 2, "max": 10},
                "sql": {"sku": "P1" if dedicated else "S3"},
                "standby": {"region": dr_of[region], "replicas": {"min": 1, "max": 10}},
            }
        )
    cfg["stamps:cells"] = cells
    tenants = []
    for i in range(layout["tenants"]):
        if i < n_dedicated:
            tenants.append(
                {"id": f"ent{i:04d}", "tier": "enterprise", "cell": f"ded{i:02d}", "email": f"ops@ent{i:04d}.example"}
            )
        else:
            tenants.append(
                {
                    "id": f"t{i:04d}",
                    "tier": "premium" if i % 4 == 0 else "basic",
                    "region": primaries[i % len(primaries)],
                    "email": f"admin@t{i:04d}.example",
                }
            )
    cfg["stamps:tenants"] = tenants
    return doc


def write_fleet(size: str, directory: Path) -> Path:
    path = Path(directory) / f"Pulumi.fleet-{size.lower()}.yaml"
    path.write_text(yaml.safe_dump(fleet_doc(size), sort_keys=False))
    return path
