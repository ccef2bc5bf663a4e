"""CPU cost of registering a resource under mocks: the plain-CustomResource floor vs pulumi-azure-native v3.

`measure_floor(n)` times n plain ``pulumi.CustomResource`` registrations shaped like a median v3 resource;
`measure_azure_native(n, speedup)` times n azure-native resources (a rotation over classes stamps uses) with
or without ``stamps.speedup``. Each measurement runs in a fresh interpreter: the SDK keeps process-global
state (root stack, tracked outputs, settings), and a caller that already set mocks must not be disturbed.

What is timed: process CPU time (all threads: the mock monitor answers on executor threads) from the first
constructor call to the end of ``wait_for_rpcs``, after one warm-up resource of each kind so lazy imports and
per-class type metadata are not counted. Both sides use `BenchMocks`.

``python -m benchmarks.floor [--n 200] [--per-kind]`` prints the comparison table.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypedDict

import pulumi

REPO = Path(__file__).resolve().parent.parent

# The floor's shape: 7 real inputs (an Output from another resource, a secret, a nested object, tags) plus
# None slots for outputs, 20 properties in all: the median property count of the 38 azure-native classes
# stamps uses (8 for apimanagement.Policy … 60 for sql.Database).
FLOOR_TYPE = "stamps:bench:Floor"
FLOOR_OUTPUT_SLOTS = 13

# class -> (properties the class hands to CustomResource, pulumi.Alias entries), pulumi-azure-native 3.29.
AZURE_NATIVE_KINDS: dict[str, tuple[int, int]] = {
    "sql.Server": (25, 24),
    "storage.StorageAccount": (52, 30),
    "monitor.MetricAlert": (20, 5),
    "keyvault.Vault": (9, 21),
    "cosmosdb.SqlResourceSqlContainer": (11, 64),
    "apimanagement.Product": (13, 25),
}
_FLOOR_INPUTS = 7

_TAGS = {"stamp": "weu-1", "env": "bench", "owner": "platform"}
_TENANT = "00000000-0000-0000-0000-000000000000"


class Measurement(TypedDict):
    workload: str
    n: int
    kinds: list[str]
    properties: int
    speedup_active: bool
    cpu_s: float
    wall_s: float
    ms_per_resource: float


class BenchMocks(pulumi.runtime.Mocks):
    """Echo inputs back (plus `name`), as the offline plan's mocks do; reusable by other benchmarks."""

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        return f"/subscriptions/0/resourceGroups/bench/{args.name}", {"name": args.name, **args.inputs}

    def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict[str, Any], list[tuple[str, str]] | None]:
        return {}, None


# ---------------------------------------------------------------------------------------------------------
# Worker side (runs in the child interpreter).
# ---------------------------------------------------------------------------------------------------------

Builder = Callable[[str], object]


def _floor_builder(rg: Any, output_slots: int) -> Builder:
    password = pulumi.Output.secret("bench-Passw0rd!")
    slots = {f"output{i}": None for i in range(output_slots)}

    def build(name: str) -> object:
        props: dict[str, Any] = {
            "resourceGroupName": rg.name,
            "location": "westeurope",
            "administratorLogin": "stampadmin",
            "administratorLoginPassword": password,
            "minimalTlsVersion": "1.2",
            "administrators": {"login": "dba", "sid": "0000", "tenantId": _TENANT},
            "tags": dict(_TAGS),
            **slots,
        }
        return pulumi.CustomResource(FLOOR_TYPE, name, props)

    return build


def _azure_native_builders(rg: Any) -> dict[str, Builder]:
    from pulumi_azure_native import apimanagement, cosmosdb, keyvault, monitor, sql, storage

    password = pulumi.Output.secret("bench-Passw0rd!")

    def server(name: str) -> object:
        return sql.Server(
            name,
            resource_group_name=rg.name,
            location="westeurope",
            administrator_login="stampadmin",
            administrator_login_password=password,
            minimal_tls_version="1.2",
            administrators=sql.ServerExternalAdministratorArgs(login="dba", sid="0000", tenant_id=_TENANT),
            tags=dict(_TAGS),
        )

    def account(name: str) -> object:
        return storage.StorageAccount(
            name,
            resource_group_name=rg.name,
            location="westeurope",
            kind="StorageV2",
            sku=storage.SkuArgs(name="Standard_ZRS"),
            minimum_tls_version="TLS1_2",
            allow_blob_public_access=False,
            tags=dict(_TAGS),
        )

    def alert(name: str) -> object:
        return monitor.MetricAlert(
            name,
            resource_group_name=rg.name,
            location="global",
            severity=2,
            enabled=True,
            evaluation_frequency="PT1M",
            window_size="PT5M",
            scopes=[rg.id],
            criteria=monitor.MetricAlertSingleResourceMultipleMetricCriteriaArgs(
                odata_type="Microsoft.Azure.Monitor.SingleResourceMultipleMetricCriteria",
                all_of=[
                    monitor.MetricCriteriaArgs(
                        name="cpu",
                        metric_name="cpu_percent",
                        operator="GreaterThan",
                        threshold=80,
                        time_aggregation="Average",
                        criterion_type="StaticThresholdCriterion",
                    )
                ],
            ),
        )

    def vault(name: str) -> object:
        return keyvault.Vault(
            name,
            resource_group_name=rg.name,
            location="westeurope",
            properties=keyvault.VaultPropertiesArgs(
                tenant_id=_TENANT,
                sku=keyvault.SkuArgs(family="A", name="standard"),
                enable_rbac_authorization=True,
            ),
            tags=dict(_TAGS),
        )

    def container(name: str) -> object:
        return cosmosdb.SqlResourceSqlContainer(
            name,
            resource_group_name=rg.name,
            account_name="bench-cosmos",
            database_name="tenants",
            resource=cosmosdb.SqlContainerResourceArgs(
                id=name,
                partition_key=cosmosdb.ContainerPartitionKeyArgs(paths=["/tenantId"], kind="Hash"),
            ),
        )

    def product(name: str) -> object:
        return apimanagement.Product(
            name,
            resource_group_name=rg.name,
            service_name="bench-apim",
            display_name="Gold",
            subscription_required=True,
            approval_required=False,
            state="published",
        )

    return {
        "sql.Server": server,
        "storage.StorageAccount": account,
        "monitor.MetricAlert": alert,
        "keyvault.Vault": vault,
        "cosmosdb.SqlResourceSqlContainer": container,
        "apimanagement.Product": product,
    }


def _worker(spec: dict[str, Any]) -> Measurement:
    from pulumi.runtime.stack import wait_for_rpcs
    from pulumi.runtime.sync_await import _sync_await

    from stamps import speedup

    pulumi.runtime.set_mocks(BenchMocks(), project="stamps", stack="bench", preview=False)
    active = speedup.enable() if spec["speedup"] else False
    if active != spec["speedup"]:
        raise SystemExit(f"stamps.speedup could not be enabled: {speedup.status()}")

    from pulumi_azure_native import resources

    rg = resources.ResourceGroup("bench-rg", location="westeurope", tags=dict(_TAGS))
    kinds: list[str] = list(spec["kinds"])
    if spec["workload"] == "floor":
        builders = [_floor_builder(rg, spec["output_slots"])]
        properties = _FLOOR_INPUTS + spec["output_slots"]
    else:
        available = _azure_native_builders(rg)
        builders = [available[kind] for kind in kinds]
        properties = round(sum(AZURE_NATIVE_KINDS[kind][0] for kind in kinds) / len(kinds))

    for i, build in enumerate(builders):
        build(f"warmup-{i}")
    _sync_await(wait_for_rpcs())

    n: int = spec["n"]
    wall0, cpu0 = time.perf_counter(), time.process_time()
    for i in range(n):
        builders[i % len(builders)](f"r{i}")
    _sync_await(wait_for_rpcs())
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    return Measurement(
        workload=spec["workload"],
        n=n,
        kinds=kinds,
        properties=properties,
        speedup_active=active,
        cpu_s=round(cpu, 4),
        wall_s=round(wall, 4),
        ms_per_resource=round(cpu * 1000 / n, 3),
    )


# ---------------------------------------------------------------------------------------------------------
# Caller side.
# ---------------------------------------------------------------------------------------------------------


def _run_isolated(spec: dict[str, Any]) -> Measurement:
    if spec["n"] < 1:
        raise ValueError("n must be at least 1")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    # The child decides by spec; the variable only stops an outer STAMPS_SDK_SPEEDUP=0 from overriding it.
    env["STAMPS_SDK_SPEEDUP"] = "1" if spec["speedup"] else "0"
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.floor", "--worker", json.dumps(spec)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"benchmark worker failed ({spec}):\n{proc.stderr}")
    result: Measurement = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def measure_floor(n: int, *, output_slots: int = FLOOR_OUTPUT_SLOTS) -> Measurement:
    """Time n plain CustomResource registrations (7 inputs + `output_slots` output slots) in a fresh process."""
    return _run_isolated(
        {"workload": "floor", "n": n, "speedup": False, "kinds": [FLOOR_TYPE], "output_slots": output_slots}
    )


def measure_azure_native(n: int, speedup: bool, *, kinds: Sequence[str] = tuple(AZURE_NATIVE_KINDS)) -> Measurement:
    """Time n azure-native registrations, cycling through `kinds`, stock or with stamps.speedup."""
    unknown = [kind for kind in kinds if kind not in AZURE_NATIVE_KINDS]
    if unknown or not kinds:
        raise ValueError(f"kinds must be a non-empty subset of {sorted(AZURE_NATIVE_KINDS)}: {unknown}")
    return _run_isolated({"workload": "azure-native", "n": n, "speedup": speedup, "kinds": list(kinds)})


def _table(rows: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]

    def fmt(row: list[str]) -> str:
        pairs = enumerate(zip(row, widths, strict=True))
        return "  ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in pairs)

    lines = [fmt(row) for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.floor", description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200, help="resources per measurement (default 200)")
    parser.add_argument("--per-kind", action="store_true", help="also measure each azure-native class alone")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(_worker(json.loads(args.worker))))
        return 0

    floor = measure_floor(args.n)
    stock = measure_azure_native(args.n, speedup=False)
    fast = measure_azure_native(args.n, speedup=True)
    base = floor["ms_per_resource"]
    rows = [["workload", "n", "props", "cpu s", "ms/resource", "x floor"]]
    for label, m in (
        ("plain CustomResource (floor)", floor),
        ("azure-native mix, stock", stock),
        ("azure-native mix, stamps.speedup", fast),
    ):
        rows.append(
            [
                label,
                str(m["n"]),
                str(m["properties"]),
                f"{m['cpu_s']:.2f}",
                f"{m['ms_per_resource']:.2f}",
                f"{m['ms_per_resource'] / base:.1f}",
            ]
        )
    print(_table(rows))
    print(f"\nspeedup: {stock['ms_per_resource'] / fast['ms_per_resource']:.1f}x less CPU per resource")

    if args.per_kind:
        rows = [["class", "props", "aliases", "stock ms", "speedup ms", "x floor", "matched floor ms", "x matched"]]
        for kind, (props, aliases) in AZURE_NATIVE_KINDS.items():
            k_stock = measure_azure_native(args.n, speedup=False, kinds=[kind])
            k_fast = measure_azure_native(args.n, speedup=True, kinds=[kind])
            # Same property count as the class: separates per-property cost from per-class overhead.
            matched = measure_floor(args.n, output_slots=max(props - _FLOOR_INPUTS, 0))
            rows.append(
                [
                    kind,
                    str(props),
                    str(aliases),
                    f"{k_stock['ms_per_resource']:.2f}",
                    f"{k_fast['ms_per_resource']:.2f}",
                    f"{k_fast['ms_per_resource'] / base:.1f}",
                    f"{matched['ms_per_resource']:.2f}",
                    f"{k_fast['ms_per_resource'] / matched['ms_per_resource']:.1f}",
                ]
            )
        print()
        print(_table(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
