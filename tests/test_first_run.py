"""A fresh clone works with the real Pulumi CLI: what the CLI reads from the project files, and how the loader
reads values the way the CLI hands them over (every value a string, objects and lists as JSON text)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from importlib import metadata
from typing import Any

import pytest
import yaml

from stamps.config.errors import ConfigError
from stamps.config.loader import load_environment, read_pulumi_config
from stamps.offline.plan import SECRET, Plan
from tests.conftest import ROOT, prod_config


def _as_cli(cfg: dict[str, Any]) -> dict[str, str]:
    """The CLI's PULUMI_CONFIG: strings as-is, everything else as JSON text."""
    return {k: v if isinstance(v, str) else json.dumps(v) for k, v in cfg.items()}


@pytest.fixture
def cli_config(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    from pulumi.runtime.config import set_all_config

    def use(cfg: dict[str, Any], secret: list[str] | None = None) -> None:
        monkeypatch.setenv("PULUMI_CONFIG", json.dumps(_as_cli(cfg)))
        monkeypatch.setenv("PULUMI_CONFIG_SECRET_KEYS", json.dumps(secret or []))

    set_all_config({}, [])
    yield use
    set_all_config({}, [])


def test_the_stack_file_ships_no_salt_and_no_ciphertext() -> None:
    # The salt forces the passphrase provider on every backend and nobody knows the passphrase (PULUMI_REVIEW #2).
    doc = yaml.safe_load((ROOT / "Pulumi.prod.yaml").read_text())
    assert "encryptionsalt" not in doc and "secretsprovider" not in doc and "encryptedkey" not in doc
    assert not [k for k, v in doc["config"].items() if isinstance(v, dict) and "secure" in v]


def test_the_offline_plan_still_wires_both_webhooks_as_secrets(prod_plan: Plan) -> None:
    hooks = [r["inputs"]["webhookReceivers"] for r in prod_plan.by_type("azure-native:monitor:ActionGroup")
             if r["inputs"].get("webhookReceivers")]
    assert hooks and all(h["serviceUri"] == SECRET for receivers in hooks for h in receivers)


def test_pulumi_install_gets_the_project_and_its_dependencies() -> None:
    # toolchain: pip installs requirements.txt only ("If requirements.txt doesn't exist, exit early").
    project = yaml.safe_load((ROOT / "Pulumi.yaml").read_text())
    assert project["runtime"]["options"]["toolchain"] == "pip"
    lines = [ln.strip() for ln in (ROOT / "requirements.txt").read_text().splitlines()
             if ln.strip() and not ln.startswith("#")]
    assert lines == ["-e ."]


def test_the_workflow_pins_the_cli_and_caches_plugins() -> None:
    wf = yaml.safe_load((ROOT / ".github/workflows/stamps.yml").read_text())
    steps = wf["jobs"]["preview"]["steps"]
    action = next(s for s in steps if str(s.get("uses", "")).startswith("pulumi/actions@"))
    assert action["with"]["pulumi-version"] == "${{ env.PULUMI_VERSION }}"
    # The CLI and the SDK in the venv release in lockstep; CI runs the pair the tests run with.
    assert wf["env"]["PULUMI_VERSION"] == metadata.version("pulumi")
    assert wf["env"]["AZURE_NATIVE_VERSION"] == metadata.version("pulumi-azure-native")
    cache = next(s for s in steps if str(s.get("uses", "")).startswith("actions/cache@"))
    assert cache["with"]["path"] == "~/.pulumi/plugins"
    assert "AZURE_NATIVE_VERSION" in cache["with"]["key"]
    # No job needs a passphrase any more: nothing in the stack file is passphrase-encrypted.
    assert "PULUMI_CONFIG_PASSPHRASE" not in (ROOT / ".github/workflows/stamps.yml").read_text()


@pytest.mark.parametrize(("key", "value"), [("costCenter", "4200"), ("nameSuffix", "12345"), ("owner", "1234")])
def test_numeric_looking_strings_stay_strings(cli_config: Any, key: str, value: str) -> None:
    cfg = prod_config()["config"]
    cfg[f"stamps:{key}"] = value
    cli_config(cfg)
    values = read_pulumi_config()
    assert values[key] == value
    env = load_environment("stamps", "prod", values)
    assert getattr(env.config, {"costCenter": "cost_center", "nameSuffix": "name_suffix"}.get(key, key)) == value


def test_structured_values_and_scalars_of_other_types_decode_by_field_type(cli_config: Any) -> None:
    cfg = prod_config()["config"]
    cli_config(cfg)
    values = read_pulumi_config()
    assert isinstance(values["cells"], list) and isinstance(values["tls"], dict)
    assert values["environment"] == "prod"
    env = load_environment("stamps", "prod", values)
    assert env.config.cells[0].name == "banking"


def test_a_config_key_made_secret_is_refused_by_name(cli_config: Any) -> None:
    cfg = prod_config()["config"]
    cli_config(cfg, secret=["stamps:costCenter"])
    with pytest.raises(ConfigError) as info:
        read_pulumi_config()
    assert str(info.value).startswith("invalid stack config:\n  - stamps:costCenter: set as a secret")
    assert cfg["stamps:costCenter"] not in str(info.value)


@pytest.mark.parametrize("reader", ["playbook", "capacity", "topology"])
def test_every_stack_file_reader_uses_the_programs_decoder(project: Any, reader: str) -> None:
    """`costCenter: "4200"` in the stack file is the string "4200" for the playbooks and commands too, not the
    number 4200 (which the model would refuse): they all decode with `stamps.config.loader.decode`."""
    from ops.playbooks.base import Context
    from ops.runner import OfflineRunner
    from stamps.commands.capacity import load_stack_environment
    from stamps.monitoring.topology import environment_from_stack

    doc = prod_config()
    doc["config"].update({"stamps:costCenter": "4200", "stamps:owner": "1234"})
    (project / "Pulumi.prod.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    if reader == "playbook":
        ctx = Context(project_dir=project, stack="prod", dry_run=True, runner=OfflineRunner(project, "prod"))
        env = ctx.environment()
    elif reader == "capacity":
        env = load_stack_environment(project, "prod")
    else:
        env = environment_from_stack(project, "prod")
    assert (env.config.cost_center, env.config.owner) == ("4200", "1234")
    assert [c.name for c in env.config.cells][:1] == ["banking"]  # objects and lists still decode
