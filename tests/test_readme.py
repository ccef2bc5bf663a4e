"""README (point 11 of "Operators can trust every run"): its links stay inside the repository and resolve, and
the commands it tells an operator to paste are ones the CLIs accept."""

from __future__ import annotations

import re
import shlex

from ops.cli import build_parser as ops_parser
from tests.conftest import ROOT

README = (ROOT / "README.md").read_text(encoding="utf-8")


def test_readme_links_resolve_inside_the_repository() -> None:
    links = re.findall(r"\]\(([^)\s]+)\)", README)
    local = [link.split("#", 1)[0] for link in links if not link.startswith(("http://", "https://", "#"))]
    assert "docs/OPERATIONS_GUIDE.md" in local, "the runbook is linked inside the repository"
    assert [link for link in local if not (ROOT / link).exists()] == []


def test_the_readmes_sqlite_migration_tryout_is_a_command_stamps_ops_accepts() -> None:
    section = README.split("### Trying a migration on SQLite", 1)[1].split("\n## ", 1)[0]
    [command] = [c for c in re.findall(r"\.venv/bin/stamps-ops (.+?)(?:\n(?!\s)|\n```)", section.replace("\\\n", " "))]
    args = ops_parser().parse_args(shlex.split(command))
    assert (args.playbook, args.runner, args.source_url) == ("migrate", "offline", "sqlite:////tmp/shared.db")
