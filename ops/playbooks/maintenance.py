"""Routine maintenance (runbook: "Maintenance Procedures" → weekly and monthly tasks) as read-only checks.

Every check reads Azure Resource Manager (ops.arm: DefaultAzureCredential, retried 429/5xx) for the
resources this stack declares (names from the stack config's naming, ids from the stack outputs) and
reports ok / warn / fail / error with its findings. Nothing is changed, so `--dry-run` behaves the same.

weekly
  resource-health   provisioningState of every resource in the stack's resource groups (the runbook's
                    `az resource list --query "[?provisioningState!='Succeeded']"`): Failed/Canceled fail,
                    other non-Succeeded states (an update in flight) warn; a missing group fails
  cost              Cost Management query, actual cost per resource group for the last 7 days against the
                    7 before (the runbook's cost report); a week-over-week rise above 25% warns
  security          Defender for Cloud assessments of the stack's resources (the runbook's unhealthy
                    `az security assessment list`): High severity fails, Medium/Low warn
  backups           each primary CELL database: Online, an earliest restore point exists, short-term
                    retention at least 7 days, geo-redundant backup storage as declared. (The runbook's
                    Recovery Services jobs do not apply: Azure SQL's automated backups are this stack's
                    backups.)
  certificates      the App Gateway listener certificate (`stamps:tls.certificateName`) in every regional
                    Key Vault: fails when missing, disabled or expiring within 30 days (the runbook's window)
monthly
  performance-baseline  metric definitions of the Traffic Manager profile (the runbook's
                    `az monitor metrics list-definitions`); fails if the endpoint-state metric that failover
                    and dr-drill depend on is gone
  access-review     role assignments at subscription scope with role names (the runbook's access report);
                    Owner / User Access Administrator / RBAC Administrator held directly by a user fails,
                    Contributor held directly by a user warns (grant through groups / PIM instead)
  dr-readiness      every CELL has a standby (warn if not), the standby is deployed, its geo-secondary link
                    reports CATCH_UP, and the DR region's Traffic Manager endpoint is enabled and probing
  dr-test           not run automatically: it moves production traffic; run `stamps-ops dr-drill`

Certificate expiry, decided: Key Vault certificates live in the data plane, which would need a second
token audience (https://vault.azure.net) and network access to every vault (private endpoints). A Key Vault
certificate is backed by a secret of the same name whose expiry equals the certificate's, and ARM exposes
that secret's metadata — attributes.exp, never its value — at Microsoft.KeyVault/vaults/secrets. So the
check stays on ARM, with the same credential and retry policy, and needs only ARM read access.

Output: a rich summary table and the findings on screen; `--out FILE` writes the JSON report atomically.
Exit 0 when no check fails (ok, warn or skipped), 1 when any check fails or could not read Azure.
"""

from __future__ import annotations

import argparse
import datetime as dt
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from rich.markup import escape
from rich.table import Table

from ops.arm import API_VERSIONS as API
from ops.arm import ArmReadError, subscription_of
from ops.azure_monitor import TM_ENDPOINT_STATE, AzureReadError
from ops.playbooks.base import EXIT_FAILED, EXIT_OK, Context, Failed, PlaybookError
from ops.reports import STATUS_STYLE, iso, worst
from stamps.atomicfile import PRIVATE, write_json_atomic
from stamps.environment import Environment

CERT_WARNING_DAYS: Final = 30  # the runbook's `+30 days`
MIN_RETENTION_DAYS: Final = 7
COST_RISE_WARN: Final = 0.25
PRIVILEGED_ROLES: Final = {  # built-in role definition GUIDs (same in every tenant)
    "8e3af657-a8ff-443c-a75c-2fe8c4bcb635": "Owner",
    "18d7d88d-d35e-4fb5-a5c3-7773c20a72d9": "User Access Administrator",
    "f58310d9-a9f6-439a-9e8d-f62e7b41a168": "Role Based Access Control Administrator",
}
CONTRIBUTOR: Final = "b24988ac-6180-42a0-ab88-20f7382dd24c"
HEALTHY_LINK_STATES: Final = {"CATCH_UP", "CATCHUP"}
PROBING_OK: Final = {"Online", "CheckingEndpoint"}


@dataclass
class Check:
    id: str
    title: str
    status: str = "ok"
    summary: str = ""
    findings: list[dict[str, Any]] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)

    def find(self, status: str, subject: str, detail: str, **extra: Any) -> None:
        self.findings.append({"status": status, "subject": subject, "detail": detail, **extra})

    def settle(self, summary: str) -> None:
        self.summary = summary
        self.status = worst([self.status, *(f["status"] for f in self.findings)])

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "title": self.title, "status": self.status, "summary": self.summary,
                "findings": self.findings, "data": self.data}


@dataclass
class Scope:
    """What every check reads: the environment, stack outputs, subscription, ARM reader, clock."""

    env: Environment
    outputs: dict[str, Any]
    subscription: str
    arm: Any
    now: dt.datetime

    def resource_groups(self) -> list[str]:
        n = self.env.naming
        groups = [n.global_group(), *(n.region_group(r) for r in self.env.deployed_regions),
                  *(n.cell_group(i.key) for i in self.env.instances)]
        return list(dict.fromkeys(groups))

    def rg_path(self, group: str) -> str:
        return f"/subscriptions/{self.subscription}/resourceGroups/{group}"

    def cell_ids(self, role: str) -> dict[str, dict[str, Any]]:
        cells = self.outputs.get("cells") or {}
        return {k: v for k, v in cells.items() if isinstance(v, dict) and v.get("role") == role}


# ------------------------------------------------------------------------------------------ weekly


def check_resource_health(s: Scope, c: Check) -> None:
    total = 0
    for group in s.resource_groups():
        try:
            items = s.arm.list(f"{s.rg_path(group)}/resources", API["resources"],
                               params={"$expand": "provisioningState"})
        except ArmReadError as err:
            if err.not_found:
                c.find("fail", group, "resource group does not exist")
                continue
            raise
        total += len(items)
        for item in items:
            state = str(item.get("provisioningState") or "Unknown")
            if state != "Succeeded":
                status = "fail" if state in ("Failed", "Canceled") else "warn"
                c.find(status, str(item.get("name")), f"{item.get('type')}: provisioningState {state}",
                       id=item.get("id"), state=state)
    c.data = {"resourceGroups": s.resource_groups(), "resources": total}
    bad = len(c.findings)
    c.settle(f"{total} resources in {len(s.resource_groups())} groups; {bad} not Succeeded")


def check_cost(s: Scope, c: Check) -> None:
    today = s.now.astimezone(dt.UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    start, split = today - dt.timedelta(days=14), today - dt.timedelta(days=7)
    groups = s.resource_groups()
    body = {
        "type": "ActualCost",
        "timeframe": "Custom",
        "timePeriod": {"from": iso(start), "to": iso(today - dt.timedelta(seconds=1))},
        "dataset": {
            "granularity": "Daily",
            "aggregation": {"totalCost": {"name": "Cost", "function": "Sum"}},
            "grouping": [{"type": "Dimension", "name": "ResourceGroupName"}],
            "filter": {"dimensions": {"name": "ResourceGroupName", "operator": "In", "values": groups}},
        },
    }
    pages = s.arm.query(f"/subscriptions/{s.subscription}/providers/Microsoft.CostManagement/query",
                        API["costManagement"], body)
    current: defaultdict[str, float] = defaultdict(float)  # currency amounts, not counts
    previous: defaultdict[str, float] = defaultdict(float)
    currencies: set[str] = set()
    for page in pages:
        names = [str(col.get("name", "")).lower() for col in page.get("columns") or []]
        cost_i = next((names.index(n) for n in ("cost", "totalcost", "pretaxcost", "costusd") if n in names), None)
        rg_i = next((names.index(n) for n in ("resourcegroupname", "resourcegroup") if n in names), None)
        date_i = names.index("usagedate") if "usagedate" in names else None
        cur_i = names.index("currency") if "currency" in names else None
        if cost_i is None or rg_i is None or date_i is None:
            raise ArmReadError(f"cost query answered unexpected columns {names}", resource_id=s.subscription)
        for row in page.get("rows") or []:
            day = dt.datetime.strptime(str(int(row[date_i])), "%Y%m%d").replace(tzinfo=dt.UTC)
            bucket = current if day >= split else previous
            bucket[str(row[rg_i]).lower()] += float(row[cost_i] or 0)
            if cur_i is not None and row[cur_i]:
                currencies.add(str(row[cur_i]))
    currency = "/".join(sorted(currencies)) or "?"
    per_group = {g: {"last7Days": round(current[g.lower()], 2), "previous7Days": round(previous[g.lower()], 2)}
                 for g in groups}
    now_total, before_total = sum(current.values()), sum(previous.values())
    c.data = {"currency": currency, "from": iso(start), "to": iso(today), "resourceGroups": per_group,
              "last7Days": round(now_total, 2), "previous7Days": round(before_total, 2)}
    if before_total > 0 and now_total > before_total * (1 + COST_RISE_WARN):
        rise = now_total / before_total - 1
        c.find("warn", "stack", f"cost rose {rise:.0%} week over week ({before_total:.2f} → {now_total:.2f} "
                                f"{currency})")
        for g, v in per_group.items():
            if v["previous7Days"] > 0 and v["last7Days"] > v["previous7Days"] * (1 + COST_RISE_WARN):
                c.find("warn", g, f"{v['previous7Days']:.2f} → {v['last7Days']:.2f} {currency}")
    c.settle(f"{now_total:.2f} {currency} in the last 7 days ({before_total:.2f} the 7 before)")


def check_security(s: Scope, c: Check) -> None:
    prefixes = [s.rg_path(g).lower() + "/" for g in s.resource_groups()]
    items = s.arm.list(f"/subscriptions/{s.subscription}/providers/Microsoft.Security/assessments",
                       API["security"], params={"$expand": "metadata"})
    ours = 0
    for item in items:
        props = item.get("properties") or {}
        details = props.get("resourceDetails") or {}
        target = str(details.get("Id") or details.get("id") or "").lower()
        if not any(target.startswith(p) for p in prefixes):
            continue
        ours += 1
        if ((props.get("status") or {}).get("code")) != "Unhealthy":
            continue
        severity = str((props.get("metadata") or {}).get("severity") or "Unknown")
        c.find("fail" if severity == "High" else "warn", target.rsplit("/", 1)[-1],
               f"{props.get('displayName', item.get('name'))} ({severity})", resource=target, severity=severity)
    c.data = {"assessments": ours}
    c.settle(f"{ours} assessment(s) of the stack's resources; {len(c.findings)} unhealthy")


def check_backups(s: Scope, c: Check) -> None:
    rows = []
    for key, ids in sorted(s.cell_ids("primary").items()):
        db = str(ids.get("databaseId") or "")
        if not db:
            c.find("fail", key, "no databaseId stack output")
            continue
        try:
            props = s.arm.get(db, API["sql"]).get("properties") or {}
            policy = s.arm.get(f"{db}/backupShortTermRetentionPolicies/default", API["sql"]).get("properties") or {}
        except ArmReadError as err:
            if err.not_found:
                c.find("fail", key, "database not found")
                continue
            raise
        earliest, days = props.get("earliestRestoreDate"), policy.get("retentionDays")
        redundancy = props.get("currentBackupStorageRedundancy")
        rows.append({"cell": key, "status": props.get("status"), "earliestRestoreDate": earliest,
                     "retentionDays": days, "backupStorageRedundancy": redundancy})
        if props.get("status") != "Online":
            c.find("fail", key, f"database status {props.get('status')}")
        if not earliest:
            c.find("fail", key, "no restore point yet (earliestRestoreDate missing)")
        if not isinstance(days, int) or days < MIN_RETENTION_DAYS:
            c.find("fail", key, f"short-term retention {days} days (< {MIN_RETENTION_DAYS})")
        if redundancy and redundancy != "Geo":
            c.find("warn", key, f"backup storage is {redundancy}, the stack requests Geo")
    c.data = {"databases": rows}
    c.settle(f"{len(rows)} primary CELL databases checked")


def check_certificates(s: Scope, c: Check) -> None:
    n, name = s.env.naming, s.env.config.tls.certificate_name
    rows = []
    for region in s.env.deployed_regions:
        vault = n.key_vault(region)
        path = f"{s.rg_path(n.region_group(region))}/providers/Microsoft.KeyVault/vaults/{vault}/secrets/{name}"
        subject = f"{vault}/{name}"
        try:
            attrs = (s.arm.get(path, API["keyVault"]).get("properties") or {}).get("attributes") or {}
        except ArmReadError as err:
            if err.not_found:
                c.find("fail", subject, "certificate not found in the vault (the App Gateway listener needs it)")
                continue
            raise
        exp = attrs.get("exp")
        expires = dt.datetime.fromtimestamp(int(exp), dt.UTC) if exp is not None else None
        days = (expires - s.now).days if expires else None
        rows.append({"vault": vault, "certificate": name, "expires": iso(expires) if expires else None,
                     "daysLeft": days, "enabled": attrs.get("enabled", True)})
        if attrs.get("enabled") is False:
            c.find("fail", subject, "certificate is disabled")
        if expires is None:
            c.find("warn", subject, "no expiry date recorded")
        elif expires <= s.now:
            c.find("fail", subject, f"EXPIRED on {iso(expires)}")
        elif expires - s.now <= dt.timedelta(days=CERT_WARNING_DAYS):
            c.find("fail", subject, f"expires in {days} days ({iso(expires)}); renew it")
    c.data = {"certificates": rows}
    c.settle(", ".join(f"{r['vault']}: {r['daysLeft']} days" for r in rows) or "no certificate found")


# ------------------------------------------------------------------------------------------ monthly


def traffic_manager_profiles(outputs: dict[str, Any]) -> dict[str, str]:
    """Primary region → its Traffic Manager profile id, from the stack outputs."""
    return {str(k): str(v) for k, v in (outputs.get("trafficManagerProfiles") or {}).items() if v}


def check_performance_baseline(s: Scope, c: Check) -> None:
    metrics: list[dict[str, Any]] = []
    for tm in traffic_manager_profiles(s.outputs).values():
        items = s.arm.list(f"{tm}/providers/Microsoft.Insights/metricDefinitions", API["insights"])
        found = [{"resource": tm, "metric": (i.get("name") or {}).get("value"), "unit": i.get("unit"),
                  "aggregation": i.get("primaryAggregationType")} for i in items]
        metrics += found
        if TM_ENDPOINT_STATE not in {m["metric"] for m in found}:
            c.find("fail", tm.rsplit("/", 1)[-1], f"metric {TM_ENDPOINT_STATE} is not defined: failover and "
                                                   "dr-drill read endpoint health from it")
    c.data = {"metrics": metrics}
    c.settle(f"{len(metrics)} metrics: " + ", ".join(sorted({str(m["metric"]) for m in metrics})))


def check_access_review(s: Scope, c: Check) -> None:
    scope = f"/subscriptions/{s.subscription}"
    definitions = s.arm.list(f"{scope}/providers/Microsoft.Authorization/roleDefinitions", API["authorization"])
    names = {str(d.get("name", "")).lower(): (d.get("properties") or {}).get("roleName") for d in definitions}
    assignments = s.arm.list(f"{scope}/providers/Microsoft.Authorization/roleAssignments", API["authorization"],
                             params={"$filter": "atScope()"})
    rows = []
    for a in assignments:
        props = a.get("properties") or {}
        guid = str(props.get("roleDefinitionId", "")).rsplit("/", 1)[-1].lower()
        role = names.get(guid) or PRIVILEGED_ROLES.get(guid) or guid
        row = {"principalId": props.get("principalId"), "principalType": props.get("principalType"),
               "role": role, "scope": props.get("scope")}
        rows.append(row)
        direct_user = props.get("principalType") == "User"
        at_sub = str(props.get("scope", "")).rstrip("/").lower() == scope.lower()
        if direct_user and at_sub and guid in PRIVILEGED_ROLES:
            c.find("fail", str(props.get("principalId")), f"{role} at subscription scope held directly by a user; "
                                                            "grant it to a group (PIM) instead", **row)
        elif direct_user and at_sub and guid == CONTRIBUTOR:
            c.find("warn", str(props.get("principalId")), f"{role} at subscription scope held directly by a user",
                   **row)
    c.data = {"assignments": rows}
    c.settle(f"{len(rows)} role assignments at or above the subscription")


def check_dr_readiness(s: Scope, c: Check) -> None:
    env = s.env
    cells = s.outputs.get("cells") or {}
    rows = []
    for cell in env.cells:
        primary = env.instance(cell.name, "primary")
        if cell.standby is None:
            c.find("warn", cell.name, "no standby CELL: this CELL has no DR copy")
            continue
        standby = env.instance(cell.name, "standby")
        p_ids, s_ids = cells.get(primary.key) or {}, cells.get(standby.key) or {}
        if not s_ids.get("databaseId"):
            c.find("fail", standby.key, "standby CELL is not deployed (no stack output)")
            continue
        if not p_ids.get("databaseId"):
            c.find("fail", primary.key, "primary CELL is not deployed (no stack output)")
            continue
        links = s.arm.list(f"{p_ids['databaseId']}/replicationLinks", API["sql"])
        partner_server = str(s_ids["databaseId"]).split("/servers/")[1].split("/")[0].lower()
        link = next((ln.get("properties") or {} for ln in links
                     if str((ln.get("properties") or {}).get("partnerServer", "")).lower() == partner_server), None)
        if link is None:
            c.find("fail", cell.name, f"no geo-replication link from {primary.key} to {standby.key}")
            continue
        state, role = str(link.get("replicationState") or "?"), str(link.get("role") or "?")
        rows.append({"cell": cell.name, "primary": primary.key, "standby": standby.key, "replicationState": state,
                     "role": role, "partnerLocation": link.get("partnerLocation")})
        if state in HEALTHY_LINK_STATES and role == "Primary":
            continue
        if state in HEALTHY_LINK_STATES:
            c.find("warn", cell.name, f"{primary.key} is the geo-{role.lower()}: roles differ from the stack "
                                      "(failed over outside it?)")
        elif state in ("SEEDING", "PENDING"):
            c.find("warn", cell.name, f"geo-secondary {standby.key} still {state.lower()}")
        else:
            c.find("fail", cell.name, f"geo-replication to {standby.key} is {state}")
    for primary_name, tm in traffic_manager_profiles(s.outputs).items():  # a region name, not a CELL instance
        region = env.regions[primary_name].dr_region if primary_name in env.regions else None
        if not region or not any(i.cell.region == primary_name and i.role == "standby" for i in env.instances):
            continue
        endpoints = {str(e.get("name")): e.get("properties") or {}
                     for e in (s.arm.get(tm, API["trafficManager"]).get("properties") or {}).get("endpoints") or []}
        ep = endpoints.get(f"endpoint-{region}")
        if ep is None:
            c.find("fail", f"endpoint-{region}", f"{primary_name}'s profile has no endpoint in its DR region")
        elif ep.get("endpointStatus") != "Enabled":
            c.find("fail", f"endpoint-{region}", f"{primary_name}'s DR endpoint is {ep.get('endpointStatus')}")
        elif ep.get("endpointMonitorStatus") not in PROBING_OK:
            c.find("fail", f"endpoint-{region}", f"DR endpoint probes {ep.get('endpointMonitorStatus')}")
    c.data = {"geoReplication": rows}
    c.settle(f"{len(rows)} geo-secondaries checked; {len(c.findings)} findings")


def check_dr_test(s: Scope, c: Check) -> None:
    c.status = "skipped"
    c.settle("not run automatically (it moves production traffic): schedule `stamps-ops dr-drill` in a change "
             "window")


CheckFn = Callable[[Scope, Check], None]
CHECKS: Final[dict[str, tuple[tuple[str, str, CheckFn], ...]]] = {
    "weekly": (
        ("resource-health", "Resource health (provisioningState)", check_resource_health),
        ("cost", "Cost (last 7 days vs the 7 before)", check_cost),
        ("security", "Security assessments (Defender for Cloud)", check_security),
        ("backups", "Backups (SQL automated backups)", check_backups),
        ("certificates", f"Certificates (expiring within {CERT_WARNING_DAYS} days)", check_certificates),
    ),
    "monthly": (
        ("performance-baseline", "Performance baseline (Traffic Manager metric definitions)",
         check_performance_baseline),
        ("access-review", "Access review (role assignments at subscription scope)", check_access_review),
        ("dr-readiness", "DR readiness (standbys, geo-secondaries, DR endpoint)", check_dr_readiness),
        ("dr-test", "Disaster recovery test", check_dr_test),
    ),
}


# ------------------------------------------------------------------------------------------ running


def _run_check(check_id: str, title: str, fn: CheckFn, scope: Scope) -> Check:
    c = Check(check_id, title)
    try:
        fn(scope, c)
    except AzureReadError as err:  # includes ArmReadError: this check could not read Azure; the others go on
        c.find("error", "azure", str(err))
        before = len(c.findings) - 1
        c.settle("could not read Azure" + (f" ({before} findings before the failure)" if before else ""))
    return c


def show(ctx: Context, kind: str, checks: Sequence[Check], overall: str) -> None:
    table = Table(title=f"{kind} maintenance of stack {ctx.stack}: {overall.upper()}")
    for col in ("check", "status", "summary"):
        table.add_column(col, overflow="fold")
    for c in checks:
        table.add_row(c.title, f"[{STATUS_STYLE[c.status]}]{c.status}[/]", escape(c.summary))
    ctx.console.print(table)
    for c in checks:
        for f in c.findings:
            ctx.console.print(f"  [{STATUS_STYLE[f['status']]}]{f['status']:>5}[/] {c.id}: "
                              f"{escape(str(f['subject']))} — {escape(str(f['detail']))}", soft_wrap=True)


def run(ctx: Context, args: argparse.Namespace) -> int:
    env = ctx.environment()
    outputs = ctx.outputs()
    profiles = traffic_manager_profiles(outputs)
    if not profiles:
        raise Failed("the stack has no trafficManagerProfiles output: deploy it before maintenance checks")
    try:
        subscription = subscription_of(next(iter(profiles.values())))
    except ValueError as err:
        raise Failed(f"stack output trafficManagerProfiles: {err}") from None
    out = Path(args.out).resolve() if args.out else None
    if out is not None and out.is_dir():
        raise PlaybookError(f"--out: {out} is a directory; name a file such as report.json")
    now = ctx.now()
    arm = ctx.arm()
    try:
        scope = Scope(env, outputs, subscription, arm, now)
        checks = [_run_check(cid, title, fn, scope) for cid, title, fn in CHECKS[args.kind]]
    finally:
        close = getattr(arm, "close", None)
        if callable(close):
            close()
    overall = worst([c.status for c in checks])
    show(ctx, args.kind, checks, overall)
    report = {
        "report": "maintenance", "kind": args.kind, "stack": ctx.stack, "generatedAt": iso(now),
        "actor": ctx.actor, "subscription": subscription, "status": overall,
        "counts": dict(Counter(c.status for c in checks)), "checks": [c.to_dict() for c in checks],
    }
    if out is not None:
        write_json_atomic(out, report, mode=PRIVATE)
        ctx.console.print(f"report written to {escape(str(out))}")
    return EXIT_FAILED if overall in ("fail", "error") else EXIT_OK


def register(sub: argparse._SubParsersAction, common: Any) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("maintenance", help="the runbook's weekly/monthly maintenance checks (read-only report)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("kind", choices=tuple(CHECKS), help="which task list to run")
    p.add_argument("--out", metavar="FILE", help="also write the report as JSON (atomically)")
    common(p)
    p.set_defaults(func=run, lock_stack=False)  # read-only: never needs to hold the stack lock
