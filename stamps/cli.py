"""`stamps` command line: one subcommand module per verb under `stamps/commands/`.

Exit codes (`stamps.errors`): 0 success, 2 bad input (config, arguments, files), 3 policy violation, 1 an
unexpected failure (one line here; the traceback is in the run's log file). Every run with a project
directory writes a log under `<project>/.stamps/logs/` (secrets redacted); `-v` also shows it on stderr.
A closed pipe (`stamps schema | head`) ends quietly.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from stamps.errors import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_POLICY,
    EXIT_USAGE,
    StampsError,
    UsageError,
    clip_message,
)

# Each module exposes `register(subparsers)`; the parser it adds sets `func(args) -> int`.
COMMANDS: tuple[str, ...] = ("plan", "routes", "schema", "capacity", "alerts", "dashboards", "topology", "policy",
                             "stacks")

__all__ = ["COMMANDS", "EXIT_OK", "EXIT_POLICY", "EXIT_USAGE", "UsageError", "build_parser", "main"]


class _Parser(argparse.ArgumentParser):
    """argparse's own errors become UsageError: one line, exit 2, the same way as every other bad input."""

    def error(self, message: str) -> Any:  # type: ignore[override]
        raise UsageError(f"{self.prog}: {message}")


def _verbose(parser: argparse.ArgumentParser, default: Any) -> None:
    parser.add_argument("-v", "--verbose", action="count", default=default,
                        help="log to stderr as well as to the run's log file (twice: debug)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="stamps", description="Stamps pattern on Azure: offline plan, dashboards, topology, policy."
    )
    _verbose(parser, 0)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_Parser)
    for name in COMMANDS:
        importlib.import_module(f"stamps.commands.{name}").register(sub)
    for p in sub.choices.values():
        if not any("--verbose" in a.option_strings for a in p._actions):
            _verbose(p, argparse.SUPPRESS)  # `stamps plan -v` and `stamps -v plan` both work
    return parser


def _log_dir(args: argparse.Namespace) -> Path | None:
    project = Path(getattr(args, "project_dir", None) or ".")
    return project / ".stamps" / "logs" if (project / "Pulumi.yaml").is_file() else None


def main(argv: Sequence[str] | None = None) -> int:
    from stamps.runlog import RunLog
    from stamps.terminal import quiet_broken_pipe

    argv = list(sys.argv[1:] if argv is None else argv)
    log: RunLog | None = None
    code, detail = EXIT_FAILED, ""
    try:
        args = build_parser().parse_args(argv)
        log = RunLog(_log_dir(args), "stamps", args.command, argv, verbose=args.verbose)
        code = int(args.func(args))
        sys.stdout.flush()
    except BrokenPipeError:
        code = quiet_broken_pipe()
    except StampsError as err:
        code = err.exit_code
        print(f"error: {clip_message(str(err))}", file=sys.stderr)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        code = EXIT_INTERRUPTED
    except Exception as err:  # the one place an unexpected error becomes an exit code
        first = (str(err).splitlines() or [""])[0][:300]
        print(f"failed: unexpected {type(err).__name__}: {first}", file=sys.stderr)
        code, detail = EXIT_FAILED, "".join(traceback.format_exception(err))
    finally:
        if log is not None:
            log.finish(code, error=detail)
            if detail and log.path is not None:
                print(f"traceback in {log.path}", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
