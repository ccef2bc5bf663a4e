"""Shared fixtures: the prod plan (computed once per session) and throwaway stack config files."""

from __future__ import annotations

import copy
import shutil
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


_PLANS: dict[str, Plan] = {}


def cached_plan(project_dir: Path, stack: str, config_file: Path | None = None) -> Plan:
    """Plans keyed by the stack file's text (the code is the same for every project copy): each distinct
    config is planned once per test session. Pass as `OfflineRunner(plan_stack=cached_plan)`."""
    text = Path(config_file or Path(project_dir) / f"Pulumi.{stack}.yaml").read_text()
    if text not in _PLANS:
        _PLANS[text] = plan_stack(project_dir, stack, config_file=config_file)
    return _PLANS[text]


@pytest.fixture(scope="session")
def prod_plan() -> Plan:
    return cached_plan(ROOT, "prod")


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A copy of the project whose stack file playbooks may edit; the real Pulumi.prod.yaml stays untouched."""
    dest = tmp_path / "project"
    dest.mkdir()
    for name in ("Pulumi.yaml", "Pulumi.prod.yaml", "__main__.py"):
        shutil.copy(ROOT / name, dest / name)
    (dest / "stamps").symlink_to(ROOT / "stamps")
    return dest


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
