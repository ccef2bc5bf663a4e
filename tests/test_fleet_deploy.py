"""`stamps-ops deploy`: every unit stack updated once, after the stacks it reads, through the Automation API
(the stand-in CLI records each stack's argv); a failure stops the run, and the re-run resumes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ops.cli import main as ops_main
from ops.runner import AutomationRunner
from stamps.stacks.fleet import load_fleet
from stamps.stacks.units import needs, split_stack, units
from tests.test_runner import FakePulumi

FAIL = (255, "error: Code=Conflict Message=\"Another operation is in progress\"")


class Fleet:
    """One stand-in CLI per stack; `order` is the sequence of `up` calls across all of them."""

    def __init__(self, fail: set[str] | None = None) -> None:
        self.fakes: dict[str, FakePulumi] = {}
        self.order: list[str] = []
        self.fail = fail or set()

    def factory(self, project_dir: Path, stack: str, dry_run: bool, kind: str) -> AutomationRunner:
        fake = self.fakes.setdefault(stack, FakePulumi())
        # A new unit stack does not exist in the backend yet: `stack select` fails as the CLI does.
        fake.failures["stack select"] = (255, f"error: no stack named '{stack}' found")
        if stack in self.fail:
            fake.failures["up"] = FAIL
        fake.on_up = lambda s=stack: self.order.append(s)
        return AutomationRunner(project_dir, stack, pulumi_command=fake, show_progress=False,
                                policy_pack=project_dir / "policy", create_missing=split_stack(stack)[1] is not None)


def deploy(project: Path, fleet: Fleet, *extra: str) -> int:
    return ops_main(["deploy", "--project-dir", str(project), "--parallel", "3", *extra],
                    runner_factory=fleet.factory)


def test_every_stack_is_updated_once_after_the_stacks_it_reads(project: Path) -> None:
    fleet = Fleet()
    assert deploy(project, fleet) == 0
    env = load_fleet("stamps", "prod", project / "Pulumi.prod.yaml")
    assert sorted(fleet.order) == sorted(u.stack("prod") for u in units(env))
    for stack in fleet.order:
        unit = split_stack(stack)[1]
        for upstream in needs(env, unit):  # type: ignore[arg-type]
            assert fleet.order.index(upstream.stack("prod")) < fleet.order.index(stack), (upstream, stack)
    cell = fleet.fakes["prod.cell.banking.eastus"].argv()
    # Created on first use, updated with the policy pack, each in its own CLI process and stack.
    assert cell[:2] == [["stack", "select", "--stack", "prod.cell.banking.eastus"],
                        ["stack", "init", "prod.cell.banking.eastus"]]
    up = next(c for c in cell if c[0] == "up")
    assert up[up.index("--stack") + 1] == "prod.cell.banking.eastus"
    assert up[up.index("--policy-pack") + 1] == str(project / "policy")
    assert not (project / ".stamps" / "fleetrun-prod-deploy.json").exists()


def test_a_failure_stops_the_run_and_the_rerun_resumes_after_the_done_stacks(
        project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    failing = Fleet(fail={"prod.cell.banking.westus"})
    assert deploy(project, failing, "--parallel", "1") == 1
    out = capsys.readouterr()
    done = set(failing.order) - {"prod.cell.banking.westus"}
    # Nothing after the failed step started: no edge, routing, api or tenants stack.
    assert not [s for s in failing.order if s.split(".")[1] in ("edge", "routing", "api", "tenants")]
    assert "prod.cell.banking.westus failed" in out.err + out.out
    journal = json.loads((project / ".stamps" / "fleetrun-prod-deploy.json").read_text())
    assert set(journal["done"]) == done
    again = Fleet()
    assert deploy(project, again) == 0
    assert not set(again.order) & done
    assert "prod.cell.banking.westus" in again.order and "prod.routing" in again.order


def test_a_changed_fleet_file_deploys_everything_again(project: Path) -> None:
    failing = Fleet(fail={"prod.routing"})
    assert deploy(project, failing) == 1
    path = project / "Pulumi.prod.yaml"
    path.write_text(path.read_text().replace("costCenter:", "costCenter:", 1) + "\n")
    again = Fleet()
    assert deploy(project, again) == 0
    assert "prod.global" in again.order


def test_dry_run_plans_the_stacks_in_order_and_runs_no_cli(project: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    fleet = Fleet()
    assert deploy(project, fleet, "--dry-run", "--only", "cell.banking.eastus") == 0
    assert fleet.order == [] and set(fleet.fakes) <= {"prod"}
    assert "prod.cell.banking.eastus" in capsys.readouterr().out


@pytest.mark.parametrize(("argv", "arg"), [(["--parallel", "0"], "--parallel"),
                                           (["--only", "cell.nope.eastus"], "--only"),
                                           (["--stack", "prod.global"], "--stack")])
def test_bad_arguments_are_refused_before_any_stack_runs(project: Path, argv: list[str], arg: str,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    fleet = Fleet()
    code = ops_main(["deploy", "--project-dir", str(project), *argv], runner_factory=fleet.factory)
    assert code == 2 and not fleet.order
    assert arg in capsys.readouterr().err


