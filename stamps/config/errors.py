"""Config errors that name the offending stack-config key and what would be valid."""

from __future__ import annotations

from collections.abc import Iterable

import pulumi
from pydantic import ValidationError

from stamps.errors import UsageError


class ConfigError(UsageError, pulumi.RunError):
    """One or more invalid values in the stack config; each line names its key path (exit 2).

    A `UsageError` for the CLIs, and a `pulumi.RunError` so that under `pulumi preview/up` the language host
    prints the message alone, without a Python traceback.
    """

    def __init__(self, problems: Iterable[str]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))

    def __str__(self) -> str:
        return "invalid stack config:" + "".join(f"\n  - {p}" for p in self.problems)


def key_path(loc: Iterable[str | int], namespace: str = "stamps") -> str:
    """Render a pydantic location as the key path a user edits: `stamps:cells[2].region`."""
    parts = list(loc)
    if not parts:
        return f"{namespace}:"
    out = f"{namespace}:{parts[0]}"
    for part in parts[1:]:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out


def from_validation_error(err: ValidationError) -> ConfigError:
    """Turn pydantic's report into one line per problem, keyed by the config path."""
    problems = []
    for e in err.errors(include_url=False):
        loc = [p for p in e["loc"] if not (isinstance(p, str) and p.startswith("function-"))]
        msg = e["msg"]
        # pydantic prefixes custom errors with "Value error, "; the key path says enough.
        msg = msg.removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            msg = "unknown key (check spelling; `stamps schema` lists the valid keys)"
        problems.append(f"{key_path(loc)}: {msg}")
    return ConfigError(problems)
