"""`stamps-ops`: the runbook's playbooks as stack updates.

Exit codes (`stamps.errors`): 0 done (or nothing to do), 1 failed (undone where possible; the message says
what is left), 2 bad input, 3 the policy pack refused the change (nothing changed), 4 refused by a safety
check (healthy primary without --force, another playbook holds the stack, invalid resulting config), 5 the
change is deployed but a notification channel failed (the audit line is written). Every run but a dry run
writes a log file under `.stamps/logs/` (secrets redacted); `-v` shows it on the console too, `-vv` adds the
Pulumi CLI's debug log.
"""

from __future__ import annotations

import argparse
import importlib
import math
import sys
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ops.playbooks import PLAYBOOKS
from ops.playbooks.base import Context, default_actor
from ops.runner import AutomationRunner, OfflineRunner, PulumiCommandLike, Runner
from stamps.config.stackfile import bare_stack, read_stack_doc, stack_file, stacks_in
from stamps.errors import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_NOTIFY_FAILED,
    EXIT_REFUSED,
    EXIT_USAGE,
    StampsError,
    clip_message,
)
from stamps.errors import UsageError as _UsageError
from stamps.runlog import RunLog
from stamps.stacks.units import split_stack
from stamps.terminal import make_console, quiet_broken_pipe


def common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--stack", default="prod",
                        help="stack name: NAME, ORG/NAME or ORG/PROJECT/NAME (default: prod)")
    parser.add_argument("--project-dir", default=".", help="directory with Pulumi.yaml (default: .)")
    parser.add_argument("--dry-run", action="store_true", help="show the offline plan diff; change nothing")
    parser.add_argument("--runner", choices=("automation", "offline"), default="automation",
                        help="automation: pulumi up via the Automation API; offline: edit the stack file and "
                             "plan offline (GitOps: the pipeline deploys the merged file)")
    parser.add_argument("--actor", default=None, help="who runs this (recorded; default: $STAMPS_ACTOR or user)")
    parser.add_argument("-v", "--verbose", action="count", default=0,
                        help="show the log on the console; twice: also the Pulumi CLI's debug log")
    parser.add_argument("--no-policy", dest="policy", action="store_false",
                        help="skip the policy pack check before updates (the CLI still enforces packs it is "
                             "configured with)")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # type: ignore[override]
        raise _UsageError(f"{self.prog}: {message}")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="stamps-ops", description="Stamps runbook playbooks as stack updates.")
    sub = parser.add_subparsers(dest="playbook", required=True, metavar="PLAYBOOK", parser_class=_Parser)
    for name in PLAYBOOKS:
        importlib.import_module(f"ops.playbooks.{name}").register(sub, common)
    return parser


RunnerFactory = Callable[[Path, str, bool, str], Runner]


def default_runner(project_dir: Path, stack: str, dry_run: bool, kind: str, *,
                   pulumi_command: PulumiCommandLike | None = None) -> Runner:
    """The runner every playbook gets: the project's policy pack goes to every update the Automation API runs
    (`--policy-pack`). `pulumi_command` replaces the CLI found on PATH (tests bind a stand-in with partial)."""
    if dry_run or kind == "offline":
        return OfflineRunner(project_dir, stack)
    pack = project_dir / "policy"
    return AutomationRunner(project_dir, stack, policy_pack=pack if (pack / "PulumiPolicy.yaml").is_file() else None,
                            create_missing=split_stack(bare_stack(stack))[1] is not None,
                            pulumi_command=pulumi_command)


def check_numbers(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Every numeric argument of every playbook is a count, a duration or a share: finite and not negative."""
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    chosen = sub.choices[args.playbook]
    for action in chosen._actions:
        value = getattr(args, action.dest, None)
        if action.type in (int, float) and isinstance(value, int | float):
            flag = action.option_strings[-1] if action.option_strings else action.dest
            if not math.isfinite(value) or value < 0:
                raise _UsageError(f"{flag}: {value} must be a finite number of 0 or more")


def main(argv: Sequence[str] | None = None, *, runner_factory: RunnerFactory = default_runner,
         **seams: Any) -> int:
    """Entry point; tests pass `runner_factory` and seams (metrics_factory, notifier_factory, http_get, ...)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    console = make_console(record=True)
    log: RunLog | None = None
    ctx: Context | None = None
    code, error = EXIT_FAILED, ""
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        check_numbers(parser, args)
        bare = bare_stack(args.stack)
        project_dir = Path(args.project_dir).resolve()
        if not (project_dir / "Pulumi.yaml").is_file():
            raise _UsageError(f"--project-dir: {project_dir} has no Pulumi.yaml")
        if not stack_file(project_dir, bare).is_file():
            raise _UsageError(f"--stack: no stack {args.stack!r} in {project_dir} (no {stack_file('', bare)}); "
                              f"stacks there: {', '.join(stacks_in(project_dir)) or '(none)'}")
        read_stack_doc(stack_file(project_dir, bare))  # a broken stack file is bad input before anything runs
        from ops.notify import redact as redact_registered

        log = RunLog(None if args.dry_run else project_dir / ".stamps" / "logs", "stamps-ops", args.playbook, argv,
                     verbose=args.verbose, redactors=[redact_registered])
        runner = runner_factory(project_dir, args.stack, args.dry_run, args.runner)
        if args.verbose and isinstance(runner, AutomationRunner):
            runner.verbose = args.verbose
        pack = project_dir / "policy"
        ctx = Context(project_dir=project_dir, stack=bare, dry_run=args.dry_run, runner=runner,
                      console=console, actor=args.actor or default_actor(), runner_kind=args.runner,
                      playbook=args.playbook, force=bool(getattr(args, "force", False)), qualified_stack=args.stack,
                      policy_pack=pack if args.policy and (pack / "PulumiPolicy.yaml").is_file() else None,
                      stack_runner=lambda s: runner_factory(project_dir, s, args.dry_run, args.runner),
                      **seams)
        ctx.preflight()
        # Long playbooks (migrate) lock the stack around each of their updates instead.
        if args.dry_run or not getattr(args, "lock_stack", True):
            code = int(args.func(ctx, args))
        else:
            # One playbook at a time per stack: a second one is refused, never interleaved.
            with ctx.locked():
                code = int(args.func(ctx, args))
        if code == 0 and ctx.notify_failures:
            print(f"done, but notification failed: {'; '.join(ctx.notify_failures)}. The change is deployed "
                  "and recorded in the audit log; tell the channels by hand.", file=sys.stderr)
            code = EXIT_NOTIFY_FAILED
    except BrokenPipeError:
        code = quiet_broken_pipe()
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        code = EXIT_INTERRUPTED
    except Exception as err:
        code, error = _report(err, ctx)
    finally:
        if log is not None:
            log.finish(code, console.export_text(), error)
            if code not in (0,) and log.path is not None:
                print(f"log: {log.path}", file=sys.stderr)
    return code


def _report(err: Exception, ctx: Context | None) -> tuple[int, str]:
    if isinstance(err, StampsError):
        code = err.exit_code
        word = {EXIT_REFUSED: "refused", EXIT_USAGE: "error", 3: "refused by policy"}.get(code, "failed")
        message = str(err)
    else:
        code, word = EXIT_FAILED, "failed"
        message = f"unexpected {type(err).__name__}: {(str(err).splitlines() or [''])[0][:300]}"
    if ctx is not None and ctx.deployed and code != 0:
        message += "\nthis run deployed: " + "; ".join(ctx.deployed) + " (the stack file records it)"
    print(f"{word}: {clip_message(message)}", file=sys.stderr)
    detail = "".join(traceback.format_exception(err)) if not isinstance(err, StampsError) else ""
    return code, detail


if __name__ == "__main__":
    sys.exit(main())
