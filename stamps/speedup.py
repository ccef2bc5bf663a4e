"""Make registering pulumi-azure-native v3 resources cheap without changing what the engine receives.

Why
---
Every pulumi-azure-native v3 class passes 4–65 aliases such as
``pulumi.Alias(type_="azure-native:sql/v20210201preview:Server")`` to ``CustomResource.__init__``
(pulumi-azure-native#4516). The Python SDK then pays for them twice:

1. ``Resource.__init__`` eagerly turns every alias into an alias-URN ``Output`` (``collapse_alias_to_urn``):
   about 13 tracked Outputs and 6 asyncio Tasks per alias, all of which the event loop must run and
   ``wait_for_rpcs`` must drain. Measured under mocks (pulumi 3.272, 200 resources): ~85% of the CPU of a
   ``sql.Server`` or ``storage.StorageAccount`` registration. Those URNs are read in exactly one place,
   ``runtime.resource.all_aliases``, for the *children* of a resource and only when the engine does not
   support alias specs. The Pulumi CLI and the mock monitor both support alias specs, so the work is
   thrown away.
2. ``runtime.resource.prepare_aliases`` wraps every alias in ``Output.from_input(alias).future()`` before
   building its spec: a tracked Output and a scheduled clean-up callback per alias.

What is patched
---------------
1. ``pulumi.resource.collapse_alias_to_urn`` (the name ``Resource.__init__`` calls; nothing else uses it)
   returns a ``_DeferredAliasUrn``: an ``Output`` that calls the stock ``collapse_alias_to_urn`` with the same
   arguments the first time anything reads its data. Deferral only happens for aliases whose stock URN chain
   cannot fail (plain strings, or exact ``pulumi.Alias`` objects whose name/type/project/stack are strings and
   whose parent is absent, ``None``, a URN string or an already registered Resource); every other alias
   (Outputs, awaitables, odd field types) takes the stock eager path, so its errors surface exactly as before.
   Under an engine without alias specs the deferred URN is produced by the same stock code, merely later.
2. ``pulumi.runtime.resource.prepare_aliases``: on the alias-spec path an alias that is exactly a ``str`` or a
   ``pulumi.Alias`` is handed straight to the stock ``create_alias_spec`` — for such values
   ``Output.from_input(alias).future()`` returns the alias object itself, so the resulting protobuf is the
   same. Anything else, and the whole non-alias-spec path, runs the stock code.

Neither function is on the call stack when ``register_resource`` captures the stack trace, so
``stackTrace``/``sourcePosition`` in the RegisterResource request are unchanged too. tests/test_speedup.py
compares full serialized requests, stock against patched: under mocks with and without alias-spec support,
and over gRPC as the CLI's language host runs a program (only ``dependencies``/``aliasURNs``/property-
dependency URNs are sorted first: the stock SDK fills them from sets, so their order varies between two
stock runs). What does change is SDK-internal: far fewer tracked Outputs for ``wait_for_rpcs`` to drain,
and a parent's ``urn`` Output is no longer untracked early by its children's alias chains (it leaves the
tracked set when it resolves, as usual).

Guard
-----
The patch is only applied on a pulumi SDK version listed in ``SUPPORTED_PULUMI_VERSIONS`` *and* whose
source for every function the equivalence argument relies on hashes to the fingerprint recorded for that
version (so a locally edited SDK or another monkeypatch also disables it). pulumi-azure-native is not patched
or introspected (verified with 3.29.0); it only supplies the ``pulumi.Alias`` objects, which are handled
generically, so its version is not guarded. ``STAMPS_SDK_SPEEDUP=0`` (or false/no/off) keeps stock behaviour.

Offline plan only
-----------------
Three more shortcuts are only ever applied by the offline engine (``plan_shortcuts()`` around one
``plan_stack``) and by the ``stamps`` CLI process (``exit_fast``), never by ``program.run()``, so
``pulumi up`` under the real engine runs stock. Each needs a verified pulumi version (as above) and
can be switched off for the benchmark with its variable set to 0/false/no/off:

- ``STAMPS_PLAN_GC``: the cyclic garbage collector is disabled while the program registers resources
  and restored afterwards (exceptions included). A plan allocates millions of long-lived SDK objects
  (Outputs, Tasks, futures) and the collector kept re-traversing them: ~40% of a 3,000-resource plan.
  Peak memory barely moves (benchmarks/plan_bench.py shows it). In the `stamps` CLI process the finished
  plan's objects are frozen rather than collected, since the fast exit frees them (see plan_shortcuts).
- ``STAMPS_PLAN_STACK``: ``pulumi.runtime.resource._get_stack_trace`` (called once per resource) is
  replaced by ``_cheap_get_stack_trace``, which builds the same ``StackTrace`` message from the same
  frames: it walks ``f_back`` itself instead of ``traceback.extract_stack`` (which reads every source line
  and stats every file through ``linecache``) and caches ``Path.as_uri()`` per file name. Its own
  fingerprint covers the SDK functions and the stdlib ``traceback`` code the stock result depends on.
- ``STAMPS_PLAN_FAST_EXIT``: once the ``stamps`` CLI has written its files (atomically) and printed
  everything, ``exit_fast`` runs the ``atexit`` handlers, flushes stdout/stderr and ends the process
  with ``os._exit``, skipping the interpreter's teardown of every object the plan built (~1 s on a
  3,000-resource plan). Only in the ``stamps`` console script / ``python -m stamps.cli`` process: a
  library caller (tests, ops) always gets its return value.

tests/test_speedup.py runs the equivalence scenario with every shortcut on against all of them off.
"""

from __future__ import annotations

import atexit
import gc
import hashlib
import inspect
import os
import pathlib
import sys
import threading
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import metadata
from types import FrameType
from typing import TYPE_CHECKING, Any

import pulumi
import pulumi.output as pulumi_output
import pulumi.resource as pulumi_resource
from pulumi.runtime import resource as runtime_resource
from pulumi.runtime import settings as runtime_settings
from pulumi.runtime.proto import alias_pb2, source_pb2

if TYPE_CHECKING:
    import asyncio

__all__ = [
    "ENV_VAR",
    "FAST_EXIT_ENV_VAR",
    "GC_ENV_VAR",
    "STACK_ENV_VAR",
    "SUPPORTED_PULUMI_VERSIONS",
    "disable",
    "enable",
    "exit_fast",
    "is_active",
    "plan_shortcuts",
    "status",
]

ENV_VAR = "STAMPS_SDK_SPEEDUP"
GC_ENV_VAR = "STAMPS_PLAN_GC"
STACK_ENV_VAR = "STAMPS_PLAN_STACK"
FAST_EXIT_ENV_VAR = "STAMPS_PLAN_FAST_EXIT"
_ENV_OFF = frozenset({"0", "false", "no", "off"})

# sha256 over the source of _fingerprinted_objects(), per pulumi version the equivalence was verified on.
_VERIFIED_SDK: dict[str, str] = {
    "3.272.0": "122c42e1124a33b2f71a1e76df4838864decc0132bfbc07b5fb92d58a39e0377",
}
SUPPORTED_PULUMI_VERSIONS: frozenset[str] = frozenset(_VERIFIED_SDK)
# sha256 over the source of _stack_capture_objects(), per pulumi version _cheap_get_stack_trace was verified on.
_VERIFIED_STACK_CAPTURE: dict[str, str] = {
    "3.272.0": "3af7cfa7635af9e35e8de328307806beedac73e0ef61844fa4dfa1a89046c22e",
}

# Captured at import so enable() can tell whether someone else has already replaced them.
_ORIGINAL_COLLAPSE: Callable[..., pulumi.Output[str]] = pulumi_resource.collapse_alias_to_urn
_ORIGINAL_PREPARE_ALIASES: Callable[..., Any] = runtime_resource.prepare_aliases
# The stock implementation a deferred alias URN eventually runs (the same object Resource.__init__ used).
_STOCK_COLLAPSE: Callable[..., pulumi.Output[str]] = runtime_resource.collapse_alias_to_urn


@dataclass
class _State:
    active: bool = False
    reason: str = "not enabled"


_STATE = _State()
_LOCK = threading.Lock()


class _DeferredAliasUrn(pulumi.Output[str]):
    """An alias-URN Output that runs the stock ``collapse_alias_to_urn`` only when its data is first read.

    ``Output.__init__`` is deliberately not called: it would schedule the very Task this class avoids.
    Every Output operation (``apply``, ``future``, ``Output.from_input``, ``_untrack``) goes through
    ``_data``, which materialises the stock Output and forwards to its data. The stock Output is tracked
    by the SDK as usual from the moment it exists.
    """

    def __init__(
        self,
        alias: str | pulumi.Alias,
        default_name: str,
        default_type: str,
        default_parent: pulumi.Resource | None,
    ) -> None:
        self._deferred_args = (alias, default_name, default_type, default_parent)
        self._materialized: pulumi.Output[str] | None = None

    def _materialize(self) -> pulumi.Output[str]:
        if self._materialized is None:
            self._materialized = _STOCK_COLLAPSE(*self._deferred_args)
        return self._materialized

    @property
    def _data(self) -> asyncio.Future[pulumi_output._OutputData[str]]:  # type: ignore[override]
        return self._materialize()._data

    def _untrack(self) -> None:
        # Stock _untrack reads self._data while holding the non-reentrant SETTINGS.lock, and materialising
        # creates Outputs that take that lock: materialise first.
        self._materialize()
        super()._untrack()

    def _track(self) -> None:
        self._materialize()
        super()._track()


def _registered_resource(value: object) -> bool:
    # Resource.urn reads __dict__["urn"], which register/read/get sets at the end of construction.
    return isinstance(value, pulumi_resource.Resource) and "urn" in value.__dict__


def _is_str(value: object) -> bool:
    return type(value) is str


def _deferrable(alias: object, default_parent: object) -> bool:
    """True when the stock alias-URN chain for `alias` cannot raise, so computing it later is unobservable."""
    if _is_str(alias):
        return True
    if type(alias) is not pulumi_resource.Alias:
        return False
    if not (alias.name is ... or _is_str(alias.name)):
        return False
    if not (alias.type_ is ... or _is_str(alias.type_)):
        return False
    # Mirrors collapse_alias_to_urn_worker: a None/absent project or stack falls back to the settings.
    project = alias.project if alias.project is not ... and alias.project is not None else None
    stack = alias.stack if alias.stack is not ... and alias.stack is not None else None
    if not _is_str(project if project is not None else runtime_settings.get_project()):
        return False
    if not _is_str(stack if stack is not None else runtime_settings.get_stack()):
        return False
    parent = alias.parent if alias.parent is not ... else default_parent
    return parent is None or _is_str(parent) or _registered_resource(parent)


def _collapse_alias_to_urn_deferred(
    alias: Any,
    defaultName: str,  # stock keyword names, for callers passing them by name
    defaultType: str,
    defaultParent: pulumi.Resource | None,
) -> pulumi.Output[str]:
    """Drop-in for ``collapse_alias_to_urn`` as called by ``Resource.__init__``."""
    if _deferrable(alias, defaultParent):
        return _DeferredAliasUrn(alias, defaultName, defaultType, defaultParent)
    return _STOCK_COLLAPSE(alias, defaultName, defaultType, defaultParent)


async def _prepare_aliases_fast(
    resource: pulumi.Resource,
    resource_options: pulumi.ResourceOptions | None,
    supports_alias_specs: bool,
) -> list[alias_pb2.Alias]:
    """Stock ``prepare_aliases`` minus the per-alias ``Output.from_input`` wrapper for plain values."""
    if not supports_alias_specs or resource_options is None or resource_options.aliases is None:
        return await _ORIGINAL_PREPARE_ALIASES(resource, resource_options, supports_alias_specs)

    aliases: list[alias_pb2.Alias] = []
    for alias in resource_options.aliases:
        if type(alias) is str or type(alias) is pulumi_resource.Alias:
            # Output.from_input of an exact str/Alias resolves to the object itself, known and not secret.
            resolved: Any = alias
        else:
            resolved = await pulumi.Output.from_input(alias).future()
        if resolved is None:
            continue
        if isinstance(resolved, str):
            aliases.append(alias_pb2.Alias(urn=resolved))
        else:
            aliases.append(alias_pb2.Alias(spec=await runtime_resource.create_alias_spec(resolved)))
    return aliases


def _fingerprinted_objects() -> tuple[object, ...]:
    # Everything whose behaviour the equivalence argument in the module docstring depends on.
    return (
        pulumi_resource.Alias,
        pulumi_resource.Resource.__init__,
        _ORIGINAL_COLLAPSE,
        runtime_resource.create_urn,
        runtime_resource.all_aliases,
        runtime_resource.inherited_child_alias,
        _ORIGINAL_PREPARE_ALIASES,
        runtime_resource.create_alias_spec,
        runtime_resource.prepare_resource,
        pulumi_output.Output,
    )


def _sdk_fingerprint() -> str | None:
    return _source_digest(_fingerprinted_objects())


def _installed_pulumi_version() -> str | None:
    try:
        return metadata.version("pulumi")
    except metadata.PackageNotFoundError:
        return None


def _env_disabled(var: str = ENV_VAR) -> bool:
    return os.environ.get(var, "").strip().lower() in _ENV_OFF


def _unsupported_reason() -> str | None:
    version = _installed_pulumi_version()
    expected = _VERIFIED_SDK.get(version or "")
    if expected is None:
        return f"pulumi {version} is not a verified version ({', '.join(sorted(SUPPORTED_PULUMI_VERSIONS))})"
    if pulumi_resource.collapse_alias_to_urn is not _ORIGINAL_COLLAPSE:
        return "pulumi.resource.collapse_alias_to_urn was already replaced by someone else"
    if runtime_resource.prepare_aliases is not _ORIGINAL_PREPARE_ALIASES:
        return "pulumi.runtime.resource.prepare_aliases was already replaced by someone else"
    if _ORIGINAL_COLLAPSE is not _STOCK_COLLAPSE:
        return "pulumi.resource and pulumi.runtime.resource disagree on collapse_alias_to_urn"
    if _sdk_fingerprint() != expected:
        return f"pulumi {version} source differs from the verified {version} source"
    return None


def _disable_locked(reason: str) -> None:
    if _STATE.active:
        # Only undo our own patches; if someone replaced them since, leave theirs in place.
        if pulumi_resource.collapse_alias_to_urn is _collapse_alias_to_urn_deferred:
            pulumi_resource.collapse_alias_to_urn = _ORIGINAL_COLLAPSE
        if runtime_resource.prepare_aliases is _prepare_aliases_fast:
            runtime_resource.prepare_aliases = _ORIGINAL_PREPARE_ALIASES
    _STATE.active = False
    _STATE.reason = reason


def enable() -> bool:
    """Apply the speedup if this SDK is a verified one; idempotent. Returns whether the speedup is active.

    With ``STAMPS_SDK_SPEEDUP=0`` this removes an active speedup and returns False. Enable it before the
    program constructs resources: aliases of resources built earlier keep their stock (eager) URNs.
    """
    with _LOCK:
        if _env_disabled():
            _disable_locked(f"{ENV_VAR}={os.environ.get(ENV_VAR)}")
            return False
        if _STATE.active:
            return True
        reason = _unsupported_reason()
        if reason is not None:
            _STATE.reason = reason
            return False
        pulumi_resource.collapse_alias_to_urn = _collapse_alias_to_urn_deferred
        runtime_resource.prepare_aliases = _prepare_aliases_fast
        _STATE.active = True
        _STATE.reason = "active"
        return True


def disable() -> None:
    """Restore stock SDK behaviour (already deferred alias URNs stay valid: they call the stock code)."""
    with _LOCK:
        _disable_locked("disabled")


def is_active() -> bool:
    """Whether the speedup is currently applied."""
    return _STATE.active


def status() -> str:
    """Human-readable state: "active", or why the speedup is not applied."""
    return _STATE.reason


# ---------------------------------------------------------------------------------------------------------
# Offline plan only: cheap stack capture, GC paused, fast exit (see "Offline plan only" above).
# ---------------------------------------------------------------------------------------------------------

_STOCK_GET_STACK_TRACE: Callable[[], source_pb2.StackTrace] = runtime_resource._get_stack_trace
# File name → file URI (or None when the SDK would give up on it); Path.as_uri() is a pure function of it.
_URI_CACHE: dict[str, str | None] = {}


def _file_uri(filename: str) -> str | None:
    try:
        return _URI_CACHE[filename]
    except KeyError:
        pass
    try:
        uri: str | None = pathlib.Path(filename).as_uri()
    except BaseException:  # as the stock _get_source_position_for_frame does
        uri = None
    _URI_CACHE[filename] = uri
    return uri


def _cheap_get_stack_trace() -> source_pb2.StackTrace:
    """Stock ``_get_stack_trace``'s result from the same frames, without ``traceback``/``linecache`` work.

    Stock: ``traceback.extract_stack()`` (outermost first, ending with ``_get_stack_trace``'s own frame),
    find the third ``__init__`` from the innermost end, and send every frame outside it, innermost first,
    as ``StackFrame(pc=SourcePosition(uri=Path(filename).as_uri(), line=lineno))`` (no ``pc`` for an empty
    file name, a missing line number or a name that is not an absolute path). This frame stands where
    ``_get_stack_trace``'s would, so the frame list, and thus the message, is the same.
    """
    if getattr(sys, "tracebacklimit", None) is not None:
        # extract_stack would keep only the innermost frames: rare enough to leave to the stock code.
        return _STOCK_GET_STACK_TRACE()
    frames = []
    caller: FrameType | None = sys._getframe()
    while caller is not None:
        frames.append(caller)
        caller = caller.f_back
    inits, index = 0, -1
    for i, frame in enumerate(frames):
        if frame.f_code.co_name == "__init__":
            inits += 1
            if inits == 3:
                index = i
                break
    # Stock returns an empty trace without a third __init__, or when it is the outermost frame (i < 1).
    if index < 0 or index >= len(frames) - 1:
        return source_pb2.StackTrace()
    out = []
    for frame in frames[index + 1:]:
        filename, lineno = frame.f_code.co_filename, frame.f_lineno
        uri = _file_uri(filename) if filename != "" and lineno is not None else None
        out.append(source_pb2.StackFrame() if uri is None
                   else source_pb2.StackFrame(pc=source_pb2.SourcePosition(uri=uri, line=lineno)))
    return source_pb2.StackTrace(frames=out)


def _stack_capture_objects() -> tuple[object, ...]:
    # The stock result depends on these; register_resource/read_resource only pass it on.
    return (
        _STOCK_GET_STACK_TRACE,
        runtime_resource._get_source_position_for_frame,
        runtime_resource._get_source_position,
        traceback.extract_stack,
        traceback.walk_stack,
        traceback.StackSummary.extract,
        traceback.StackSummary._extract_from_extended_frame_gen,  # type: ignore[attr-defined]
        traceback.FrameSummary.__init__,
    )


def _source_digest(objects: tuple[object, ...]) -> str | None:
    digest = hashlib.sha256()
    try:
        for obj in objects:
            digest.update(inspect.getsource(obj).encode())  # type: ignore[arg-type]
            digest.update(b"\0")
    except (OSError, TypeError):
        return None
    return digest.hexdigest()


def _plan_shortcut_reason(var: str) -> str | None:
    """Why a plan-only shortcut must stay off (switched off, unverified SDK), or None."""
    if _env_disabled(var):
        return f"{var}={os.environ.get(var)}"
    version = _installed_pulumi_version()
    if version not in SUPPORTED_PULUMI_VERSIONS:
        return f"pulumi {version} is not a verified version ({', '.join(sorted(SUPPORTED_PULUMI_VERSIONS))})"
    return None


def _stack_capture_reason() -> str | None:
    reason = _plan_shortcut_reason(STACK_ENV_VAR)
    if reason is not None:
        return reason
    if runtime_resource._get_stack_trace is not _STOCK_GET_STACK_TRACE:
        return "pulumi.runtime.resource._get_stack_trace was already replaced"
    version = _installed_pulumi_version() or ""
    if _source_digest(_stack_capture_objects()) != _VERIFIED_STACK_CAPTURE.get(version):
        return f"pulumi {version} / Python {sys.version.split()[0]} stack-capture source differs from the verified one"
    return None


_FROZE = threading.Event()  # set while the objects of an earlier plan sit in gc's permanent generation


def _exits_fast() -> bool:
    return _plan_shortcut_reason(FAST_EXIT_ENV_VAR) is None and is_cli_process()


@contextmanager
def plan_shortcuts() -> Iterator[dict[str, str]]:
    """Around one offline plan: GC paused and cheap stack capture, each when allowed; restored on exit.

    Yields {"gc": ..., "stack": ...}: "active" or why the shortcut is off. Not re-entrant (the offline
    engine plans one stack at a time under its lock).

    When the collector comes back on, its first collection would traverse every object the plan made and
    free the SDK's object graph (~2 s on a 3,000-resource plan). A library caller pays that, as it would
    have with the collector on. In the `stamps` CLI process, which ends with `exit_fast`, the plan's objects
    are frozen instead (`gc.freeze`: the collector skips them; the process exit frees them); a further plan
    in that process unfreezes and collects them first, so memory holds at most one plan's garbage.
    """
    state: dict[str, str] = {}
    gc_reason = _plan_shortcut_reason(GC_ENV_VAR)
    gc_was_enabled = gc.isenabled()
    stack_reason = _stack_capture_reason()
    try:
        if _FROZE.is_set():
            _FROZE.clear()
            gc.unfreeze()
            gc.collect()
        if gc_reason is None:
            gc.disable()
        if stack_reason is None:
            runtime_resource._get_stack_trace = _cheap_get_stack_trace
        state["gc"] = gc_reason or "active"
        state["stack"] = stack_reason or "active"
        yield state
    finally:
        if runtime_resource._get_stack_trace is _cheap_get_stack_trace:
            runtime_resource._get_stack_trace = _STOCK_GET_STACK_TRACE
        if gc_was_enabled:
            if gc_reason is None and _exits_fast():
                gc.freeze()
                _FROZE.set()
            gc.enable()


def is_cli_process() -> bool:
    """Whether this interpreter is the `stamps` command itself (console script or `python -m stamps.cli`)."""
    main = sys.modules.get("__main__")
    if main is None:
        return False
    spec = getattr(main, "__spec__", None)
    if spec is not None and spec.name == "stamps.cli":
        return True
    cli = sys.modules.get("stamps.cli")
    # The console script pip generates is `from stamps.cli import main; sys.exit(main())`.
    return cli is not None and getattr(main, "main", None) is getattr(cli, "main", object())


def exit_fast(code: int) -> int:
    """End the `stamps` CLI process now with `code`, skipping interpreter teardown; else return `code`.

    Call only when every file is written and all output printed. atexit handlers still run (logging's
    flush among them); stdout/stderr are flushed, and if that fails (a closed pipe) the normal exit
    path takes over so its error handling is unchanged.
    """
    if _plan_shortcut_reason(FAST_EXIT_ENV_VAR) is not None or not is_cli_process():
        return code
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except (OSError, ValueError):
        return code
    atexit._run_exitfuncs()
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    finally:
        os._exit(code)
