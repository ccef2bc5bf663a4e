"""The fleet deployed by GitHub Actions: the committed workflow is the one the fleet generates, every stack's job
runs after the jobs of every stack it reads, and the file has the shape GitHub accepts."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from benchmarks.fleets import write_fleet
from stamps.cli import main as stamps_main
from stamps.environment import Environment
from stamps.stacks import workflow as wf
from stamps.stacks.fleet import load_fleet
from stamps.stacks.units import Unit, needs, units

ROOT = Path(__file__).resolve().parents[1]
# Inputs the actions document (pulumi/actions action.yml; Azure/login README): a misspelt input is ignored by
# GitHub with only a warning, so a typo here would silently drop the policy pack or the stack name.
PULUMI_ACTION_INPUTS = {"command", "stack-name", "work-dir", "comment-on-pr", "github-token", "cloud-url",
                        "secrets-provider", "parallel", "message", "configMap", "expect-no-changes", "diff", "replace",
                        "target", "target-dependents", "policyPacks", "policyPackConfigs", "refresh", "upsert",
                        "edit-pr-comment", "color", "pulumi-version"}
AZURE_LOGIN_INPUTS = {"client-id", "tenant-id", "subscription-id", "creds", "enable-AzPSSession", "environment",
                      "allow-no-subscriptions", "audience", "auth-type"}
JOB_ID = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")


def prod() -> Environment:
    return load_fleet("stamps", "prod", ROOT / "Pulumi.prod.yaml")


def fleet_m(tmp_path: Path) -> Environment:
    return load_fleet("stamps", "fleet-m", write_fleet("M", tmp_path))


def ancestors(jobs: dict[str, Any], job: str) -> set[str]:
    seen: set[str] = set()
    todo = list(jobs[job].get("needs", []))
    while todo:
        j = todo.pop()
        if j not in seen:
            seen.add(j)
            todo += jobs[j].get("needs", [])
    return seen


def check_order(doc: dict[str, Any], env: Environment, fleet: str) -> None:
    """Every unit in exactly one job; the jobs of the stacks it reads (its StackReferences) all run before it."""
    jobs = doc["jobs"]
    job_of: dict[str, str] = {}
    for job_id, job in jobs.items():
        for stack in job.get("strategy", {}).get("matrix", {}).get("stack", []):
            assert stack not in job_of, f"{stack} in two jobs"
            job_of[stack] = job_id
    assert set(job_of) == {u.stack(fleet) for u in units(env)}
    for u in units(env):
        job = job_of[u.stack(fleet)]
        before = ancestors(jobs, job)
        assert "plan" in before, f"{job} can start before the offline plan and policy pack passed"
        for upstream in needs(env, u):
            assert job_of[upstream.stack(fleet)] in before, (u.name, upstream.name, job)


def check_shape(doc: dict[str, Any]) -> None:
    """What GitHub validates before running anything: triggers, job ids, needs that exist and form no cycle,
    steps with exactly one of `uses`/`run`, matrices within the limit, inputs the actions define."""
    assert set(doc) >= {"name", "on", "jobs"} and True not in doc, "`on` must load as the string key"
    assert set(doc["on"]) <= {"workflow_dispatch", "push", "pull_request", "schedule"}
    assert doc["permissions"]["id-token"] == "write", "azure/login and ARM_USE_OIDC need an OIDC token"
    assert doc["concurrency"]["cancel-in-progress"] is False
    jobs = doc["jobs"]
    for job_id, job in jobs.items():
        assert JOB_ID.match(job_id), job_id
        assert job["runs-on"] and job["steps"]
        assert all(n in jobs for n in job.get("needs", [])), job_id
        assert job_id not in ancestors(jobs, job_id), f"cycle through {job_id}"
        for step in job["steps"]:
            assert ("uses" in step) != ("run" in step), step
            if step.get("uses", "").startswith("pulumi/actions@"):
                assert set(step["with"]) <= PULUMI_ACTION_INPUTS, set(step["with"]) - PULUMI_ACTION_INPUTS
            if step.get("uses", "").startswith("azure/login@"):
                assert set(step["with"]) <= AZURE_LOGIN_INPUTS
        matrix = job.get("strategy", {}).get("matrix")
        if matrix is not None:
            assert 0 < len(matrix["stack"]) <= 256
            # A failing stack must not cancel the running updates of its wave (a killed `up` keeps its lock).
            assert job["strategy"]["fail-fast"] is False
            up = next(s for s in job["steps"] if s.get("uses", "").startswith("pulumi/actions@"))["with"]
            assert up["command"] == "up" and up["policyPacks"] == "policy" and up["upsert"] is True
            assert "matrix.stack" in up["stack-name"]
    text = yaml.safe_dump(doc)
    assert text.count("${{") == text.count("}}")


def test_the_committed_prod_workflow_is_the_one_the_fleet_generates(tmp_path: Path) -> None:
    out = tmp_path / "deploy-prod.yml"
    assert stamps_main(["stacks", "--fleet", "prod", "--github-workflow", "--project-dir", str(ROOT),
                        "--out", str(out)]) == 0
    committed = ROOT / wf.workflow_path("prod")
    assert committed.read_text() == out.read_text(), (
        f"{committed.relative_to(ROOT)} is out of date with Pulumi.prod.yaml; regenerate it with "
        f"`stamps stacks --fleet prod --github-workflow --out {wf.workflow_path('prod')}`")


def test_prod_jobs_run_every_stack_after_the_stacks_it_reads() -> None:
    doc = yaml.safe_load((ROOT / wf.workflow_path("prod")).read_text())
    check_shape(doc)
    check_order(doc, prod(), "prod")
    # Only the first wave waits for credentials; the later ones are skipped when it is.
    gated = [j for j, job in doc["jobs"].items() if "if" in job]
    assert gated == ["wave-1"]


def test_a_three_region_fleet_keeps_its_order(tmp_path: Path) -> None:
    env = fleet_m(tmp_path)
    assert len(env.deployed_regions) == 3
    doc = yaml.safe_load(wf.render(env, "fleet-m"))
    check_shape(doc)
    check_order(doc, env, "fleet-m")


def test_a_wave_wider_than_a_matrix_is_split_into_jobs_with_the_same_needs(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(wf, "MATRIX_LIMIT", 3)
    env = fleet_m(tmp_path)
    doc = yaml.safe_load(wf.render(env, "fleet-m"))
    check_shape(doc)
    check_order(doc, env, "fleet-m")
    split = [j for j in doc["jobs"] if j.count("-") == 2]
    assert split and all(len(doc["jobs"][j]["strategy"]["matrix"]["stack"]) <= 3 for j in split)


def test_json_listing_gives_each_stack_its_wave_after_the_stacks_it_reads(capsys: pytest.CaptureFixture[str]) -> None:
    assert stamps_main(["stacks", "--fleet", "prod", "--json", "--project-dir", str(ROOT)]) == 0
    rows = json.loads(capsys.readouterr().out)
    env = prod()
    assert [r["stack"] for r in rows] == [u.stack("prod") for u in sorted(units(env), key=lambda u: next(
        r["wave"] for r in rows if r["stack"] == u.stack("prod")))]
    wave = {r["stack"]: r["wave"] for r in rows}
    for r in rows:
        unit = Unit.parse(r["stack"].split(".", 1)[1])
        assert r["layer"] == unit.layer
        assert r["needs"] == [u.stack("prod") for u in needs(env, unit)]
        assert all(wave[n] < r["wave"] for n in r["needs"])


@pytest.mark.parametrize(("argv", "arg"), [(["--fleet", "prod.global"], "--fleet"),
                                           (["--github-workflow", "--json"], "--github-workflow"),
                                           (["--parallel", "0", "--github-workflow"], "--parallel"),
                                           (["--fleet", "nope"], "--fleet")])
def test_bad_arguments_exit_2_naming_the_argument(argv: list[str], arg: str,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    assert stamps_main(["stacks", "--project-dir", str(ROOT), *argv]) == 2
    assert arg in capsys.readouterr().err


def test_the_order_check_catches_a_wave_that_skips_its_upstream() -> None:
    doc = yaml.safe_load((ROOT / wf.workflow_path("prod")).read_text())
    doc["jobs"]["wave-5"]["needs"] = ["wave-3"]  # edge.westus before the standby CELLs of westus
    with pytest.raises(AssertionError, match=r"edge\.westus"):
        check_order(doc, prod(), "prod")
