"""Bad input everywhere: every command fed garbage, wrong-kind JSON/YAML, empty files and out-of-range numbers
exits 2 with one message naming what is wrong, never a traceback, and never echoes a huge value in full."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from ops.cli import main as ops_main
from stamps.cli import main as stamps_main
from tests.conftest import ROOT, cached_plan, prod_config

HUGE = "x" * 5_000_000


def _yaml(doc: object) -> str:
    return yaml.safe_dump(doc, sort_keys=False)


def _prod(mutate) -> str:  # type: ignore[no-untyped-def]
    doc = prod_config()
    mutate(doc["config"])
    return _yaml(doc)


STACK_FILES: dict[str, str | bytes] = {
    "empty": "",
    "binary": bytes(range(256)) * 40,
    "top-level list": "- a\n- b\n",
    "top-level scalar": "just text\n",
    "config is a list": "config:\n  - 1\n",
    "duplicate keys": _yaml(prod_config()).replace("config:\n", "config:\n  stamps:tenants: []\n", 1),
    "yaml bomb": "config:\n  stamps:x: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n" + "".join(
        f"  stamps:y{i}: &b{i} [{', '.join(['*' + ('a' if i == 0 else f'b{i - 1}')] * 9)}]\n" for i in range(7)),
    "deep nesting": "config:\n  stamps:tags: " + "{a: " * 200 + "1" + "}" * 200 + "\n",
    "namespace typo": _prod(lambda c: c.update({"stmaps:owner": "x"})),
    "bool for int": _prod(lambda c: c["stamps:cells"][1].update({"capacity": True})),
    "huge value": _prod(lambda c: c.update({"stamps:owner": HUGE})),
    "unknown key": _prod(lambda c: c.update({"stamps:allowedRegion": ["eastus"]})),
}


def assert_clean_usage_error(rc: int, err: str, *names: str) -> None:
    assert rc == 2, err
    assert "Traceback" not in err and "Error:" not in err.split(":", 1)[0]
    assert len(err) < 4000, f"{len(err)} characters of error output"
    for name in names:
        assert name in err, err


@pytest.mark.parametrize("kind", list(STACK_FILES))
@pytest.mark.parametrize("command", ["plan", "capacity", "alerts", "topology", "dashboards", "stamps-ops"])
def test_every_command_refuses_a_bad_stack_file(command: str, kind: str, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    content = STACK_FILES[kind]
    if command == "stamps-ops":
        project = tmp_path / "project"
        project.mkdir()
        (project / "Pulumi.yaml").write_text("name: stamps\nruntime: python\n")
        path = project / "Pulumi.prod.yaml"
        path.write_bytes(content) if isinstance(content, bytes) else path.write_text(content)
        rc = ops_main(["isolate", "retail", "--reason", "x", "--runner", "offline", "--project-dir", str(project)])
    else:
        path = tmp_path / "Pulumi.fuzz.yaml"
        path.write_bytes(content) if isinstance(content, bytes) else path.write_text(content)
        extra = {"topology": ["--out", str(tmp_path / "t.svg")], "dashboards": ["--out", str(tmp_path / "d")],
                 "plan": ["--quiet"]}.get(command, [])
        rc = stamps_main([command, "--project-dir", str(ROOT), "--config-file", str(path), *extra])
    err = capsys.readouterr().err
    if kind == "empty" and command != "stamps-ops":
        assert rc == 2 and "Traceback" not in err  # an empty stack file lacks required keys
        return
    assert_clean_usage_error(rc, err)
    assert "x" * 1000 not in err


PLAN_FILES: dict[str, str | bytes] = {
    "empty": "",
    "binary": b"\x89PNG\r\n\x1a\n" + bytes(range(256)),
    "a list": "[]",
    "a string": '"plan"',
    "a number": "3",
    "no project": json.dumps({"stack": "prod", "resources": []}),
    "resources not a list": json.dumps({"project": "stamps", "stack": "prod", "resources": {}}),
    "resource of the wrong kind": json.dumps({"project": "stamps", "stack": "prod", "resources": [3]}),
    "resource missing inputs": json.dumps({"project": "stamps", "stack": "prod",
                                           "resources": [{"urn": "u", "type": "t", "name": "n", "custom": True}]}),
    "stack yaml instead": (ROOT / "Pulumi.prod.yaml").read_text(),
}


@pytest.mark.parametrize("kind", list(PLAN_FILES))
@pytest.mark.parametrize("argv", [("plan", "--quiet", "--against"), ("dashboards", "--plan"),
                                  ("policy", "check")])
def test_every_command_refuses_a_bad_plan_file(argv: tuple[str, ...], kind: str, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "bad.plan.json"
    content = PLAN_FILES[kind]
    path.write_bytes(content) if isinstance(content, bytes) else path.write_text(content)
    extra = ["--out", str(tmp_path / "d")] if argv[0] == "dashboards" else []
    rc = stamps_main([*argv, str(path), *extra, *(["--project-dir", str(ROOT)] if argv[0] == "plan" else [])])
    err = capsys.readouterr().err
    arg = {"plan": "--against", "dashboards": "--plan", "policy": "PLAN"}[argv[0]]
    assert_clean_usage_error(rc, err, arg, "not")


@pytest.mark.parametrize(("config", "named"), [
    ({"allowed-regions": {"allowedRegion": ["eastus"]}}, "allowedRegion"),
    ([], "expected an object of policy names"),
    ({"allowed-regions": "sometimes"}, "enforcement level"),
])
def test_policy_config_typos_are_refused(config: object, named: str, tmp_path: Path, prod_plan: object,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    plan = tmp_path / "prod.plan.json"
    prod_plan.write(plan)  # type: ignore[attr-defined]
    cfg = tmp_path / "policy.json"
    cfg.write_text(json.dumps(config))
    rc = stamps_main(["policy", "check", str(plan), "--config", str(cfg), "--pack", str(ROOT / "policy")])
    assert_clean_usage_error(rc, capsys.readouterr().err, named)


@pytest.mark.parametrize(("argv", "named"), [
    (("release", "1.5.0", "--wait", "-1"), "--wait"),
    (("release", "1.5.0", "--wait", "nan"), "--wait"),
    (("dr-drill", "--verify-timeout", "-5"), "--verify-timeout"),
    (("dr-drill", "--poll", "-1"), "--poll"),
    (("scale", "--dry-run", "--simulate", "retail:cpu=500"), "--simulate"),
    (("scale", "--dry-run", "--simulate", "retail:sql=-3"), "--simulate"),
    (("release", "1.5.0", "--health-url", "https://{nope}/health"), "--health-url"),
    (("release", "1.5.0", "--health-url", "https://{cell/health"), "--health-url"),
    (("release", "1.5.0", "--health-url", "{cell}"), "--health-url"),
    (("isolate", "x" * 5_000_000, "--reason", "x"), "CELL"),
    (("isolate",), "CELL"),
    (("no-such-playbook",), "PLAYBOOK"),
    (("failover", "--region", "eastus", "--stack", "a/b/c/d"), "--stack"),
    (("failover", "--region", "eastus", "--stack", "staging"), "--stack"),
])
def test_bad_arguments_exit_2_naming_the_argument(project: Path, argv: tuple[str, ...], named: str,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    before = (project / "Pulumi.prod.yaml").read_bytes()
    tail = [] if argv == ("no-such-playbook",) else ["--project-dir", str(project), "--runner", "offline"]
    rc = ops_main([*argv, *tail])
    assert_clean_usage_error(rc, capsys.readouterr().err, named)
    assert (project / "Pulumi.prod.yaml").read_bytes() == before


def test_capacity_of_an_unknown_stack_blames_stack_not_config_file(capsys: pytest.CaptureFixture[str]) -> None:
    rc = stamps_main(["capacity", "--project-dir", str(ROOT), "--stack", "staging"])
    err = capsys.readouterr().err
    assert_clean_usage_error(rc, err, "--stack: no stack 'staging'", "prod")
    assert "--config-file" not in err


@pytest.fixture(scope="module")
def plan_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("plan") / "plan.json"
    cached_plan(ROOT, "prod").write(path)
    return path


@pytest.mark.parametrize("argv", [["schema"], ["capacity", "--json"], ["alerts", "--catalog"], ["plan", "--no-tree"],
                                  ["policy", "check", "--json", "{plan}"]])
def test_a_closed_pipe_ends_quietly(argv: list[str], plan_file: Path) -> None:
    """`stamps schema | head -1`: no BrokenPipeError traceback, exit 0, as `cat` does.

    The reader is gone before the first byte (its end of the pipe is closed), so every write, rich's included,
    meets EPIPE: rich's own handler exits 1, which once made `alerts --catalog` and `plan --no-tree` fail.
    """
    import os

    read, write = os.pipe()
    os.close(read)
    try:
        proc = subprocess.run([sys.executable, "-m", "stamps.cli", *(a.format(plan=plan_file) for a in argv)],
                              stdout=write, stderr=subprocess.PIPE, cwd=ROOT, text=True, timeout=300)
    finally:
        os.close(write)
    assert "Traceback" not in proc.stderr and "BrokenPipe" not in proc.stderr, proc.stderr
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize(("argv", "named"), [
    (("migrate", "startup", "--to", "dedicated", "--source-url", "notaurl"), "--source-url"),
    (("migrate", "startup", "--to", "dedicated", "--source-url", "notaurl", "--dry-run"), "--source-url"),
    (("migrate", "startup", "--to", "dedicated", "--target-url", "foo://u:pw@h/db"), "--target-url"),
    (("purge-source", "startup", "--source-url", ""), "--source-url"),
    (("migrate-abandon", "startup", "--target-url", "sqlite"), "--target-url"),
])
def test_a_database_url_that_is_not_one_is_bad_input(project: Path, argv: tuple[str, ...], named: str,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    """Refused by the parser (exit 2, the argument named, what is valid), before any journal, lock or stack
    change, with a password in it hidden."""
    rc = ops_main([*argv, "--project-dir", str(project), "--runner", "offline"])
    err = capsys.readouterr().err
    assert_clean_usage_error(rc, err, named, "is not a database URL", "valid: a SQLAlchemy URL")
    assert "pw@" not in err
    assert not (project / ".stamps" / "migrations").exists()


@pytest.mark.parametrize("content", [b"", b"{", b"[1]", b"\xff\xfe\x00", b'"text"'])
def test_a_corrupt_state_file_is_bad_input_naming_it(project: Path, content: bytes,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    state = project / ".stamps" / "scale" / "prod.json"
    state.parent.mkdir(parents=True)
    state.write_bytes(content)
    rc = ops_main(["scale", "--dry-run", "--simulate", "retail:cpu=50", "--project-dir", str(project)])
    assert_clean_usage_error(rc, capsys.readouterr().err, str(state))
    assert state.read_bytes() == content


def _error_classes() -> list[type[BaseException]]:
    """Every exception class defined in stamps/, ops/ and policy/: each module that defines a class is imported
    (found by reading the source, so a new module cannot be missed; `__main__` runs the pack, so not that)."""
    import ast
    import importlib
    import inspect

    found = []
    for package in ("stamps", "ops", "policy"):
        for path in sorted((ROOT / package).rglob("*.py")):
            if path.name == "__main__.py" or not any(isinstance(n, ast.ClassDef)
                                                     for n in ast.parse(path.read_text()).body):
                continue
            module = importlib.import_module(".".join(path.relative_to(ROOT).with_suffix("").parts))
            found += [c for _, c in inspect.getmembers(module, inspect.isclass)
                      if issubclass(c, BaseException) and c.__module__ == module.__name__]
    return found


def test_every_error_class_has_the_one_root() -> None:
    """Library code raises; only the CLIs map to exit codes, through `StampsError.exit_code`. An error class
    outside the root would reach the CLI as 'unexpected' (exit 1, a traceback in the log)."""
    from stamps.config.errors import ConfigError
    from stamps.errors import OperationFailed, StampsError, UsageError

    classes = _error_classes()
    assert len(classes) > 20 and ConfigError in classes
    assert [c.__qualname__ for c in classes if not issubclass(c, StampsError)] == []
    # What the CLIs raise for bad input exits 2: config, stack files, placement, names, arguments.
    bad_input = {c.__name__: c for c in classes}
    for name in ("ConfigError", "StackFileError", "PlacementError", "NameError_", "PlaybookError",
                 "PolicyConfigError", "ChannelConfigError", "ConfigEditError"):
        assert issubclass(bad_input[name], UsageError) and bad_input[name].exit_code == 2, name
    assert issubclass(bad_input["MigrationError"], OperationFailed)
