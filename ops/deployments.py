"""Pulumi Deployments as the engine of a fleet run: each unit stack's update runs in Pulumi Cloud, from git.

Through the Automation API's remote workspace (`create_or_select_remote_stack_git_source`): the local CLI only
asks Pulumi Cloud to run `pulumi up` on a commit of the repository (`pulumi up --remote <url> ...`) and waits for
it, so the program, the fleet file and each stack's config are the ones in git, not in this checkout. The order,
waves, bound, stop-at-first-failure and journal stay `ops.fleetrun.run_stacks`'s; only the per-stack action
differs. What the remote path cannot do, and what stands in for it (README "One stack per unit"):

- `--policy-pack` and `--config-file` are refused with `--remote` by the CLI, and `RemoteStack.up` takes neither:
  the pack runs offline on every stack's plan before anything is queued (`deploy` does that), and Pulumi Cloud
  enforces it on the remote update itself only once published and enabled (`pulumi policy publish policy`).
- Credentials (Azure OIDC, ESC environments) and git auth for a private repository are the stack's deployment
  settings, which the Automation API cannot set (`pulumi deployment settings`, the Pulumi Cloud REST API
  `deployments/settings`, or the `pulumiservice.DeploymentSettings` resource); the remote workspace inherits them
  (`--remote-inherit-settings`).
- Stack names must be fully qualified (`org/project/stack`): the remote workspace refuses anything else.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from ops.runner import AutomationRunner, Changes, RunnerError, RunResult, _op_counts, _plain_outputs
from ops.stackconfig import ChangeSet
from stamps.errors import UsageError, clip

_COMMIT = re.compile(r"^[0-9a-f]{40}$")
_URL = re.compile(r"^(https://|ssh://|git@)[^\s]+$")


@dataclass(frozen=True)
class GitSource:
    """Where Pulumi Deployments takes the project from: one commit (or a branch's head) of a repository."""

    url: str
    branch: str | None = None  # refs/heads/<name>
    commit: str | None = None
    repo_dir: str | None = None  # the directory of Pulumi.yaml in the repository; None: its root

    @classmethod
    def from_args(cls, project_dir: Path, url: str | None, branch: str | None, commit: str | None,
                  repo_dir: str | None) -> GitSource:
        """Checked arguments; without --git-branch/--git-commit, the commit checked out in `project_dir`, so every
        stack of the run deploys the same source even if the branch moves meanwhile."""
        if not url:
            raise UsageError("--git-url: Pulumi Deployments needs the repository to deploy from "
                             "(e.g. --git-url https://github.com/acme/stamps.git)")
        if not _URL.match(url):
            raise UsageError(f"--git-url: {clip(url, 120)!r} is not a git URL (https://..., ssh://... or git@...)")
        if branch and commit:
            raise UsageError("--git-branch, --git-commit: give one of them (a branch's head, or one commit)")
        if commit is not None and not _COMMIT.match(commit):
            raise UsageError(f"--git-commit: {clip(commit, 60)!r} is not a full 40-hex commit hash")
        top = _git(project_dir, "rev-parse", "--show-toplevel")
        if not branch and not commit:
            commit = _git(project_dir, "rev-parse", "HEAD")
            if not commit:
                raise UsageError(f"--git-branch or --git-commit: {project_dir} is not a git checkout, so there is no "
                                 "commit to deploy by default; name the branch or the commit")
        if branch and not branch.startswith("refs/"):
            branch = f"refs/heads/{branch}"
        if repo_dir is None and top:
            rel = Path(project_dir).resolve().relative_to(Path(top).resolve()).as_posix()
            repo_dir = None if rel == "." else rel
        if repo_dir is not None and (repo_dir.startswith("/") or ".." in Path(repo_dir).parts):
            raise UsageError(f"--git-repo-dir: {clip(repo_dir, 120)!r} must be a path inside the repository")
        return cls(url, branch, commit, repo_dir or None)

    def describe(self) -> str:
        ref = self.branch or (self.commit or "")[:12]
        return f"{self.url} at {ref}" + (f", project in {self.repo_dir}/" if self.repo_dir else "")


def uncommitted(project_dir: Path) -> bool:
    """Whether the checkout has changes under `project_dir` that a deployment of its commit would not include."""
    return bool(_git(project_dir, "status", "--porcelain", "--", "."))


def _git(cwd: Path, *args: str) -> str:
    """One line of `git` output, or "" when git is missing or `cwd` is no checkout."""
    try:
        out = subprocess.run(["git", "-C", str(cwd), *args], capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.SubprocessError):
        return ""
    return out.stdout.strip() if out.returncode == 0 else ""


def qualify(stack: str, org: str, project: str) -> str:
    return f"{org}/{project}/{stack}"


def org_and_project(qualified_stack: str, project: str) -> tuple[str, str]:
    """(org, project) of `--stack ORG/NAME` or `ORG/PROJECT/NAME`; the remote workspace needs both."""
    parts = qualified_stack.split("/")
    if len(parts) == 1:
        raise UsageError(f"--stack: Pulumi Deployments needs the organization of the stacks: --stack ORG/{parts[0]} "
                         f"(or ORG/{project}/{parts[0]})")
    return parts[0], (parts[1] if len(parts) == 3 else project)


class DeploymentsRunner(AutomationRunner):
    """`up`, `preview` and `refresh` of one stack on Pulumi Deployments; outputs and history as for a local stack.

    The stack is created on first use, as a local unit stack is. Unsaved config changes and targets cannot travel
    (the update reads the committed stack file; `--config-file` and `--target` are refused with `--remote`).
    """

    def __init__(self, project_dir: str | Path, stack: str, source: GitSource, **kw: Any) -> None:
        super().__init__(project_dir, stack, create_missing=True, **kw)
        self.source = source

    def up(self, changes: Changes = None, targets: Sequence[str] | None = None) -> RunResult:
        return self._remote("up", changes, targets)

    def preview(self, changes: Changes = None, *, targets: Sequence[str] | None = None) -> RunResult:
        return self._remote("preview", changes, targets)

    def refresh(self, targets: Sequence[str] | None = None) -> RunResult:
        return self._remote("refresh", None, targets)

    def _remote(self, op: str, changes: Changes, targets: Sequence[str] | None) -> RunResult:
        if changes or targets:
            raise RunnerError(f"{op} of '{self.stack_name}' on Pulumi Deployments: a remote update deploys the "
                              "committed stack files as they are (the CLI refuses --config-file and --target with "
                              "--remote); commit the change, or use the local engine")
        stack = self._select()
        result = self._call(op, lambda: getattr(stack, op)(on_output=self._on_output))
        summary = _op_counts(result.change_summary if op == "preview" else result.summary.resource_changes)
        return RunResult(op, self.stack_name, ChangeSet(), summary, [], result.stdout,
                         _plain_outputs(result.outputs) if op == "up" else {})

    def _history(self, stack: Any) -> Any:
        return stack.history(page_size=10)  # a remote stack's history never shows secrets

    def _select(self) -> Any:
        if self._stack is None:
            from pulumi import automation as auto

            src = self.source
            # The stack's deployment settings (OIDC, ESC, git auth) apply; the source here overrides theirs.
            opts = auto.RemoteWorkspaceOptions(inherit_settings=True)
            try:
                remote = self._call("stack select", lambda: auto.create_or_select_remote_stack_git_source(
                    self.stack_name, src.url, branch=src.branch, commit_hash=src.commit, project_path=src.repo_dir,
                    opts=opts))
                self._stack = cast(Any, remote)
            except RunnerError:
                raise
            except Exception as err:  # the SDK's own checks (CLI without --remote, name not qualified) are bare
                raise RunnerError(f"Pulumi Deployments for stack '{self.stack_name}': {err}") from err
        return self._stack
