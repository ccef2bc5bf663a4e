"""Run a policy pack the way the Pulumi CLI does, and talk the analyzer protocol to it.

Launch (pulumi/sdk/go/common/resource/plugin/analyzer_plugin.go, `NewPolicyAnalyzer`): for a Python pack
the CLI runs its `pulumi-analyzer-policy-python` shim with cwd = the pack directory and the arguments
`<engine-address> . -<option>=<value>...` (PulumiPolicy.yaml's runtime options). The shim resolves
`-virtualenv` against the pack directory, puts the venv first on PATH, unsets PYTHONHOME and runs
`<venv>/bin/python -u -m pulumi.policy <engine-address> .`, which runs the directory's `__main__.py`.
The environment adds PULUMI_PROJECT, PULUMI_STACK, PULUMI_DRY_RUN (and PULUMI_CONFIG, the stack config
as JSON, when there is one). The pack prints its gRPC port on stdout.

The engine address is real here too: a small Engine service records the pack's Log calls.

Protocol, in the CLI's order: Handshake and ConfigureStack (older packs answer UNIMPLEMENTED, which the
CLI tolerates), GetAnalyzerInfo, GetPluginInfo, Configure (the reconciled policy config), Analyze for each
resource (its inputs), AnalyzeStack with every resource. Shutdown: Cancel, then SIGINT (the pack stops its
server on KeyboardInterrupt), then kill after a timeout.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import signal
import subprocess
import sys
import threading
from collections import deque
from collections.abc import Callable, Iterable
from concurrent import futures
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import grpc
import yaml
from google.protobuf import empty_pb2
from pulumi.runtime.proto import analyzer_pb2, analyzer_pb2_grpc, engine_pb2, engine_pb2_grpc

from stamps.cli import UsageError

T = TypeVar("T")

START_TIMEOUT = 60.0  # importing pulumi + the pack on a cold cache takes seconds, not minutes
CALL_TIMEOUT = 120.0
STOP_TIMEOUT = 5.0
# Both sides: a large stack's AnalyzeStack request runs well past gRPC's 4 MB default.
MAX_MESSAGE = 400 * 1024 * 1024
_CHANNEL_OPTIONS = [("grpc.max_receive_message_length", MAX_MESSAGE), ("grpc.max_send_message_length", MAX_MESSAGE)]


class PolicyPackError(UsageError):
    """The pack could not be found, started or talked to; the message carries its stderr."""


@dataclass(frozen=True)
class PackProject:
    """A policy pack directory and its PulumiPolicy.yaml."""

    directory: Path
    runtime: str
    options: dict[str, Any]
    version: str | None

    @classmethod
    def load(cls, directory: Path) -> PackProject:
        directory = Path(directory).resolve()
        path = directory / "PulumiPolicy.yaml"
        try:
            doc = yaml.safe_load(path.read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise PolicyPackError(f"{path}: cannot read the policy pack project ({exc})") from None
        runtime = doc.get("runtime")
        name, options = (runtime.get("name"), runtime.get("options") or {}) if isinstance(runtime, dict) \
            else (runtime, {})
        if name != "python":
            raise PolicyPackError(f"{path}: runtime {name!r} is not supported offline (only python)")
        version = doc.get("version")
        return cls(directory, name, dict(options), str(version) if version is not None else None)

    def command(self, engine_address: str) -> tuple[list[str], dict[str, str]]:
        """argv and environment changes of the shim's final exec."""
        env: dict[str, str] = {}
        venv = self.options.get("virtualenv")
        if venv:
            root = (self.directory / str(venv)).resolve()
            python = root / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
            if not python.exists():
                raise PolicyPackError(f"{root} doesn't appear to be a virtual environment (virtualenv: {venv} "
                                      f"in {self.directory / 'PulumiPolicy.yaml'})")
            env["PATH"] = f"{python.parent}{os.pathsep}{os.environ.get('PATH', '')}"
            interpreter = str(python)
        else:
            # The shim runs `python3` from PATH; offline the current interpreter is the one with the SDKs.
            interpreter = sys.executable
        return [interpreter, "-u", "-m", "pulumi.policy", engine_address, "."], env


def find_pack(start: Path | None = None) -> Path:
    """`./policy` (or under `start`), else the pack next to the installed stamps sources."""
    candidates = [Path(start or Path.cwd()) / "policy", Path(__file__).resolve().parents[2] / "policy"]
    for c in candidates:
        if (c / "PulumiPolicy.yaml").is_file():
            return c
    raise PolicyPackError("no policy pack found (looked for " + ", ".join(str(c) for c in candidates)
                          + "); pass --pack DIR")


class _Engine(engine_pb2_grpc.EngineServicer):
    """The engine end of the pack's connection: records Log calls."""

    def __init__(self) -> None:
        self.logs: list[str] = []
        self._lock = threading.Lock()

    def Log(self, request: engine_pb2.LogRequest, context: Any) -> empty_pb2.Empty:
        name = engine_pb2.LogSeverity.Name(request.severity).lower()
        with self._lock:
            self.logs.append(f"{name}: {request.message}")
        return empty_pb2.Empty()

    def GetRootResource(self, request: Any, context: Any) -> engine_pb2.GetRootResourceResponse:
        return engine_pb2.GetRootResourceResponse()

    def SetRootResource(self, request: Any, context: Any) -> engine_pb2.SetRootResourceResponse:
        return engine_pb2.SetRootResourceResponse()


@dataclass
class StackContext:
    """What the CLI tells a pack about the stack being checked."""

    project: str
    stack: str
    organization: str = ""
    dry_run: bool = True
    config: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)


def _tolerate_unimplemented(call: Callable[[], T]) -> T | None:
    try:
        return call()
    except grpc.RpcError as err:
        if err.code() == grpc.StatusCode.UNIMPLEMENTED:  # type: ignore[attr-defined]
            return None
        raise


class PolicyPackProcess:
    """A running policy pack: `with PolicyPackProcess(pack, ctx) as pack: pack.analyze(...)`."""

    def __init__(self, project: PackProject, context: StackContext, *, start_timeout: float = START_TIMEOUT,
                 call_timeout: float = CALL_TIMEOUT, stop_timeout: float = STOP_TIMEOUT) -> None:
        self.project = project
        self.context = context
        self.start_timeout = start_timeout
        self.call_timeout = call_timeout
        self.stop_timeout = stop_timeout
        self.engine = _Engine()
        self.stderr: deque[str] = deque(maxlen=200)
        self.stdout: list[str] = []
        self.argv: list[str] = []
        self.exit_code: int | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._server: grpc.Server | None = None
        self._channel: grpc.Channel | None = None
        self._stub: analyzer_pb2_grpc.AnalyzerStub | None = None
        self._pumps: list[threading.Thread] = []

    # --- lifecycle ---------------------------------------------------------------------------------------
    def __enter__(self) -> PolicyPackProcess:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def start(self) -> None:
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=2), options=_CHANNEL_OPTIONS)
        engine_pb2_grpc.add_EngineServicer_to_server(self.engine, self._server)  # type: ignore[no-untyped-call]
        engine_port = self._server.add_insecure_port("127.0.0.1:0")
        self._server.start()
        engine_address = f"127.0.0.1:{engine_port}"

        self.argv, env_changes = self.project.command(engine_address)
        env = {**os.environ, **env_changes,
               "PULUMI_PROJECT": self.context.project, "PULUMI_STACK": self.context.stack,
               "PULUMI_DRY_RUN": "true" if self.context.dry_run else "false"}
        env.pop("PYTHONHOME", None)
        if self.context.organization:
            env["PULUMI_ORGANIZATION"] = self.context.organization
        if self.context.config:
            env["PULUMI_CONFIG"] = json.dumps(self.context.config)
        try:
            self._proc = subprocess.Popen(self.argv, cwd=self.project.directory, env=env, stdin=subprocess.DEVNULL,
                                          stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        except OSError as exc:
            raise PolicyPackError(f"cannot start the policy pack ({' '.join(self.argv)}): {exc}") from None

        port_lines: queue.Queue[str | None] = queue.Queue()
        self._pumps = [threading.Thread(target=self._pump_stdout, args=(port_lines,), daemon=True),
                       threading.Thread(target=self._pump_stderr, daemon=True)]
        for pump in self._pumps:
            pump.start()
        try:
            first = port_lines.get(timeout=self.start_timeout)
        except queue.Empty:
            raise PolicyPackError(f"the policy pack printed no port within {self.start_timeout:.0f}s"
                                  + self._stderr_tail()) from None
        if first is None or not first.strip().isdigit():
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._proc.wait(timeout=self.stop_timeout)
            self._pumps[1].join(timeout=self.stop_timeout)  # the message needs all of its last words
            got = "exited" if first is None else f"printed {first.strip()!r} instead of a port"
            raise PolicyPackError(f"the policy pack {got} (exit code {self._proc.poll()})" + self._stderr_tail())

        self._channel = grpc.insecure_channel(f"127.0.0.1:{int(first)}", options=_CHANNEL_OPTIONS)
        try:
            grpc.channel_ready_future(self._channel).result(timeout=self.start_timeout)
        except grpc.FutureTimeoutError:
            raise PolicyPackError("the policy pack's port accepts no connection" + self._stderr_tail()) from None
        self._stub = analyzer_pb2_grpc.AnalyzerStub(self._channel)  # type: ignore[no-untyped-call]
        self._handshake(engine_address)

    def _pump_stdout(self, port_lines: queue.Queue[str | None]) -> None:
        # Keep reading after the port: a pack that prints would otherwise block on a full pipe.
        assert self._proc is not None and self._proc.stdout is not None
        first = True
        for raw in self._proc.stdout:
            line = raw.decode(errors="replace")
            if first:
                port_lines.put(line)
                first = False
            else:
                self.stdout.append(line.rstrip("\n"))
        if first:
            port_lines.put(None)

    def _pump_stderr(self) -> None:
        assert self._proc is not None and self._proc.stderr is not None
        for raw in self._proc.stderr:
            self.stderr.append(raw.decode(errors="replace").rstrip("\n"))

    def _stderr_tail(self) -> str:
        lines = list(self.stderr)[-30:]
        return (":\n" + "\n".join(lines)) if lines else ""

    def _handshake(self, engine_address: str) -> None:
        directory = str(self.project.directory)
        self._call(lambda s, t: _tolerate_unimplemented(lambda: s.Handshake(analyzer_pb2.AnalyzerHandshakeRequest(
            engine_address=engine_address, root_directory=directory, program_directory=directory), timeout=t)))
        request = analyzer_pb2.AnalyzerStackConfigureRequest(
            stack=self.context.stack, project=self.context.project, organization=self.context.organization,
            dry_run=self.context.dry_run, tags=self.context.tags)
        request.config.update(self.context.config)
        self._call(lambda s, t: _tolerate_unimplemented(lambda: s.ConfigureStack(request, timeout=t)))

    def stop(self) -> None:
        """Cancel, SIGINT, then kill: whatever state the pack is in, no process or server outlives this."""
        if self._stub is not None and self._proc is not None and self._proc.poll() is None:
            stub = self._stub
            with contextlib.suppress(grpc.RpcError):  # a pack that cannot cancel still gets the signal below
                _tolerate_unimplemented(lambda: stub.Cancel(empty_pb2.Empty(), timeout=self.stop_timeout))
        if self._channel is not None:
            self._channel.close()
            self._channel = None
        self._stub = None
        if self._proc is not None:
            if self._proc.poll() is None:
                self._proc.send_signal(signal.SIGINT if os.name != "nt" else signal.SIGTERM)
                try:
                    self._proc.wait(timeout=self.stop_timeout)
                except subprocess.TimeoutExpired:
                    self._proc.kill()
                    self._proc.wait(timeout=self.stop_timeout)
            self.exit_code = self._proc.returncode
            for pump in self._pumps:  # they end at EOF; closing a pipe under a reader would raise in it
                pump.join(timeout=self.stop_timeout)
            for stream in (self._proc.stdout, self._proc.stderr):
                if stream is not None:
                    stream.close()
        if self._server is not None:
            self._server.stop(grace=None)
            self._server = None

    # --- protocol ----------------------------------------------------------------------------------------
    def _call(self, fn: Callable[[analyzer_pb2_grpc.AnalyzerStub, float], T]) -> T:
        if self._stub is None:
            raise PolicyPackError("the policy pack is not running")
        try:
            return fn(self._stub, self.call_timeout)
        except grpc.RpcError as err:
            detail = err.details() if hasattr(err, "details") else str(err)  # type: ignore[attr-defined]
            raise PolicyPackError(f"the policy pack failed: {detail}" + self._stderr_tail()) from None

    def analyzer_info(self) -> analyzer_pb2.AnalyzerInfo:
        return self._call(lambda s, t: s.GetAnalyzerInfo(empty_pb2.Empty(), timeout=t))

    def plugin_version(self) -> str:
        return self._call(lambda s, t: s.GetPluginInfo(empty_pb2.Empty(), timeout=t)).version

    def configure(self, request: analyzer_pb2.ConfigureAnalyzerRequest) -> None:
        self._call(lambda s, t: s.Configure(request, timeout=t))

    def analyze(self, request: analyzer_pb2.AnalyzeRequest) -> list[analyzer_pb2.AnalyzeDiagnostic]:
        return list(self._call(lambda s, t: s.Analyze(request, timeout=t)).diagnostics)

    def analyze_stack(self, resources: Iterable[analyzer_pb2.AnalyzerResource]) -> list[analyzer_pb2.AnalyzeDiagnostic]:
        request = analyzer_pb2.AnalyzeStackRequest(resources=list(resources))
        return list(self._call(lambda s, t: s.AnalyzeStack(request, timeout=t)).diagnostics)
