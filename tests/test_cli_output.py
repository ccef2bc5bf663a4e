"""Output like the tools beside it: `stamps plan --against` reads like `pulumi preview`, one resource count
everywhere, readable widths off a terminal, one-line credential failures, a redacted log file per run, and
error hints that name flags which exist."""

from __future__ import annotations

import argparse
import io
import logging
import re
import tokenize
from pathlib import Path

import pytest

from ops.cli import build_parser as ops_parser
from ops.runner import OfflineRunner
from ops.stackconfig import StackConfigFile
from stamps.cli import build_parser as stamps_parser
from stamps.cli import main as stamps_main
from stamps.offline.plan import SECRET, Plan, diff_plans
from stamps.offline.render import print_diff, resource_count, summary
from stamps.runlog import RunLog, redact
from stamps.terminal import READABLE_WIDTH, make_console, width_for
from tests.conftest import ROOT, cached_plan
from tests.test_ops_playbooks import Ops


def _failover_plan(tmp_path: Path, stack_file) -> tuple[Path, Path]:  # type: ignore[no-untyped-def]
    before = tmp_path / "prod.plan.json"
    cached_plan(ROOT, "prod").write(before)
    def fail_over(config: dict) -> None:  # type: ignore[type-arg]
        next(r for r in config["stamps:regions"] if r["name"] == "eastus")["servingFrom"] = "dr"

    variant = stack_file(fail_over)
    return before, variant


def test_plan_against_reads_like_pulumi_preview(  # type: ignore[no-untyped-def]
        tmp_path: Path, stack_file, prod_plan: Plan, capsys: pytest.CaptureFixture[str]) -> None:
    before, variant = _failover_plan(tmp_path, stack_file)
    assert stamps_main(["plan", "--project-dir", str(ROOT), "--config-file", str(variant), "--against",
                        str(before), "--no-tree"]) == 0
    out = capsys.readouterr().out
    assert f"Previewing update (stamps/prod) against {before}" in out
    tree_lines = [line for line in out.splitlines() if "routing-tm-eastus update" in line]
    assert tree_lines and all("~ azure-native:trafficmanager:Profile routing-tm-eastus update" in x
                              for x in tree_lines)
    assert not any(re.search(r"\+ azure-native:trafficmanager:Profile routing-tm", x) for x in out.splitlines())
    assert "~ dnsConfig.ttl: 300 => 60" in out and "~ endpoints[0].priority: 1 => 2" in out
    assert "Outputs:" in out and '~ servingFrom.eastus: "eastus" => "westus"' in out
    total = resource_count(prod_plan)
    assert f"4 changes. {total - 4} unchanged" in out
    # The same count as the summary table and the offline runner give.
    console = make_console(file=io.StringIO())
    console.print(summary(prod_plan))
    custom = len(prod_plan.custom())
    assert f"{total} resources: {custom} resources in {total - custom - 1} components, and the stack" in \
        console.file.getvalue()  # type: ignore[attr-defined]


def _plan(**inputs: object) -> Plan:
    return Plan("stamps", "prod", [
        {"urn": "urn:pulumi:prod::stamps::stamps:cell:Cell::c", "type": "stamps:cell:Cell", "name": "c",
         "parent": None, "custom": False, "inputs": {}, "dependencies": []},
        {"urn": "urn:pulumi:prod::stamps::stamps:cell:Cell$azure-native:sql:Server::s",
         "type": "azure-native:sql:Server", "name": "s", "parent": "urn:pulumi:prod::stamps::stamps:cell:Cell::c",
         "custom": True, "inputs": dict(inputs), "dependencies": []},
    ], {"adminPassword": SECRET})


def test_updates_show_old_and_new_values_with_secrets_masked_and_replacements_marked() -> None:
    old = _plan(location="eastus", administratorLoginPassword="hunter2-old", version="12.0")
    new = _plan(location="westus", administratorLoginPassword="hunter2-new", version="12.0")
    buf = io.StringIO()
    print_diff(diff_plans(old, new), make_console(file=buf), earlier=old, plan=new)
    out = buf.getvalue()
    assert "+- azure-native:sql:Server s replace" in out, out
    assert '~ location: "eastus" => "westus"' in out
    assert "~ administratorLoginPassword: [secret] => [secret]" in out and "hunter2" not in out
    assert "+-1 to replace" in out and "1 change. 2 unchanged" in out


def test_the_offline_runner_counts_like_the_plan(project: Path) -> None:
    runner = OfflineRunner(project, "prod", plan_stack=cached_plan)
    cfg = StackConfigFile.for_stack(project, "prod")
    cfg.set("stamps:regions[name=eastus].servingFrom", "dr")
    result = runner.preview(cfg)
    plan = runner.plan(cfg)
    assert result.change_summary["update"] + result.change_summary["same"] == resource_count(plan)


def test_tables_are_readable_off_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("COLUMNS", raising=False)
    assert width_for(io.StringIO()) == READABLE_WIDTH
    monkeypatch.setenv("COLUMNS", "211")
    assert width_for(io.StringIO()) == 211

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    assert width_for(Tty()) is None  # rich measures the real terminal


CREDENTIAL_DUMP = """DefaultAzureCredential failed to retrieve a token from the included credentials.
Attempted credentials:
\tEnvironmentCredential: EnvironmentCredential authentication unavailable. Environment variables are not set.
\tManagedIdentityCredential: ManagedIdentityCredential authentication unavailable, no response from the IMDS endpoint.
\tSharedTokenCacheCredential: SharedTokenCacheCredential authentication unavailable. No accounts in the cache.
\tAzureCliCredential: Azure CLI not found on path
\tAzurePowerShellCredential: PowerShell is not installed
\tAzureDeveloperCliCredential: Azure Developer CLI could not be found.
To mitigate this issue, please refer to the troubleshooting guidelines here at https://aka.ms/azsdk/python/identity/defaultazurecredential/troubleshoot."""


def test_credential_chain_failures_are_one_line_without_verbose(tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    log = RunLog(tmp_path / "logs", "stamps-ops", "failover", ["failover"])
    logging.getLogger("azure.identity._credentials.chained").warning(CREDENTIAL_DUMP)
    log.finish(0)
    err = capsys.readouterr().err
    # azure-identity's own warning stays off the console: the reading code's error summarises it in one line
    # (ops.azure_monitor.token_failure; end to end: test_ops_truth.py, a failover with a failing credential).
    assert err == "", err
    assert log.path is not None and "AzureCliCredential: Azure CLI not found" in log.path.read_text()
    other = RunLog(tmp_path / "logs", "stamps-ops", "failover", ["failover"])
    logging.getLogger("stamps.cost").warning("first line\nsecond line")
    other.finish(0)
    err = capsys.readouterr().err  # any other multi-line warning: its first line, and where the rest is
    assert err.startswith("first line (+1 lines: see ") and len(err.strip().splitlines()) == 1, err
    verbose = RunLog(None, "stamps-ops", "failover", ["failover"], verbose=1)
    logging.getLogger("azure.identity").warning(CREDENTIAL_DUMP)
    verbose.finish(0)
    assert "AzureCliCredential" in capsys.readouterr().err


def test_each_run_writes_a_redacted_log_and_a_dry_run_writes_none(project: Path) -> None:
    ops = Ops(project)
    assert ops("isolate", "retail", "--reason", "x", "--dry-run") == 0
    assert not (project / ".stamps" / "logs").exists()
    assert ops("isolate", "retail", "--reason", "x") == 0
    logs = list((project / ".stamps" / "logs").glob("*-stamps-ops-isolate-*.log"))
    assert len(logs) == 1
    text = logs[0].read_text()
    assert "stamps-ops isolate retail" in text and "exit 0" in text and "isolate CELL retail" in text
    assert "secure: v1:" not in text


def test_redaction_covers_the_secrets_a_log_can_meet() -> None:
    text = redact("stamps:alertWebhookUrl: {secure: v1:abc==} https://hooks.slack.com/services/T1/B2/xyz "
                  "https://st.blob.core.windows.net/c?sv=2022&sig=s3cr3t Authorization: Bearer eyJ0eXAi.x.y "
                  "password=hunter2")
    for secret in ("v1:abc", "T1/B2/xyz", "s3cr3t", "eyJ0eXAi", "hunter2"):
        assert secret not in text


def test_verbose_works_on_both_clis(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert stamps_main(["-v", "schema"]) == 0
    assert stamps_main(["schema", "--verbose"]) == 0
    assert ops_parser().parse_args(["isolate", "retail", "--reason", "x", "-vv"]).verbose == 2


def _options(parser: argparse.ArgumentParser) -> set[str]:
    out: set[str] = set()
    for action in parser._actions:
        out |= set(action.option_strings)
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                out |= _options(sub)
    return out


def test_every_flag_a_hint_names_exists() -> None:
    """"re-run with `--x`" must name a flag of ours (the defect: "rerun with `--debug`", which did not exist)."""
    ours = _options(ops_parser()) | _options(stamps_parser())
    hints, bad = 0, []
    for path in [*Path(ROOT, "ops").rglob("*.py"), *Path(ROOT, "stamps").rglob("*.py")]:
        for tok in tokenize.generate_tokens(io.StringIO(path.read_text()).readline):
            if tok.type != tokenize.STRING:
                continue
            for m in re.finditer(r"(?i)\bre-?run\b[^\"'.;]{0,30}?\bwith\s+`?(--[a-z][a-z-]+)", tok.string):
                hints += 1
                if m.group(1) not in ours:
                    bad.append(f"{path.name}: {m.group(0)}")
    assert hints >= 3 and bad == []
