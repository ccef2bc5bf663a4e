"""CELL subnet slots: each CELL keeps its address block for life, whatever happens to the CELL list.

A region's network is carved into /24s: the App Gateway's, the private endpoints', then one per CELL slot.
Azure refuses to re-prefix a delegated subnet in use, so a slot must never follow list order: CELLs carry an
explicit `slot` (the playbooks that add CELLs write the next free one); a CELL without one takes the lowest
free slot in list order, which is what every CELL had before slots were explicit.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

from stamps.config.model import CellConfig

RESERVED = 2  # /24s before the first CELL: the App Gateway subnet, the private endpoint subnet


def cell_slots(cells: Sequence[CellConfig]) -> dict[str, int]:
    """CELL name → slot: explicit slots as given, the others the lowest free ones in list order."""
    out = {c.name: c.slot for c in cells if c.slot is not None}
    taken = set(out.values())
    free = (n for n in range(10_000) if n not in taken)
    for c in cells:
        if c.slot is None:
            out[c.name] = next(free)
    return out


def next_free_slot(cells: Sequence[CellConfig]) -> int:
    taken = set(cell_slots(cells).values())
    return next(n for n in range(10_000) if n not in taken)


def capacity(address_space: str) -> int:
    """How many CELL slots a region's network holds."""
    return len(list(ipaddress.ip_network(address_space).subnets(new_prefix=24))) - RESERVED
