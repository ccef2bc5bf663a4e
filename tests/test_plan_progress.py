"""`stamps plan` shows a progress line on a terminal (tested under a pseudo-terminal) and nothing off one.

Each run is a child process with stdout on a pty (or a pipe). The line's 2-second delay is set to 0 in the
child (and its redraw interval shortened) so a plan of prod is long enough to show it.
"""

from __future__ import annotations

import os
import pty
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

_CHILD = """
import sys
from stamps.offline import progress
progress.DELAY_S = 0.0
progress.INTERVAL_S = 0.01
from stamps.cli import main
sys.exit(main(sys.argv[1:]))
"""


def _run_on_pty(args: list[str]) -> str:
    master, slave = pty.openpty()
    env = {**os.environ, "COLUMNS": "200", "TERM": "xterm"}
    proc = subprocess.Popen([sys.executable, "-c", _CHILD, *args], cwd=REPO, env=env, stdin=subprocess.DEVNULL,
                            stdout=slave, stderr=subprocess.PIPE)
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
    assert proc.returncode == 0, err.decode()
    return b"".join(chunks).decode()


def _run_piped(args: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", _CHILD, *args], cwd=REPO, capture_output=True, text=True,
                          timeout=300, check=True)


def test_progress_line_on_a_terminal_is_drawn_then_erased() -> None:
    out = _run_on_pty(["plan", "--no-tree"])
    assert "planning prod: " in out and " resources registered" in out
    # The last draw carries the final count; the line is erased before the plan's own output.
    drawn, _, after = out.rpartition("\x1b[K")
    counts = [int(part.split(": ")[1].split(" ")[0].replace(",", ""))
              for part in drawn.split("\r") if "resources registered" in part]
    assert counts == sorted(counts) and counts[-1] > 250
    assert "resources registered" not in after
    assert "resources in" in after


def test_progress_line_names_each_stack_when_several_are_planned(tmp_path: Path) -> None:
    prod = REPO / "Pulumi.prod.yaml"
    copy = tmp_path / "Pulumi.copy.yaml"
    copy.write_text(prod.read_text())
    out = _run_on_pty(["plan", "--no-tree", "--config-file", str(prod), "--config-file", str(copy)])
    assert "planning Pulumi.prod.yaml (1/2): " in out
    assert "planning Pulumi.copy.yaml (2/2): " in out


def test_nothing_extra_when_stdout_is_not_a_terminal() -> None:
    proc = _run_piped(["plan", "--no-tree"])
    assert "registered" not in proc.stdout + proc.stderr
    assert "\r" not in proc.stdout and "\x1b" not in proc.stdout
    assert "resources in" in proc.stdout


def test_quiet_prints_no_progress_even_on_a_terminal() -> None:
    out = _run_on_pty(["plan", "--quiet"])
    assert out == ""
