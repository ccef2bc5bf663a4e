"""`stamps` command line: one subcommand module per verb under `stamps/commands/`.

Exit codes: 0 success, 2 bad input (config, arguments, files), 3 policy violation.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

# Each module exposes `register(subparsers)`; the parser it adds sets `func(args) -> int`.
COMMANDS: tuple[str, ...] = ("plan", "routes", "schema", "capacity", "alerts", "dashboards", "topology", "policy")

EXIT_OK, EXIT_USAGE, EXIT_POLICY = 0, 2, 3


class UsageError(Exception):
    """Bad input from the user: printed as one message, exit code 2, no traceback."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="stamps", description="Stamps pattern on Azure: offline plan, dashboards, topology, policy."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"stamps.commands.{name}").register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from stamps.config.errors import ConfigError
    from stamps.offline.engine import StackFileError

    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except (ConfigError, StackFileError, UsageError) as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
