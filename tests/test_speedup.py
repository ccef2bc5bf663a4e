"""stamps.speedup must not change a single byte the engine receives, and must stay off where unverified.

Equivalence: the same program (components, parents, explicit dependencies, secrets, nested args classes,
`aliases=`/`protect`/`depends_on`/`ignore_changes`/`custom_timeouts`, azure-native classes with 4–65 aliases)
runs once stock and once sped up, each in a fresh interpreter (the SDK's global state cannot be reset
reliably in-process), under a MockMonitor subclass that records every RegisterResourceRequest. Variants:
`set_mocks` with the mock engine's alias-spec support; the same with alias specs switched off (an engine
without them is the only path on which the deferred alias URNs are ever read); and the monitor served over
gRPC with the program run by `run_in_stack`, as the Pulumi CLI's language host runs it.
"""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pulumi
import pulumi.resource as pulumi_resource
import pytest
from pulumi.runtime import resource as runtime_resource

from stamps import speedup

REPO = Path(__file__).resolve().parent.parent

# ---------------------------------------------------------------------------------------------------------
# The scenario: runs in a child interpreter (`python tests/test_speedup.py <transport> <alias_specs> <speedup>`).
# ---------------------------------------------------------------------------------------------------------


def _scenario_program() -> list[pulumi.Resource]:
    from pulumi_azure_native import cosmosdb, keyvault, monitor, resources, sql, storage

    opts = pulumi.ResourceOptions

    class Stamp(pulumi.ComponentResource):
        def __init__(self, name: str, opts: pulumi.ResourceOptions | None = None) -> None:
            super().__init__("stamps:index:Stamp", name, None, opts)

    # A component with an alias: under an engine without alias specs every descendant inherits it.
    stamp = Stamp("stamp-weu", opts(aliases=[pulumi.Alias(name="stamp-old")]))
    rg = resources.ResourceGroup(
        "rg", location="westeurope", tags={"stamp": "weu"}, opts=opts(parent=stamp)
    )
    server = sql.Server(
        "sql",
        resource_group_name=rg.name,
        location=rg.location,
        administrator_login="stampadmin",
        administrator_login_password=pulumi.Output.secret("s3cr3t!"),
        minimal_tls_version="1.2",
        administrators=sql.ServerExternalAdministratorArgs(login="dba", sid="0000", tenant_id="t"),
        tags={"stamp": "weu"},
        opts=opts(
            parent=stamp,
            protect=True,
            depends_on=[rg],
            aliases=[
                pulumi.Alias(name="sql-old"),
                pulumi.Alias(name="sql-root", parent=pulumi.ROOT_STACK_RESOURCE),
            ],
        ),
    )
    database = sql.Database(
        "db",
        resource_group_name=rg.name,
        server_name=server.name,
        sku=sql.SkuArgs(name="S0", tier="Standard"),
        opts=opts(parent=stamp, ignore_changes=["tags"], custom_timeouts=pulumi.CustomTimeouts(create="30m")),
    )
    # A custom resource parented by a custom resource that itself has 26 aliases; the name prefix makes the
    # inherited alias names depend on the parent's alias names too. (4 own aliases keep the product small.)
    diagnostics = monitor.DiagnosticSetting(
        "sql-diagnostics",
        resource_uri=server.id,
        workspace_id="/subscriptions/0/workspaces/logs",
        logs=[monitor.DiagnosticsLogSettingsArgs(category_group="allLogs", enabled=True)],
        metrics=[monitor.DiagnosticsMetricSettingsArgs(category="AllMetrics", enabled=True)],
        opts=opts(parent=server),
    )
    account = storage.StorageAccount(
        "st",
        resource_group_name=rg.name,
        kind="StorageV2",
        sku=storage.SkuArgs(name="Standard_LRS"),
        network_rule_set=storage.NetworkRuleSetArgs(
            default_action="Deny", ip_rules=[storage.IPRuleArgs(i_p_address_or_range="203.0.113.0/24")]
        ),
        opts=opts(
            parent=stamp,
            aliases=[
                "urn:pulumi:s::p::azure-native:storage:StorageAccount::legacy",
                pulumi.Alias(name="st-under-rg", parent=rg),
                # Not a plain Alias: must take the stock eager path in both patches.
                pulumi.Output.from_input(pulumi.Alias(name="st-from-output")),
            ],
            additional_secret_outputs=["primary_endpoints"],
            delete_before_replace=True,
        ),
    )
    cosmos = cosmosdb.DatabaseAccount(
        "cosmos",
        resource_group_name=rg.name,
        database_account_offer_type="Standard",
        locations=[cosmosdb.LocationArgs(location_name="westeurope", failover_priority=0)],
        opts=opts(parent=stamp, retain_on_delete=True),
    )
    cosmos_db = cosmosdb.SqlResourceSqlDatabase(
        "tenants-db",
        resource_group_name=rg.name,
        account_name=cosmos.name,
        resource=cosmosdb.SqlDatabaseResourceArgs(id="tenants"),
        opts=opts(parent=stamp),
    )
    container = cosmosdb.SqlResourceSqlContainer(
        "tenants",
        resource_group_name=rg.name,
        account_name=cosmos.name,
        database_name=cosmos_db.name,
        resource=cosmosdb.SqlContainerResourceArgs(
            id="tenants",
            partition_key=cosmosdb.ContainerPartitionKeyArgs(paths=["/tenantId"], kind="Hash"),
        ),
        # Not parented by the 64-alias database: without alias specs that would cost 64 × 65 alias URNs.
        opts=opts(parent=stamp, depends_on=[cosmos_db], replace_on_changes=["resource"]),
    )
    alert = monitor.MetricAlert(
        "sql-cpu",
        resource_group_name=rg.name,
        location="global",
        severity=2,
        enabled=True,
        evaluation_frequency="PT1M",
        window_size="PT5M",
        scopes=[server.id],
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
        opts=opts(parent=stamp, depends_on=[account, database]),
    )
    vault = keyvault.Vault(
        "kv",
        resource_group_name=rg.name,
        properties=keyvault.VaultPropertiesArgs(
            tenant_id="00000000-0000-0000-0000-000000000000",
            sku=keyvault.SkuArgs(family="A", name="standard"),
            enable_rbac_authorization=True,
        ),
        opts=opts(parent=stamp, protect=True),
    )
    # Stack-trace edge cases: no third __init__ on the stack (the stock trace is empty), and frames whose
    # file name is not an absolute path (no source position) from code compiled under a pseudo file name.
    raw = pulumi.CustomResource("stamps:test:Raw", "raw", {"value": rg.name})
    scope: dict[str, Any] = {"storage": storage, "rg": rg, "opts": opts, "stamp": stamp}
    exec(compile(  # a frame without a real file is the point
        "built = storage.StorageAccount('st-generated', resource_group_name=rg.name, kind='StorageV2',\n"
        "    sku=storage.SkuArgs(name='Standard_LRS'), opts=opts(parent=stamp))\n",
        "<generated>", "exec"), scope)
    stamp.register_outputs({"sqlFqdn": server.fully_qualified_domain_name})
    pulumi.export("vault", vault.name)
    # What the program saw while it ran: the offline-only shortcuts must be off under a real engine.
    _OBSERVED.update(gc_enabled=gc.isenabled(),
                     stack_capture=runtime_resource._get_stack_trace is not speedup._STOCK_GET_STACK_TRACE)
    return [stamp, rg, server, database, diagnostics, account, cosmos, cosmos_db, container, alert, vault, raw,
            scope["built"]]


_OBSERVED: dict[str, bool] = {}


def _run_scenario(transport: str, alias_specs: bool, use_speedup: bool) -> None:
    """Child-process entry point: prints one JSON document with every RegisterResourceRequest.

    transport "mocks": `pulumi.runtime.set_mocks` with the recording monitor, as the offline plan runs.
    transport "grpc": the recording monitor served over gRPC and the program run by `run_in_stack` on an
    event loop after `reset_options(monitor_address=...)`, which is what the Pulumi CLI's language host does;
    the requests are recorded as the engine side decoded them from the wire.
    """
    import asyncio
    from concurrent import futures

    import grpc
    from google.protobuf import empty_pb2
    from google.protobuf.json_format import MessageToDict
    from pulumi.runtime import mocks
    from pulumi.runtime.proto import resource_pb2, resource_pb2_grpc
    from pulumi.runtime.settings import reset_options
    from pulumi.runtime.stack import run_in_stack, wait_for_rpcs
    from pulumi.runtime.sync_await import _sync_await

    class EchoMocks(pulumi.runtime.Mocks):
        def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
            outputs = {"name": args.name, **args.inputs}
            if args.typ == "azure-native:sql:Server":
                outputs["fullyQualifiedDomainName"] = f"{args.name}.database.windows.net"
            return f"/subscriptions/0/{args.name}", outputs

        def call(
            self, args: pulumi.runtime.MockCallArgs
        ) -> tuple[dict[str, Any], list[tuple[str, str]] | None]:
            return {}, None

    class RecordingMonitor(mocks.MockMonitor):
        def __init__(self, mocks_: pulumi.runtime.Mocks) -> None:
            super().__init__(mocks_)
            self.requests: list[Any] = []
            self._lock = threading.Lock()

        def GetDeploymentInfo(self, request: Any) -> Any:
            info = super().GetDeploymentInfo(request)
            if alias_specs:
                return info
            # An engine predating alias specs: the SDK must send full alias URNs instead.
            specs = resource_pb2.RESOURCE_MONITOR_FEATURE_ALIAS_SPECS
            features = [f for f in info.supportedFeatures if f != specs]
            return resource_pb2.DeploymentInfo(supportedFeatures=features)

        def RegisterResource(self, request: Any) -> Any:
            # RPCs arrive on executor threads; copy the message so later mutation cannot leak in.
            copied = resource_pb2.RegisterResourceRequest()
            copied.CopyFrom(request)
            with self._lock:
                self.requests.append(copied)
            return super().RegisterResource(request)

    class MonitorServicer(resource_pb2_grpc.ResourceMonitorServicer):
        def __init__(self, monitor: RecordingMonitor) -> None:
            self.monitor = monitor

        def GetDeploymentInfo(self, request: Any, context: grpc.ServicerContext) -> Any:
            return self.monitor.GetDeploymentInfo(request)

        def RegisterResource(self, request: Any, context: grpc.ServicerContext) -> Any:
            return self.monitor.RegisterResource(request)

        def RegisterResourceOutputs(self, request: Any, context: grpc.ServicerContext) -> Any:
            return empty_pb2.Empty()

        def SignalAndWaitForShutdown(self, request: Any, context: grpc.ServicerContext) -> Any:
            return empty_pb2.Empty()

    mocks_ = EchoMocks()
    monitor = RecordingMonitor(mocks_)
    built: list[pulumi.Resource] = []
    shortcuts: dict[str, str] = {}
    if transport == "mocks":
        # As the offline engine plans: the alias speedup plus the plan-only shortcuts around the program.
        pulumi.runtime.set_mocks(mocks_, project="stamps", stack="prod", preview=False, monitor=monitor)
        active = speedup.enable()
        with speedup.plan_shortcuts() as shortcuts:
            built.extend(_scenario_program())
            _sync_await(wait_for_rpcs())
    else:
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        resource_pb2_grpc.add_ResourceMonitorServicer_to_server(MonitorServicer(monitor), server)
        port = server.add_insecure_port("127.0.0.1:0")
        server.start()
        reset_options(project="stamps", stack="prod", monitor_address=f"127.0.0.1:{port}", preview=False)
        active = speedup.enable()
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        loop.run_until_complete(run_in_stack(lambda: built.extend(_scenario_program())))
        server.stop(None)
    if active != use_speedup:
        raise SystemExit(f"speedup.enable() returned {active}, expected {use_speedup}: {speedup.status()}")

    def canonical(req: Any) -> Any:
        # The stock SDK fills these from Python sets (prepare_resource's `dependencies`, the per-property URN
        # sets, prepare_aliases' `distinct_alias_urns`), so their order is arbitrary even between two stock
        # runs; everything else is compared in the order the SDK sent it.
        out = resource_pb2.RegisterResourceRequest()
        out.CopyFrom(req)
        for field in (out.dependencies, out.aliasURNs):
            ordered = sorted(field)
            del field[:]
            field.extend(ordered)
        for deps in out.propertyDependencies.values():
            ordered = sorted(deps.urns)
            del deps.urns[:]
            deps.urns.extend(ordered)
        return out

    deferred = [
        alias for res in built for alias in res._aliases if isinstance(alias, speedup._DeferredAliasUrn)
    ]
    records = sorted(
        (
            {
                "key": f"{req.type}::{req.name}",
                "dict": MessageToDict(req, preserving_proto_field_name=True),
                "bytes": req.SerializeToString(deterministic=True).hex(),
            }
            for req in map(canonical, monitor.requests)
        ),
        key=lambda r: r["key"],
    )
    json.dump(
        {
            "active": active,
            "shortcuts": shortcuts,
            "observed": _OBSERVED,
            "deferred": len(deferred),
            "materialized": sum(alias._materialized is not None for alias in deferred),
            "requests": records,
        },
        sys.stdout,
    )


# ---------------------------------------------------------------------------------------------------------
# The tests.
# ---------------------------------------------------------------------------------------------------------

Run = dict[str, Any]


Variant = tuple[str, bool]  # (transport, engine supports alias specs)
VARIANTS: list[Variant] = [("mocks", True), ("mocks", False), ("grpc", True)]


def _spawn(variant: Variant, use_speedup: bool) -> subprocess.Popen[str]:
    transport, alias_specs = variant
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    for var in (speedup.ENV_VAR, speedup.GC_ENV_VAR, speedup.STACK_ENV_VAR):
        env[var] = "1" if use_speedup else "0"
    return subprocess.Popen(
        [sys.executable, str(Path(__file__).resolve()), transport, str(int(alias_specs)), str(int(use_speedup))],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.fixture(scope="module")
def runs() -> dict[tuple[Variant, bool], Run]:
    version = speedup._installed_pulumi_version()
    if version not in speedup.SUPPORTED_PULUMI_VERSIONS:
        pytest.skip(f"speedup not verified on pulumi {version}: stock behaviour, nothing to compare")
    procs = {(variant, fast): _spawn(variant, fast) for variant in VARIANTS for fast in (False, True)}
    results: dict[tuple[Variant, bool], Run] = {}
    for key, proc in procs.items():
        out, err = proc.communicate(timeout=90)
        assert proc.returncode == 0, f"scenario {key} failed:\n{err}"
        results[key] = json.loads(out)
    return results


def _by_key(run: Run) -> dict[str, dict[str, Any]]:
    return {r["key"]: r for r in run["requests"]}


@pytest.mark.parametrize("variant", VARIANTS, ids=["mocks-alias-specs", "mocks-alias-urns", "grpc-alias-specs"])
def test_register_requests_identical(runs: dict[tuple[Variant, bool], Run], variant: Variant) -> None:
    stock, fast = runs[(variant, False)], runs[(variant, True)]
    assert stock["active"] is False and fast["active"] is True
    assert stock["observed"] == {"gc_enabled": True, "stack_capture": False}
    if variant[0] == "mocks":
        # Every offline shortcut was on while the program registered its resources.
        assert fast["shortcuts"] == {"gc": "active", "stack": "active"}
        assert fast["observed"] == {"gc_enabled": False, "stack_capture": True}
    else:
        # As `pulumi up` runs the program (program.run → speedup.enable): stock GC and stack capture.
        assert fast["observed"] == {"gc_enabled": True, "stack_capture": False}
    assert stock["deferred"] == 0
    assert fast["deferred"] > 200, "the sped-up run must actually have deferred the azure-native aliases"

    stock_reqs, fast_reqs = _by_key(stock), _by_key(fast)
    assert list(stock_reqs) == list(fast_reqs)
    for key in stock_reqs:
        assert fast_reqs[key]["dict"] == stock_reqs[key]["dict"], key
        assert fast_reqs[key]["bytes"] == stock_reqs[key]["bytes"], key


def test_scenario_requests_carry_what_they_should(runs: dict[tuple[Variant, bool], Run]) -> None:
    """Guards the comparison against vacuity: the recorded requests must contain the interesting parts."""
    reqs = {k: r["dict"] for k, r in _by_key(runs[(("mocks", True), True)]).items()}
    assert set(reqs) == {
        "pulumi:pulumi:Stack::stamps-prod",
        "stamps:index:Stamp::stamp-weu",
        "azure-native:resources:ResourceGroup::rg",
        "azure-native:sql:Server::sql",
        "azure-native:sql:Database::db",
        "azure-native:monitor:DiagnosticSetting::sql-diagnostics",
        "azure-native:storage:StorageAccount::st",
        "azure-native:cosmosdb:DatabaseAccount::cosmos",
        "azure-native:cosmosdb:SqlResourceSqlDatabase::tenants-db",
        "azure-native:cosmosdb:SqlResourceSqlContainer::tenants",
        "azure-native:monitor:MetricAlert::sql-cpu",
        "azure-native:keyvault:Vault::kv",
        "stamps:test:Raw::raw",
        "azure-native:storage:StorageAccount::st-generated",
    }
    # The stack traces the comparison covers: a full one pointing at this file, an empty one, and one whose
    # innermost frame (the <generated> code) has no source position.
    this_file = Path(__file__).resolve().as_uri()
    assert reqs["azure-native:sql:Server::sql"]["sourcePosition"]["uri"] == this_file
    assert len(reqs["azure-native:sql:Server::sql"]["stackTrace"]["frames"]) >= 3
    assert "stackTrace" not in reqs["stamps:test:Raw::raw"] or not reqs["stamps:test:Raw::raw"]["stackTrace"]
    generated = reqs["azure-native:storage:StorageAccount::st-generated"]["stackTrace"]["frames"]
    assert generated[0] == {} and generated[1]["pc"]["uri"] == this_file
    server = reqs["azure-native:sql:Server::sql"]
    assert len(server["aliases"]) == 24 + 2
    assert {"spec": {"name": "sql-root", "noParent": True}} in server["aliases"]
    assert server["protect"] is True
    assert server["parent"].endswith("stamps:index:Stamp::stamp-weu")
    assert any(d.endswith("ResourceGroup::rg") for d in server["dependencies"])
    password = server["object"]["administratorLoginPassword"]
    assert password["value"] == "s3cr3t!" and "4dabf18193072939515e22adb298388d" in password
    assert server["object"]["administrators"] == {"login": "dba", "sid": "0000", "tenantId": "t"}
    account = reqs["azure-native:storage:StorageAccount::st"]
    assert {"urn": "urn:pulumi:s::p::azure-native:storage:StorageAccount::legacy"} in account["aliases"]
    assert account["object"]["networkRuleSet"]["ipRules"] == [
        {"iPAddressOrRange": "203.0.113.0/24", "action": "Allow"}
    ]
    container = reqs["azure-native:cosmosdb:SqlResourceSqlContainer::tenants"]
    assert len(container["aliases"]) > 60

    # Without alias specs the SDK computes URNs, including ones inherited from aliased parents, which
    # is where the deferred URNs get read.
    legacy = {k: r["dict"] for k, r in _by_key(runs[(("mocks", False), True)]).items()}
    diagnostics = legacy["azure-native:monitor:DiagnosticSetting::sql-diagnostics"]
    assert "aliases" not in diagnostics
    # 4 own aliases + 26 server aliases × (1 + 4): the product is built from the server's deferred URNs.
    assert len(diagnostics["aliasURNs"]) == 4 + 26 * 5
    assert runs[(("mocks", False), True)]["materialized"] > 0
    assert runs[(("mocks", True), True)]["materialized"] == 0
    assert runs[(("grpc", True), True)]["materialized"] == 0
    # Over gRPC the program runs inside run_in_stack's event loop: its frames are in the stack trace too.
    over_grpc = {k: r["dict"] for k, r in _by_key(runs[(("grpc", True), True)]).items()}
    assert over_grpc.keys() == reqs.keys()
    assert over_grpc["azure-native:sql:Server::sql"]["aliases"] == server["aliases"]


@pytest.fixture
def restore_speedup() -> Iterator[None]:
    # Other tests in this process may rely on the speedup state: put it back whatever happens.
    was_active = speedup.is_active()
    try:
        yield
    finally:
        speedup.disable()
        if was_active:
            speedup.enable()


def _stock_bindings() -> bool:
    return (
        pulumi_resource.collapse_alias_to_urn is runtime_resource.collapse_alias_to_urn
        and runtime_resource.prepare_aliases is speedup._ORIGINAL_PREPARE_ALIASES
    )


@pytest.mark.usefixtures("restore_speedup")
def test_enable_is_idempotent_and_disable_restores_stock(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(speedup.ENV_VAR, raising=False)
    speedup.disable()
    assert _stock_bindings() and not speedup.is_active()

    assert speedup.enable() is True
    patched = (pulumi_resource.collapse_alias_to_urn, runtime_resource.prepare_aliases)
    assert not _stock_bindings()
    assert speedup.enable() is True
    assert (pulumi_resource.collapse_alias_to_urn, runtime_resource.prepare_aliases) == patched

    speedup.disable()
    assert _stock_bindings() and not speedup.is_active()
    speedup.disable()
    assert _stock_bindings()


@pytest.mark.usefixtures("restore_speedup")
def test_env_var_turns_it_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(speedup.ENV_VAR, raising=False)
    speedup.disable()
    assert speedup.enable() is True
    monkeypatch.setenv(speedup.ENV_VAR, "0")
    assert speedup.enable() is False
    assert _stock_bindings() and not speedup.is_active()
    assert speedup.ENV_VAR in speedup.status()


@pytest.mark.usefixtures("restore_speedup")
@pytest.mark.parametrize("version", ["3.271.0", "3.273.0", "4.0.0", None])
def test_unverified_sdk_version_is_left_alone(monkeypatch: pytest.MonkeyPatch, version: str | None) -> None:
    monkeypatch.delenv(speedup.ENV_VAR, raising=False)
    speedup.disable()
    monkeypatch.setattr(speedup, "_installed_pulumi_version", lambda: version)
    assert speedup.enable() is False
    assert _stock_bindings() and not speedup.is_active()
    assert "not a verified version" in speedup.status()


@pytest.mark.usefixtures("restore_speedup")
def test_changed_sdk_source_is_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(speedup.ENV_VAR, raising=False)
    speedup.disable()
    monkeypatch.setattr(speedup, "_sdk_fingerprint", lambda: "0" * 64)
    assert speedup.enable() is False
    assert _stock_bindings()
    assert "source differs" in speedup.status()


@pytest.mark.usefixtures("restore_speedup")
def test_someone_elses_patch_is_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(speedup.ENV_VAR, raising=False)
    speedup.disable()

    async def other_prepare_aliases(*args: Any) -> list[Any]:
        return []

    monkeypatch.setattr(runtime_resource, "prepare_aliases", other_prepare_aliases)
    assert speedup.enable() is False
    assert runtime_resource.prepare_aliases is other_prepare_aliases


def test_only_aliases_whose_urn_cannot_fail_are_deferred(monkeypatch: pytest.MonkeyPatch) -> None:
    # No Outputs here: they would be tracked in the SDK's process-global state and outlive this test.
    # Inside a program the project and stack are set; other tests may have reset them, so pin them here.
    monkeypatch.setattr(speedup.runtime_settings, "get_project", lambda: "project")
    monkeypatch.setattr(speedup.runtime_settings, "get_stack", lambda: "stack")
    class LegacyAlias(pulumi.Alias):
        pass

    not_a_str: Any = 42
    root: pulumi.Resource | None = None
    assert speedup._deferrable(pulumi.Alias(type_="azure-native:sql/v20211101:Server"), root)
    assert speedup._deferrable("urn:pulumi:s::p::t::n", root)
    assert speedup._deferrable(pulumi.Alias(name="n", parent="urn:pulumi:s::p::t::parent"), root)
    assert speedup._deferrable(pulumi.Alias(name="n", stack="dev", project=None), root)
    # Everything below makes the stock URN chain asynchronous input or a runtime error: stay eager.
    assert not speedup._deferrable(pulumi.Alias(name=None), root)
    assert not speedup._deferrable(pulumi.Alias(type_=None), root)
    assert not speedup._deferrable(pulumi.Alias(stack=not_a_str), root)
    assert not speedup._deferrable(pulumi.Alias(project=not_a_str), root)
    assert not speedup._deferrable(pulumi.Alias(name="n", parent=not_a_str), root)
    assert not speedup._deferrable(LegacyAlias(name="n"), root)
    assert not speedup._deferrable({"name": "n"}, root)
    assert not speedup._deferrable(pulumi.Alias(name="n"), not_a_str)


# ---------------------------------------------------------------------------------------------------------
# The offline-only shortcuts: GC paused and cheap stack capture (plan_shortcuts), fast exit (exit_fast).
# ---------------------------------------------------------------------------------------------------------


def _stock_stack_capture() -> bool:
    return runtime_resource._get_stack_trace is speedup._STOCK_GET_STACK_TRACE


def _allow_shortcuts(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in (speedup.GC_ENV_VAR, speedup.STACK_ENV_VAR, speedup.FAST_EXIT_ENV_VAR):
        monkeypatch.delenv(var, raising=False)
    if speedup._installed_pulumi_version() not in speedup.SUPPORTED_PULUMI_VERSIONS:
        pytest.skip("shortcuts are off on an unverified pulumi: nothing to test")


def test_plan_shortcuts_are_restored_even_when_the_program_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    _allow_shortcuts(monkeypatch)
    assert gc.isenabled() and _stock_stack_capture()
    with pytest.raises(RuntimeError, match="program failed"), speedup.plan_shortcuts() as state:
        assert state == {"gc": "active", "stack": "active"}
        assert not gc.isenabled()
        assert runtime_resource._get_stack_trace is speedup._cheap_get_stack_trace
        raise RuntimeError("program failed")
    assert gc.isenabled() and _stock_stack_capture()
    assert gc.get_freeze_count() == 0, "a library caller's garbage must stay collectable"


def test_the_cli_process_freezes_a_finished_plan_instead_of_collecting_it(monkeypatch: pytest.MonkeyPatch) -> None:
    _allow_shortcuts(monkeypatch)
    monkeypatch.setattr(speedup, "is_cli_process", lambda: True)
    try:
        with speedup.plan_shortcuts():
            pass
        assert gc.isenabled() and gc.get_freeze_count() > 0
        with speedup.plan_shortcuts():
            # A second plan in the same process: the first one's objects are collectable again.
            assert gc.get_freeze_count() == 0 and not gc.isenabled()
        monkeypatch.setenv(speedup.FAST_EXIT_ENV_VAR, "0")
        with speedup.plan_shortcuts():
            pass
        assert gc.isenabled() and gc.get_freeze_count() == 0, "no fast exit: nothing may stay frozen"
    finally:
        gc.unfreeze()
        speedup._FROZE.clear()


def test_plan_shortcuts_leave_a_disabled_collector_disabled(monkeypatch: pytest.MonkeyPatch) -> None:
    _allow_shortcuts(monkeypatch)
    gc.disable()
    try:
        with speedup.plan_shortcuts():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()


@pytest.mark.parametrize("var", ["STAMPS_PLAN_GC", "STAMPS_PLAN_STACK"])
def test_each_plan_shortcut_switches_off_alone(monkeypatch: pytest.MonkeyPatch, var: str) -> None:
    _allow_shortcuts(monkeypatch)
    monkeypatch.setenv(var, "off")
    with speedup.plan_shortcuts() as state:
        assert gc.isenabled() == (var == speedup.GC_ENV_VAR)
        assert _stock_stack_capture() == (var == speedup.STACK_ENV_VAR)
    key = "gc" if var == speedup.GC_ENV_VAR else "stack"
    assert state[key] == f"{var}=off"
    assert state[{"gc": "stack", "stack": "gc"}[key]] == "active"


@pytest.mark.parametrize("version", ["3.273.0", None])
def test_plan_shortcuts_stay_off_on_an_unverified_sdk(monkeypatch: pytest.MonkeyPatch, version: str | None) -> None:
    _allow_shortcuts(monkeypatch)
    monkeypatch.setattr(speedup, "_installed_pulumi_version", lambda: version)
    with speedup.plan_shortcuts() as state:
        assert gc.isenabled() and _stock_stack_capture()
    assert all("not a verified version" in reason for reason in state.values())
    assert speedup.exit_fast(7) == 7


def test_stack_capture_stays_off_when_its_source_changed(monkeypatch: pytest.MonkeyPatch) -> None:
    _allow_shortcuts(monkeypatch)
    monkeypatch.setattr(speedup, "_stack_capture_objects", lambda: (_Base,))
    with speedup.plan_shortcuts() as state:
        assert _stock_stack_capture() and not gc.isenabled()
    assert "source differs" in state["stack"]


class _Base:
    def __init__(self, capture: Any) -> None:
        self.captured = capture()


class _Middle(_Base):
    def __init__(self, capture: Any) -> None:
        super().__init__(capture)


class _Concrete(_Middle):
    def __init__(self, capture: Any) -> None:
        super().__init__(capture)


def _both_traces() -> tuple[bytes, bytes]:
    # One call site for both, so every frame (line numbers included) is the same.
    stock, cheap = speedup._STOCK_GET_STACK_TRACE(), speedup._cheap_get_stack_trace()
    return stock.SerializeToString(deterministic=True), cheap.SerializeToString(deterministic=True)


@pytest.mark.parametrize("shape", ["three-inits", "two-inits", "generated-code", "tracebacklimit"])
def test_cheap_stack_capture_equals_stock(monkeypatch: pytest.MonkeyPatch, shape: str) -> None:
    if shape == "three-inits":
        stock, cheap = _Concrete(_both_traces).captured
        assert len(stock) > 100  # frames below the third __init__: this test, pytest, ...
    elif shape == "two-inits":
        stock, cheap = _Middle(_both_traces).captured
    elif shape == "generated-code":
        scope: dict[str, Any] = {"_Concrete": _Concrete, "_both_traces": _both_traces}
        exec(compile("result = (lambda: _Concrete(_both_traces))()", "<generated>", "exec"), scope)
        stock, cheap = scope["result"].captured
    else:
        monkeypatch.setattr(sys, "tracebacklimit", 5, raising=False)
        stock, cheap = _Concrete(_both_traces).captured
    assert cheap == stock


def _fast_exit_run(tmp_path: Path, fast: bool) -> tuple[subprocess.CompletedProcess[str], bytes]:
    # The process is the `stamps` CLI (as the console script runs it); an object left in __main__ reports
    # whether the interpreter tore the module down (normal exit) or not (fast exit).
    script = (
        "import atexit, os, sys\n"
        "from stamps.cli import main\n"
        "class Witness:\n"
        "    def __del__(self, write=os.write):\n"
        "        write(2, b'torn down\\n')\n"
        "witness = Witness()\n"
        "atexit.register(lambda: print('atexit ran', file=sys.stderr))\n"
        "sys.exit(main())\n"
    )
    out = tmp_path / f"plan-{int(fast)}.json"
    env = {**os.environ, speedup.FAST_EXIT_ENV_VAR: "1" if fast else "0"}
    proc = subprocess.run(
        [sys.executable, "-c", script, "plan", "--project-dir", str(REPO), "--no-tree", "--out", str(out)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300, check=False,
    )
    return proc, out.read_bytes()


def test_fast_exit_changes_nothing_but_the_teardown(tmp_path: Path) -> None:
    if speedup._installed_pulumi_version() not in speedup.SUPPORTED_PULUMI_VERSIONS:
        pytest.skip("fast exit is off on an unverified pulumi")
    normal, normal_plan = _fast_exit_run(tmp_path, fast=False)
    fast, fast_plan = _fast_exit_run(tmp_path, fast=True)
    assert normal.returncode == fast.returncode == 0, normal.stderr + fast.stderr
    assert fast_plan == normal_plan and b'"resources"' in fast_plan
    assert fast.stdout.replace("plan-1.json", "plan-0.json") == normal.stdout
    assert "resources in" in fast.stdout
    # The program's own preview warnings (names a destroy leaves reserved, services to confirm in a region, each
    # naming its config key) are the same in both runs.
    warned = ("names reserved after a destroy", "stamps:")
    program = [line for line in normal.stderr.splitlines() if line.startswith(warned)]
    assert program and program == [line for line in fast.stderr.splitlines() if line.startswith(warned)]
    assert [line for line in normal.stderr.splitlines() if line not in program] == ["atexit ran", "torn down"]
    assert [line for line in fast.stderr.splitlines() if line not in program] == ["atexit ran"]


def test_fast_exit_never_ends_a_library_caller(monkeypatch: pytest.MonkeyPatch) -> None:
    _allow_shortcuts(monkeypatch)
    # pytest's process (as ops' or any library caller's) is not the `stamps` CLI: the code comes back.
    assert not speedup.is_cli_process()
    assert speedup.exit_fast(3) == 3


if __name__ == "__main__":
    _run_scenario(transport=sys.argv[1], alias_specs=sys.argv[2] == "1", use_speedup=sys.argv[3] == "1")
