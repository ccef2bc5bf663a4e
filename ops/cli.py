"""`stamps-ops`: the runbook's playbooks as stack updates.

Exit codes: 0 done (or nothing to do), 1 failed (undone where possible), 2 bad input, 4 refused by a safety
check (healthy primary without --force, another playbook holds the stack, invalid resulting config).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from rich.console import Console

from ops.playbooks import PLAYBOOKS
from ops.playbooks.base import EXIT_FAILED, EXIT_REFUSED, EXIT_USAGE, Context, PlaybookError, default_actor
from ops.runner import AutomationRunner, OfflineRunner, Runner, RunnerError
from ops.stackconfig import StackLockedError


def common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--stack", default="prod", help="stack name (default: prod)")
    parser.add_argument("--project-dir", default=".", help="directory with Pulumi.yaml (default: .)")
    parser.add_argument("--dry-run", action="store_true", help="show the offline plan diff; change nothing")
    parser.add_argument("--runner", choices=("automation", "offline"), default="automation",
                        help="automation: pulumi up via the Automation API; offline: edit the stack file and "
                             "plan offline (GitOps: the pipeline deploys the merged file)")
    parser.add_argument("--actor", default=None, help="who runs this (recorded; default: $STAMPS_ACTOR or user)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="stamps-ops", description="Stamps runbook playbooks as stack updates.")
    sub = parser.add_subparsers(dest="playbook", required=True, metavar="PLAYBOOK")
    for name in PLAYBOOKS:
        importlib.import_module(f"ops.playbooks.{name}").register(sub, common)
    return parser


RunnerFactory = Callable[[Path, str, bool, str], Runner]


def default_runner(project_dir: Path, stack: str, dry_run: bool, kind: str) -> Runner:
    if dry_run or kind == "offline":
        return OfflineRunner(project_dir, stack)
    return AutomationRunner(project_dir, stack)


def main(argv: Sequence[str] | None = None, *, runner_factory: RunnerFactory = default_runner,
         **seams: Any) -> int:
    """Entry point; tests pass `runner_factory` and seams (metrics_factory, notifier_factory, http_get, ...)."""
    from stamps.config.errors import ConfigError

    args = build_parser().parse_args(argv)
    # Logs and CI have no terminal width: keep type and resource names whole there.
    console = Console(width=None if sys.stdout.isatty() else 160)
    project_dir = Path(args.project_dir).resolve()
    if not (project_dir / "Pulumi.yaml").is_file():
        print(f"error: --project-dir: {project_dir} has no Pulumi.yaml", file=sys.stderr)
        return EXIT_USAGE
    try:
        runner = runner_factory(project_dir, args.stack, args.dry_run, args.runner)
        ctx = Context(project_dir=project_dir, stack=args.stack, dry_run=args.dry_run, runner=runner,
                      console=console, actor=args.actor or default_actor(), runner_kind=args.runner,
                      playbook=args.playbook, force=bool(getattr(args, "force", False)), **seams)
        # Long playbooks (migrate) lock the stack around each of their updates instead.
        if args.dry_run or not getattr(args, "lock_stack", True):
            return int(args.func(ctx, args))
        # One playbook at a time per stack: a second one is refused, never interleaved.
        with ctx.locked():
            return int(args.func(ctx, args))
    except StackLockedError as err:
        print(f"refused: {err}", file=sys.stderr)
        return EXIT_REFUSED
    except PlaybookError as err:
        print(f"{'refused' if err.exit_code == EXIT_REFUSED else 'error'}: {err}", file=sys.stderr)
        return err.exit_code
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_USAGE
    except RunnerError as err:
        print(f"failed: {err}", file=sys.stderr)
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
