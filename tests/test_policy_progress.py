"""Policy checks show a progress line on a terminal (tested under a pseudo-terminal) and nothing off one:
`stamps policy check`, `stamps policy check --json`, and the check every playbook update runs.

As in tests/test_plan_progress.py, each run is a child process with stdout on a pty (or a pipe), and the line's
2-second delay is set to 0 in the child so a check of prod is long enough to show it.
"""

from __future__ import annotations

import json
import os
import pty
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

_CHILD = """
import sys
from stamps.offline import progress
progress.DELAY_S = 0.0
progress.INTERVAL_S = 0.01
from {module} import main
sys.exit(main(sys.argv[1:]))
"""
ANSI = re.compile(r"\x1b\[[0-9;]*m")  # colours of the report itself
LINE = re.compile(r"checking policies on (\S+): ([\d,]+) of ([\d,]+) resources analyzed")


def _child(module: str) -> str:
    return _CHILD.format(module=module)


def _run_on_pty(module: str, args: list[str], expect: int = 0) -> str:
    master, slave = pty.openpty()
    env = {**os.environ, "COLUMNS": "200", "TERM": "xterm"}
    proc = subprocess.Popen([sys.executable, "-c", _child(module), *args], cwd=REPO, env=env,
                            stdin=subprocess.DEVNULL, stdout=slave, stderr=subprocess.PIPE)
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    os.close(master)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == expect, err.decode()
    return b"".join(chunks).decode()


@pytest.fixture(scope="module")
def plan_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("plan") / "prod.plan.json"
    subprocess.run([sys.executable, "-m", "stamps.cli", "plan", "--quiet", "--out", str(out)], cwd=REPO,
                   check=True, capture_output=True, timeout=300)
    return out


def _drawn_then_erased(out: str, stack: str) -> str:
    """The counts drawn rise to every resource of the plan; the line is erased before the report; returns
    what came after it."""
    drawn, _, after = out.rpartition("\x1b[K")
    counts = [(m[1], int(m[2].replace(",", "")), int(m[3].replace(",", ""))) for m in LINE.finditer(drawn)]
    assert counts, out[:2000]
    assert {c[0] for c in counts} == {stack}
    assert [c[1] for c in counts] == sorted(c[1] for c in counts)
    assert counts[-1][1] <= counts[-1][2] and counts[-1][2] > 250
    assert "resources analyzed" not in after
    return ANSI.sub("", after)


def test_policy_check_on_a_terminal_draws_then_erases_the_line(plan_file: Path) -> None:
    out = _run_on_pty("stamps.cli", ["policy", "check", str(plan_file)])
    assert "passed:" in _drawn_then_erased(out, "prod")


def test_policy_check_json_on_a_terminal_still_prints_only_json_after_the_line(plan_file: Path) -> None:
    out = _run_on_pty("stamps.cli", ["policy", "check", "--json", str(plan_file)])
    after = _drawn_then_erased(out, "prod")
    assert json.loads(after.replace("\r\n", "\n"))[0]["stack"] == "prod"


def test_nothing_extra_when_stdout_is_not_a_terminal(plan_file: Path) -> None:
    proc = subprocess.run([sys.executable, "-c", _child("stamps.cli"), "policy", "check", "--json", str(plan_file)],
                          cwd=REPO, capture_output=True, text=True, timeout=300, check=True)
    assert "analyzed" not in proc.stdout + proc.stderr
    assert json.loads(proc.stdout)[0]["stack"] == "prod"


def test_the_policy_check_of_a_playbook_update_shows_the_line(tmp_path: Path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    for name in ("Pulumi.yaml", "Pulumi.prod.yaml", "__main__.py"):
        shutil.copy(REPO / name, project / name)
    for name in ("stamps", "policy"):
        (project / name).symlink_to(REPO / name)
    out = _run_on_pty("ops.cli", ["isolate", "retail", "--reason", "pentest", "--dry-run",
                                  "--project-dir", str(project)])
    drawn, _, after = out.rpartition("\x1b[K")
    assert LINE.search(drawn), out[:2000]
    assert re.search(r"planning prod: [\d,]+ resources registered", drawn), out[:2000]  # its offline plans too
    assert "resources analyzed" not in after and "would change" in ANSI.sub("", after)
