"""`stamps-ops deploy --engine deployments`: every unit stack's update runs on Pulumi Deployments through the
Automation API's remote workspace, in the local engine's order, with its stop and journal. The stand-in CLI
replaces the one `pulumi.automation` would start, so the argv asserted per stack is what the SDK really builds."""

from __future__ import annotations

import json
import subprocess
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from pulumi.automation import CommandResult
from pulumi.automation.errors import create_command_error

from ops.cli import main as ops_main
from stamps.stacks.fleet import load_fleet
from stamps.stacks.units import needs, split_stack, units
from tests.test_fleet_deploy import Fleet
from tests.test_runner import FakePulumi

ROOT = Path(__file__).resolve().parents[1]
URL = "https://github.com/acme/stamps.git"
# What `pulumi preview --help` lists on a CLI that supports remote operations (the SDK checks before using it).
HELP = "      --remote   [EXPERIMENTAL] Run the operation remotely\n      --remote-inherit-settings   ...\n"


@dataclass
class RemoteCLI(FakePulumi):
    """One stand-in for every CLI process of the run: the backend's stacks, and which stack's `up` fails."""

    existing: set[str] = field(default_factory=set)
    fail: set[str] = field(default_factory=set)
    order: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def run(self, args: list[str], cwd: str, additional_env: Mapping[str, str],
            on_output: Callable[[str], Any] | None = None,
            on_error: Callable[[str], Any] | None = None) -> CommandResult:
        with self.lock:
            if args[:2] == ["preview", "--help"]:
                self.calls.append(list(args))
                return CommandResult(stdout=HELP, stderr="", code=0)
            stack = args[args.index("--stack") + 1] if "--stack" in args else args[2]
            assert additional_env.get("PULUMI_EXPERIMENTAL") == "true"  # remote operations are experimental
            if args[:2] == ["stack", "--stack"] and stack not in self.existing:
                self.calls.append(list(args))
                raise create_command_error(CommandResult(stdout="", stderr=f"error: no stack named '{stack}' found",
                                                         code=255))
            if args[:2] == ["stack", "init"]:
                self.existing.add(stack)
            if args[0] == "up":
                self.order.append(stack)
                if stack in self.fail:
                    self.calls.append(list(args))
                    raise create_command_error(CommandResult(stdout="", stderr="error: deployment failed", code=255))
            return super().run(args, cwd, additional_env, on_output, on_error)

    def of(self, stack: str) -> list[list[str]]:
        return [c for c in self.calls if stack in c]


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch) -> RemoteCLI:
    fake = RemoteCLI()
    # The remote workspace constructs its own PulumiCommand (no option to pass one): stand in for that class.
    monkeypatch.setattr("pulumi.automation._local_workspace.PulumiCommand", lambda **_: fake)
    return fake


def deploy(project: Path, *extra: str) -> int:
    # The local runner factory must not be used for unit stacks: its CLI would record every call.
    local = Fleet()
    code = ops_main(["deploy", "--project-dir", str(project), "--engine", "deployments", "--stack", "acme/prod",
                     "--git-url", URL, "--parallel", "3", *extra], runner_factory=local.factory)
    assert not local.order
    return code


def test_every_stack_is_updated_remotely_from_git_after_the_stacks_it_reads(project: Path, cli: RemoteCLI) -> None:
    assert deploy(project, "--git-branch", "main", "--git-repo-dir", "infra/stamps") == 0
    env = load_fleet("stamps", "prod", project / "Pulumi.prod.yaml")
    qualified = [f"acme/stamps/{u.stack('prod')}" for u in units(env)]
    assert sorted(cli.order) == sorted(qualified)
    for stack in cli.order:
        unit = split_stack(stack.split("/")[-1])[1]
        for upstream in needs(env, unit):  # type: ignore[arg-type]
            assert cli.order.index(f"acme/stamps/{upstream.stack('prod')}") < cli.order.index(stack)
    s = "acme/stamps/prod.cell.banking.eastus"
    # Created on first use without selecting it locally, then one remote update of the branch's project.
    assert cli.of(s) == [
        ["stack", "--stack", s],
        ["stack", "init", s, "--no-select"],
        ["up", "--yes", "--skip-preview", "--remote", URL, "--remote-git-repo-dir", "infra/stamps",
         "--remote-git-branch", "refs/heads/main", "--remote-inherit-settings", "--exec-kind", "auto.local",
         "--stack", s],
        ["stack", "output", "--json", "--stack", s],
        ["stack", "output", "--json", "--show-secrets", "--stack", s],
        ["stack", "history", "--json", "--page-size", "1", "--page", "1", "--stack", s],
    ]
    assert not [c for c in cli.calls if "--policy-pack" in c or "--config-file" in c]  # refused with --remote
    assert not (project / ".stamps" / "fleetrun-prod-deploy.json").exists()


def test_a_commit_pins_every_stack_and_the_project_root_needs_no_repo_dir(project: Path, cli: RemoteCLI) -> None:
    commit = "0123456789abcdef0123456789abcdef01234567"
    cli.existing.add("acme/stamps/prod.global")
    assert deploy(project, "--git-commit", commit, "--only", "global", "--no-policy") == 0
    up = next(c for c in cli.calls if c[0] == "up")
    assert up[3:7] == ["--remote", URL, "--remote-git-commit", commit]
    assert "--remote-git-repo-dir" not in up and "--remote-git-branch" not in up
    assert ["stack", "init", "acme/stamps/prod.global", "--no-select"] not in cli.calls


def test_a_remote_failure_stops_the_run_and_the_rerun_resumes(project: Path, cli: RemoteCLI,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    failing = "acme/stamps/prod.cell.banking.westus"
    cli.fail.add(failing)
    assert deploy(project, "--git-branch", "main", "--parallel", "1", "--no-policy") == 1
    assert "prod.cell.banking.westus failed" in "".join(capsys.readouterr())
    assert not [s for s in cli.order if s.split(".")[1] in ("edge", "routing", "api", "tenants")]
    journal = json.loads((project / ".stamps" / "fleetrun-prod-deploy.json").read_text())
    done = set(journal["done"])
    assert {f"acme/stamps/{s}" for s in done} == set(cli.order) - {failing}
    cli.fail.clear()
    cli.order.clear()
    assert deploy(project, "--git-branch", "main", "--no-policy") == 0
    assert not {f"acme/stamps/{s}" for s in done} & set(cli.order)
    assert failing in cli.order and "acme/stamps/prod.routing" in cli.order


def test_the_policy_pack_runs_on_the_plans_before_any_stack_is_queued(project: Path, cli: RemoteCLI,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    (project / "policy").symlink_to(ROOT / "policy")
    assert deploy(project, "--git-branch", "main", "--only", "cell.banking.eastus") == 0
    out = capsys.readouterr().out
    assert "policy pack" in out and "prod.cell.banking.eastus" in out
    assert out.index("policy pack") < out.index("[1/1] deploy prod.cell.banking.eastus")
    assert cli.order == ["acme/stamps/prod.cell.banking.eastus"]


@pytest.mark.parametrize(("argv", "arg"), [
    (["--stack", "prod", "--git-branch", "main"], "--stack"),
    (["--git-url", "file:///tmp/repo", "--git-branch", "main"], "--git-url"),
    (["--git-branch", "main", "--git-commit", "0" * 40], "--git-branch, --git-commit"),
    (["--git-commit", "abc123"], "--git-commit"),
    (["--git-branch", "main", "--git-repo-dir", "../elsewhere"], "--git-repo-dir"),
    ([], "--git-branch or --git-commit"),  # the project copy is no git checkout: nothing to default to
])
def test_bad_remote_arguments_are_refused_before_any_stack_runs(project: Path, cli: RemoteCLI, argv: list[str],
                                                                arg: str, capsys: pytest.CaptureFixture[str]) -> None:
    code = ops_main(["deploy", "--project-dir", str(project), "--engine", "deployments", "--stack", "acme/prod",
                     "--git-url", URL, *argv], runner_factory=Fleet().factory)
    assert code == 2 and not cli.calls
    assert arg in capsys.readouterr().err


def test_git_arguments_without_the_deployments_engine_are_refused(project: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    fleet = Fleet()
    assert ops_main(["deploy", "--project-dir", str(project), "--git-url", URL],
                    runner_factory=fleet.factory) == 2
    assert "--git-url" in capsys.readouterr().err and not fleet.order


DENY_ALL = '''from pulumi_policy import EnforcementLevel, PolicyPack, ResourceValidationPolicy

PolicyPack("deny-all", enforcement_level=EnforcementLevel.MANDATORY, policies=[ResourceValidationPolicy(
    name="deny-all", description="Refuses every resource.",
    validate=lambda args, report_violation: report_violation("refused on purpose"))])
'''


def test_a_mandatory_violation_queues_no_stack(project: Path, cli: RemoteCLI,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    pack = project / "policy"
    pack.mkdir()
    (pack / "PulumiPolicy.yaml").write_text(f"runtime:\n  name: python\n  options:\n    virtualenv: {ROOT / '.venv'}\n"
                                            "version: 0.0.1\n")
    (pack / "__main__.py").write_text(DENY_ALL)
    assert deploy(project, "--git-branch", "main", "--only", "global") == 3
    assert "no stack was queued" in capsys.readouterr().err
    assert not cli.order and not [c for c in cli.calls if "--stack" in c]


def test_without_a_branch_the_checked_out_commit_and_the_projects_place_in_the_repo_are_deployed(
        project: Path, cli: RemoteCLI, capsys: pytest.CaptureFixture[str]) -> None:
    repo = project.parent
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@example.com"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "project"], check=True)
    subprocess.run([*git, "commit", "-qm", "fleet"], check=True)
    head = subprocess.run([*git, "rev-parse", "HEAD"], check=True, capture_output=True, text=True).stdout.strip()
    (project / "Pulumi.prod.yaml").write_text((project / "Pulumi.prod.yaml").read_text() + "\n")
    assert deploy(project, "--only", "global", "--no-policy") == 0
    up = next(c for c in cli.calls if c[0] == "up")
    assert up[3:9] == ["--remote", URL, "--remote-git-repo-dir", "project", "--remote-git-commit", head]
    assert f"uncommitted changes here are not deployed: Pulumi Deployments deploys commit {head[:12]}" in \
        capsys.readouterr().out.replace("\n", " ")
