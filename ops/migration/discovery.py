"""Find the tenant's tables by reflection, order them by foreign keys and prepare the target schema.

Scope rules (decided here, relied on everywhere else):

* **tenant tables** have the tenant column; only rows with ``tenant_column = tenant_id`` move.
* a **registry table** (e.g. ``tenants``) lacks the tenant column but is what the tenant column
  points at (an FK whose only column is the tenant column, into a single-column primary key):
  only the tenant's own row moves (``pk = tenant_id``). It is not purged: the control plane may
  still need the shared cell's registry row.
* **reference tables** lack the tenant column but are referenced (directly or transitively) by a
  tenant table, e.g. ``plans`` or ``currencies``. The dedicated database needs them for its
  foreign keys, so they are mirrored *whole*; they are verified whole and never purged, because
  other tenants still use them in the shared database. Mirroring a table whole copies whatever
  other tenants put in it (a ``staff`` table with everyone's e-mails), so it happens only for the
  tables the operator declares shared reference data (``shared_tables``, the playbook's
  ``--shared-table``); any other referenced table without the tenant column is refused.
* a table **without** the tenant column that *references* an in-scope table (e.g. ``order_lines``
  keyed only by ``order_id``) holds tenant data we cannot select by tenant: discovery refuses
  (``DiscoveryError``) rather than silently leave those rows behind; list it in ``exclude`` to
  accept that explicitly.
* every in-scope table needs a primary key (keyset pagination and idempotency are keyed on it);
  foreign-key cycles, self-references included, are refused because no insert order satisfies them.
"""

from __future__ import annotations

import contextlib
import graphlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.sql.sqltypes import _Binary  # base of BINARY, VARBINARY, LargeBinary, BYTEA

from ops.migration.errors import DiscoveryError, SchemaMismatchError

TableKind = Literal["tenant", "registry", "reference"]


@dataclass(frozen=True, eq=False)
class TablePlan:
    """One table to migrate: reflected source Table plus the facts the engine keys on."""

    table: sa.Table
    kind: TableKind
    scope_column: str | None  # rows with scope_column = tenant_id move; None = the whole table
    pk: tuple[str, ...]
    columns: tuple[str, ...]
    depends_on: tuple[str, ...]

    @property
    def name(self) -> str:
        return self.table.name

    @property
    def fullname(self) -> str:
        return self.table.fullname

    def describe(self) -> dict[str, object]:
        return {
            "name": self.fullname,
            "kind": self.kind,
            "scope_column": self.scope_column,
            "pk": list(self.pk),
            "columns": list(self.columns),
            "depends_on": list(self.depends_on),
        }


@dataclass(frozen=True, eq=False)
class MigrationPlan:
    """Tables in insert order (parents first); ``reversed(plan.tables)`` is the delete order."""

    tenant_column: str
    schema: str | None
    tables: tuple[TablePlan, ...]
    metadata: sa.MetaData = field(repr=False)

    def table(self, name: str) -> TablePlan:
        for tp in self.tables:
            if name in (tp.name, tp.fullname):
                return tp
        raise KeyError(name)

    @property
    def tenant_tables(self) -> tuple[TablePlan, ...]:
        return tuple(tp for tp in self.tables if tp.kind == "tenant")

    def describe(self) -> list[dict[str, object]]:
        return [tp.describe() for tp in self.tables]


def _referenced(table: sa.Table) -> set[sa.Table]:
    return {fk.column.table for fk in table.foreign_keys}


def discover(
    source: Engine,
    *,
    tenant_column: str = "tenant_id",
    schema: str | None = None,
    exclude: Iterable[str] = (),
    shared_tables: Iterable[str] = (),
) -> MigrationPlan:
    """Reflect ``source`` and build the migration plan; raises DiscoveryError on unsafe schemas."""
    excluded = set(exclude)
    shared = set(shared_tables)
    md = sa.MetaData(schema=schema)
    md.reflect(bind=source, resolve_fks=True)
    all_tables = [t for t in md.tables.values() if t.name not in excluded and t.fullname not in excluded]

    tenant = {t for t in all_tables if tenant_column in t.c}
    if not tenant:
        raise DiscoveryError(f"no table has a {tenant_column!r} column in schema {schema or '(default)'}")

    # Close over foreign keys: whatever a tenant row (or a reference row) points at must exist in the
    # target, so referenced tables without the tenant column join the plan as reference tables.
    registry = {
        fk.column.table
        for t in tenant
        for fk in t.foreign_keys
        if fk.parent.name == tenant_column
        and fk.column.table not in tenant
        and fk.constraint is not None and len(fk.constraint.columns) == 1
        and len(fk.column.table.primary_key.columns) == 1
    }
    reference: set[sa.Table] = set()
    frontier = list(tenant | registry)
    while frontier:
        for parent in _referenced(frontier.pop()):
            if parent in tenant or parent in reference or parent in registry:
                continue
            if parent.name in excluded or parent.fullname in excluded:
                raise DiscoveryError(f"table {parent.fullname!r} is excluded but in-scope tables reference it")
            reference.add(parent)
            frontier.append(parent)
    undeclared = sorted(t.fullname for t in reference if t.name not in shared and t.fullname not in shared)
    if undeclared:
        raise DiscoveryError(
            f"tables without a {tenant_column!r} column are referenced by the tenant's rows: "
            f"{', '.join(undeclared)}. Copying them means copying every tenant's rows of them. If a table is "
            "shared reference data (the same for every tenant, e.g. currencies), declare it with "
            f"--shared-table {undeclared[0]} (TenantDataMover(shared_tables=...)); otherwise give it the "
            f"{tenant_column!r} column"
        )
    in_scope = tenant | registry | reference
    leaks = sorted(t.fullname for t in reference if _referenced(t) & registry)
    if leaks:
        raise DiscoveryError(
            f"reference tables {', '.join(leaks)} point at the tenant registry; copying them whole "
            "would need other tenants' registry rows"
        )

    orphans = sorted(
        f"{t.fullname} → {', '.join(sorted(p.fullname for p in _referenced(t) & in_scope))}"
        for t in all_tables
        if t not in in_scope and _referenced(t) & in_scope
    )
    if orphans:
        raise DiscoveryError(
            f"tables without {tenant_column!r} reference migrated tables, so their rows could not be "
            f"selected by tenant and would be left behind: {'; '.join(orphans)} "
            "(add the tenant column, or pass them in exclude= to accept that)"
        )

    no_pk = sorted(t.fullname for t in in_scope if not t.primary_key.columns)
    if no_pk:
        raise DiscoveryError(f"tables without a primary key cannot be copied by keyset: {', '.join(no_pk)}")

    sorter: graphlib.TopologicalSorter[str] = graphlib.TopologicalSorter()
    by_name = {t.fullname: t for t in in_scope}
    for t in sorted(in_scope, key=lambda x: x.fullname):
        parents = _referenced(t)
        if t in parents:
            raise DiscoveryError(f"table {t.fullname!r} references itself; self-referencing FKs are not supported")
        sorter.add(t.fullname, *sorted(p.fullname for p in parents))
    try:
        order = list(_stable_static_order(sorter))
    except graphlib.CycleError as exc:
        raise DiscoveryError(f"foreign-key cycle between tables: {' → '.join(exc.args[1])}") from exc

    plans = []
    for name in order:
        t = by_name[name]
        plans.append(
            TablePlan(
                table=t,
                kind="tenant" if t in tenant else "registry" if t in registry else "reference",
                scope_column=(
                    tenant_column if t in tenant else t.primary_key.columns.values()[0].name if t in registry else None
                ),
                pk=tuple(c.name for c in t.primary_key.columns),
                columns=tuple(c.name for c in t.columns),
                depends_on=tuple(sorted(p.fullname for p in _referenced(t))),
            )
        )
    return MigrationPlan(tenant_column=tenant_column, schema=schema, tables=tuple(plans), metadata=md)


def _stable_static_order(sorter: graphlib.TopologicalSorter[str]) -> Iterable[str]:
    # static_order() is valid but arbitrary among ready nodes; sorting each ready group makes the
    # order (and so the journal and test expectations) deterministic run to run.
    sorter.prepare()
    while sorter.is_active():
        ready = sorted(sorter.get_ready())
        yield from ready
        sorter.done(*ready)


# --------------------------------------------------------------------------- target schema


def _affinity(t: sa.types.TypeEngine[object]) -> str:
    # Coarse families: reflection spells types differently per dialect/version (VARCHAR vs TEXT,
    # DATETIME vs TIMESTAMP), so compatibility is judged on what the values are, not the spelling.
    try:
        generic = t.as_generic()
    except NotImplementedError:
        generic = t
    for family, classes in (
        ("boolean", (sa.Boolean,)),
        ("integer", (sa.Integer,)),
        ("numeric", (sa.Numeric,)),
        ("datetime", (sa.DateTime, sa.Date, sa.Time, sa.Interval)),
        ("binary", (_Binary,)),
        ("string", (sa.String, sa.Enum)),
    ):
        if isinstance(generic, classes):
            return family
    return type(generic).__name__.lower()


def _target_column(col: sa.Column[object], same_dialect: bool) -> sa.Column[object]:
    new = col._copy()
    default = new.server_default
    if default is not None:
        text = str(getattr(default, "arg", ""))
        # A serial's default names a sequence that does not exist in the target; dropping it lets
        # the dialect emit SERIAL/IDENTITY for the autoincrement PK instead. Across dialects no
        # server default text is portable.
        if "nextval(" in text or not same_dialect:
            new.server_default = None
    if not same_dialect:
        with contextlib.suppress(NotImplementedError):  # keep the dialect type if no generic exists
            new.type = col.type.as_generic()
    return new


def ensure_target_schema(plan: MigrationPlan, target: Engine, source_dialect: str) -> list[str]:
    """Create missing plan tables in ``target`` (parents first); check existing ones are compatible.

    Returns the names of the tables created. Existing tables must have the same primary key and
    every source column with the same type family; extra target columns must be nullable or have
    a default (we never write them).
    """
    same_dialect = source_dialect == target.dialect.name
    inspector = sa.inspect(target)
    existing = set(inspector.get_table_names(schema=plan.schema))
    created: list[str] = []
    problems: list[str] = []
    new_md = sa.MetaData(schema=plan.schema)
    to_create: list[sa.Table] = []
    for tp in plan.tables:
        if tp.name in existing:
            problems.extend(_compare_existing(tp, inspector, plan.schema))
            continue
        cols = [_target_column(c, same_dialect) for c in tp.table.columns]
        extras: list[sa.schema.SchemaItem] = []
        for fk in tp.table.foreign_key_constraints:
            extras.append(
                sa.ForeignKeyConstraint(
                    [c.name for c in fk.columns],
                    [e.target_fullname for e in fk.elements],
                    name=fk.name,
                    ondelete=fk.ondelete,
                    onupdate=fk.onupdate,
                )
            )
        for uc in tp.table.constraints:
            if isinstance(uc, sa.UniqueConstraint):
                extras.append(sa.UniqueConstraint(*[c.name for c in uc.columns], name=uc.name))
        for ix in tp.table.indexes:
            if all(isinstance(e, sa.Column) for e in ix.expressions):
                extras.append(sa.Index(ix.name, *[c.name for c in ix.columns], unique=ix.unique))
        # Reference targets of FKs that are not being created now must still resolve in metadata.
        to_create.append(sa.Table(tp.name, new_md, *cols, *extras))
    if problems:
        raise SchemaMismatchError("target schema is incompatible: " + "; ".join(problems))
    for t in to_create:
        for fkey in t.foreign_keys:
            ref = fkey.target_fullname.rsplit(".", 1)[0]
            if ref not in new_md.tables:
                sa.Table(ref.rsplit(".", 1)[-1], new_md, autoload_with=target)
    if to_create:
        new_md.create_all(target, tables=to_create)
        created = [t.name for t in to_create]
    return created


def _compare_existing(tp: TablePlan, inspector: sa.Inspector, schema: str | None) -> list[str]:
    problems: list[str] = []
    cols = {c["name"]: c for c in inspector.get_columns(tp.name, schema=schema)}
    pk = tuple(inspector.get_pk_constraint(tp.name, schema=schema).get("constrained_columns") or ())
    if pk != tp.pk:
        problems.append(f"{tp.fullname}: primary key {list(pk)} in target, {list(tp.pk)} in source")
    for col in tp.table.columns:
        tcol = cols.get(col.name)
        if tcol is None:
            problems.append(f"{tp.fullname}.{col.name}: missing in target")
        elif _affinity(tcol["type"]) != _affinity(col.type):
            problems.append(f"{tp.fullname}.{col.name}: {tcol['type']} in target vs {col.type} in source")
    for name, tcol in cols.items():
        if name not in tp.table.c and not tcol.get("nullable", True) and tcol.get("default") is None:
            problems.append(f"{tp.fullname}.{name}: NOT NULL target-only column without a default")
    return problems
