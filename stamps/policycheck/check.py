"""Check a plan with the policy pack: one pack process per stack, the CLI's calls in the CLI's order."""

from __future__ import annotations

from collections.abc import Callable, Collection
from pathlib import Path

from pulumi.runtime.proto import analyzer_pb2

from stamps.offline.plan import Plan
from stamps.policycheck import config as policy_config
from stamps.policycheck.analyzer import PackProject, PolicyPackProcess, StackContext, find_pack
from stamps.policycheck.config import LEVEL_NAMES, PolicyConfig
from stamps.policycheck.report import PackReport, PolicySummary, Violation, strip_description
from stamps.policycheck.wire import analyze_request, stack_resource, stack_resource_message

_KINDS = {analyzer_pb2.POLICY_TYPE_RESOURCE: "resource", analyzer_pb2.POLICY_TYPE_STACK: "stack"}


def check_plan(plan: Plan, pack_dir: Path | None = None, given: dict[str, PolicyConfig] | None = None,
               only: Collection[str] | None = None, *,
               on_analyze: Callable[[int], None] | None = None) -> PackReport:
    """Start the pack, configure it, analyze every resource and the stack; the pack is stopped on return.

    `on_analyze(n)` is told how many of the plan's resources (and, last, the stack) were analyzed so far.
    """
    project = PackProject.load(pack_dir or find_pack())
    resources = [stack_resource(plan), *plan.resources]
    known = {r["urn"]: r for r in resources}
    context = StackContext(project=plan.project, stack=plan.stack,
                           tags={"pulumi:project": plan.project, "pulumi:runtime": "python"})
    with PolicyPackProcess(project, context) as pack:
        info = pack.analyzer_info()
        pack.plugin_version()
        given = given or {}
        if only is not None:
            # The others are switched off as a policy config would: the pack reports them as not run.
            given = {**given, **{p.name: PolicyConfig(level="disabled") for p in info.policies if p.name not in only}}
        effective = policy_config.reconcile(info, given)
        pack.configure(policy_config.to_request(effective))

        raw: list[tuple[str, analyzer_pb2.AnalyzeDiagnostic]] = []
        for n, r in enumerate(resources, 1):
            # Analyze diagnostics belong to the analyzed resource even when the pack leaves `urn` empty.
            raw += [(d.urn or r["urn"], d) for d in pack.analyze(analyze_request(r))]
            if on_analyze is not None:
                on_analyze(n)
        raw += [(d.urn, d) for d in pack.analyze_stack(stack_resource_message(r) for r in resources)]
        logs = list(pack.engine.logs) + [f"stdout: {line}" for line in pack.stdout]

    violations = []
    for urn, d in raw:
        res = known.get(urn)
        violations.append(Violation(
            policy=d.policyName, level=LEVEL_NAMES.get(d.enforcementLevel, "advisory"), urn=urn,
            type=res["type"] if res else "", name=res["name"] if res else "",
            message=strip_description(d.message, d.description),
        ))
    policies = [PolicySummary(p.name, p.description, effective[p.name].level or "advisory",
                              _KINDS.get(p.policy_type, "resource")) for p in info.policies]
    warnings = [f"policy config names no policy of the pack: {name}"
                for name in policy_config.unknown_policies(info, given)]
    return PackReport(pack=info.name, version=project.version or info.version, project=plan.project,
                      stack=plan.stack, resources=len(resources), policies=policies, violations=violations,
                      logs=logs, warnings=warnings)
