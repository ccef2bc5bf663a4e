"""Tenant onboarding (runbook: "Tenant Onboarding Automation", "Shared/Dedicated CELL Tenant Deployment").

Shared tiers land on the least-loaded shared CELL of the region that has room and covers the tenant's
compliance needs; the enterprise tier gets a dedicated CELL of its own. The change is one tenant entry
(plus the dedicated CELL's entry), which the program turns into an API Management user and subscription.
"""

from __future__ import annotations

import argparse
from typing import Any

from pydantic import ValidationError

from ops.playbooks.base import EXIT_OK, Context, PlaybookError, Refused, audit, find_cell
from ops.tenant_directory import tenant_record
from stamps.config.model import TenantConfig
from stamps.placement import PlacementError, default_region, placement_for


def run(ctx: Context, args: argparse.Namespace) -> int:
    env = ctx.environment()
    cfg = env.config
    tiers = {t.name: t for t in cfg.tiers}
    if args.tier not in tiers:
        raise PlaybookError(f"--tier: unknown tier {args.tier!r}; valid: {', '.join(sorted(tiers))}")
    try:
        tenant = TenantConfig(id=args.tenant, tier=args.tier, email=args.email, region=args.region,
                              compliance=args.compliance or [], cell=args.cell)
    except ValidationError as err:
        first = err.errors(include_url=False)[0]
        where = {"id": "TENANT", "email": "--email", "region": "--region", "compliance": "--compliance",
                 "cell": "--cell"}.get(str(first["loc"][0]), str(first["loc"][0]))
        raise PlaybookError(f"{where}: {first['msg'].removeprefix('Value error, ')}") from None

    # Preflight: the directory the record goes to is found before anything changes (a stack deployed without
    # one is an error now, not after the update).
    directory = ctx.tenant_directory()
    existing = next((t for t in cfg.tenants if t.id == tenant.id), None)
    if existing is not None:
        if existing.tier == tenant.tier and existing.email == tenant.email:
            cell_name = env.tenant_cells[tenant.id]
            model = next(c.model for c in env.cells if c.name == cell_name)
            # Judged against the deployed stack when a CLI is there: a file edit that never got deployed is
            # deployed now, and the directory record follows it. A run that failed after its update (writing
            # the record) left the record missing: the re-run writes it.
            deployed = ctx.already_done(f"tenant {tenant.id!r} is already onboarded on CELL {cell_name!r}")
            recorded = (directory.get(tenant.id) or {}).get("cellName") == cell_name
            if deployed is not None or not recorded:
                if not recorded:
                    ctx.console.print(f"[yellow]![/] the tenant directory has no record of {tenant.id!r} on CELL "
                                      f"{cell_name!r}: recording it")
                directory.upsert(tenant_record(tenant.id, cell_name, model, tenant.region or default_region(cfg),
                                               ctx.now()))
                audit(ctx, "onboard", "onboarded", tenant=tenant.id, tier=tenant.tier, cell=cell_name)
            return EXIT_OK
        raise Refused(f"TENANT: {tenant.id!r} already exists as tier {existing.tier!r}; "
                      "use `stamps-ops migrate` to move a tenant, not onboard")

    model = tiers[tenant.tier].model
    region = tenant.region or default_region(cfg)
    if tenant.cell is not None:
        find_cell(env, tenant.cell, "--cell")
    # The same placement the program runs, on the config with this tenant added.
    trial = cfg.model_copy(update={"tenants": [*cfg.tenants, tenant]})
    try:
        placed = placement_for(trial, tenant.id)
    except PlacementError as err:
        raise Refused(str(err).replace(f"stamps:tenants[{len(cfg.tenants)}]", "TENANT")) from None
    cell_name = placed.cell
    new_cell: dict[str, Any] | None = None
    if placed.new_cell is not None:
        new_cell = placed.new_cell.model_dump(by_alias=True, exclude_defaults=True, mode="json")
        new_cell.update({"name": placed.new_cell.name, "region": placed.new_cell.region, "model": "dedicated"})

    entry: dict[str, Any] = {"id": tenant.id, "tier": tenant.tier, "cell": cell_name, "email": tenant.email}
    if tenant.compliance:
        entry["compliance"] = list(tenant.compliance)

    def edit(stack: Any) -> None:
        if new_cell is not None:
            stack.append("stamps:cells", new_cell)
        stack.append("stamps:tenants", entry)

    where = f"new dedicated CELL {cell_name!r}" if new_cell else f"{model} CELL {cell_name!r}"
    result = ctx.apply(f"onboard {tenant.id} ({tenant.tier}) on {where}", edit)
    if result is not None:
        # Runbook step 3: the tenant directory in Cosmos DB says where the tenant lives.
        directory.upsert(tenant_record(tenant.id, cell_name, model, region, ctx.now()))
        audit(ctx, "onboard", "onboarded", tenant=tenant.id, tier=tenant.tier, cell=cell_name)
    return EXIT_OK


def register(sub: argparse._SubParsersAction, common: Any) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("onboard", help="onboard a tenant: placement, APIM user and subscription",
                       description=__doc__)
    p.add_argument("tenant", metavar="TENANT", help="tenant id (2-24 lowercase letters, digits, hyphens)")
    p.add_argument("--tier", required=True, help="tier name from stamps:tiers (basic, premium, enterprise)")
    p.add_argument("--email", required=True, help="tenant administrator's email (the APIM user)")
    p.add_argument("--region", help="primary region for placement (default: the first primary)")
    p.add_argument("--compliance", nargs="*", help="compliance needs the CELL must cover (e.g. hipaa)")
    p.add_argument("--cell", help="place on this CELL instead of letting placement choose")
    common(p)
    p.set_defaults(func=run)
