"""Shared fixtures: the prod plan (computed once per session) and throwaway stack config files."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from stamps.offline import Plan, plan_stack

ROOT = Path(__file__).resolve().parents[1]
PROD_FILE = ROOT / "Pulumi.prod.yaml"

StackFile = Callable[..., Path]


def prod_config() -> dict[str, Any]:
    """The prod stack file as data (a deep copy each call, safe to mutate)."""
    return copy.deepcopy(yaml.safe_load(PROD_FILE.read_text()))


@pytest.fixture(scope="session")
def prod_plan() -> Plan:
    return plan_stack(ROOT, "prod")


@pytest.fixture
def stack_file(tmp_path: Path) -> StackFile:
    """Write a variant of the prod stack file: `stack_file(lambda cfg: ...)` mutates `config:` in place."""
    counter = iter(range(1000))

    def make(mutate: Callable[[dict[str, Any]], Any] | None = None, doc: dict[str, Any] | None = None) -> Path:
        data = doc if doc is not None else prod_config()
        if mutate is not None:
            mutate(data["config"])
        path = tmp_path / f"Pulumi.variant{next(counter)}.yaml"
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        return path

    return make
