"""ops.stackconfig: round-trip edits of the stack file, change sets, secrets, atomic saves, the stack lock."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from ops.stackconfig import (
    MISSING,
    Change,
    ConfigEditError,
    PathNotFoundError,
    Secret,
    StackConfigFile,
    StackLockedError,
    apply_changes,
    lock_path,
    redact,
    stack_file_path,
    stack_lock,
    unified_diff,
)

REPO = Path(__file__).resolve().parents[1]

# A frozen copy of the prod stack file's shape (the live file changes as the project grows).
STACK = """\
encryptionsalt: v1:Cq8RfRqmXy8=:v1:sFBt3JHmBvbA2qz0:p2sU0o4nCkpR6kD3bn+9EgC8HUd1hA==
# Production environment of the Stamps pattern.
config:
  azure-native:location: eastus
  stamps:environment: prod
  # Region roles: the primary serves traffic, its DR region holds the standby CELLs.
  stamps:regions:
    - name: eastus
      role: primary
      drRegion: westus
      addressSpace: 10.10.0.0/16
    - name: westus
      role: dr
      addressSpace: 10.20.0.0/16
  # Which region serves traffic now; `stamps-ops failover` flips it, `failback` flips it back.
  stamps:activeRegion: eastus
  stamps:trafficManager:
    ttl: 300  # seconds
    failoverTtl: 60
  stamps:cells:
    - name: banking
      region: eastus
      model: dedicated
      compliance: [pci-dss, sox]
      replicas: {min: 3, max: 10}
      sql: {sku: P2}
      standby: {region: westus, replicas: {min: 1, max: 10}}
    - name: retail
      region: eastus
      model: shared
      capacity: 50
      replicas: {min: 2, max: 10}
      sql: {sku: S3}
      standby: {region: westus, replicas: {min: 1, max: 10}}
    - name: shared-smb
      region: eastus
      model: shared
      capacity: 100
      replicas: {min: 2, max: 20}
      sql: {sku: S2}
  stamps:tenants:
    - id: startup
      tier: basic
      cell: shared-smb
      email: admin@startup.example
    - id: banking-corp
      tier: enterprise
      cell: banking
      email: cloud-team@banking-corp.example
      compliance: [pci-dss]
  stamps:notifications:
    email: [sre-oncall@contoso.com]
    slackChannel: "#operations"
  # Secrets: set your own with `pulumi config set --secret stamps:<key> <value>`.
  stamps:alertWebhookUrl:
    secure: v1:Wc0n5kCN4V2m0i8D:6t9mR2qgYV3o9v0b1Zr0vSOFH4k4b0dYx1V2lq8pJm0=
  stamps:pagerDutyWebhookUrl:
    secure: v1:q3Jv0pX2b8kT1mAe:Xc7w1cE1X9p3JtN2y0lVbQW8m1v5kz0Nn4H3r2aYw6E=
"""
CIPHERTEXTS = ("6t9mR2qgYV3o9v0b1Zr0vSOFH4k4b0dYx1V2lq8pJm0=", "Xc7w1cE1X9p3JtN2y0lVbQW8m1v5kz0Nn4H3r2aYw6E=")


@pytest.fixture
def stack_file(tmp_path: Path) -> Path:
    path = tmp_path / "Pulumi.prod.yaml"
    path.write_text(STACK)
    return path


def comment_lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip().startswith("#")]


def changed_lines(old: str, new: str) -> tuple[list[str], list[str]]:
    diff = unified_diff(old, new, context=0).splitlines()
    removed = [d[1:] for d in diff if d.startswith("-") and not d.startswith("---")]
    added = [d[1:] for d in diff if d.startswith("+") and not d.startswith("+++")]
    return removed, added


# -- round trip and reads --------------------------------------------------------------------------------


def test_loading_and_rendering_changes_nothing(stack_file: Path) -> None:
    cfg = StackConfigFile(stack_file)
    assert cfg.roundtrip_clean
    assert cfg.render() == STACK
    assert not cfg.dirty
    assert cfg.diff() == ""


def test_live_prod_stack_file_round_trips() -> None:
    live = REPO / "Pulumi.prod.yaml"
    if not live.exists():
        pytest.skip("no Pulumi.prod.yaml in this checkout")
    cfg = StackConfigFile(live)
    assert cfg.render() == live.read_text()


def test_other_indentation_styles_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "Pulumi.dev.yaml"
    text = "config:\n  stamps:cells:\n  - name: a\n    replicas: {min: 1, max: 2}\n  - name: b\n"
    path.write_text(text)
    cfg = StackConfigFile(path)
    assert cfg.roundtrip_clean
    cfg.set("stamps:cells[name=b].region", "westus")
    assert cfg.render() == text + "    region: westus\n"


def test_empty_stack_file_gets_a_config_mapping_on_first_set(tmp_path: Path) -> None:
    path = tmp_path / "Pulumi.dev.yaml"
    path.write_text("")
    cfg = StackConfigFile(path)
    assert not cfg.dirty and not cfg.exists("stamps:activeRegion")
    cfg.set("stamps:activeRegion", "eastus")
    cfg.append("stamps:emails", "a@b.c")
    assert cfg.render() == "config:\n  stamps:activeRegion: eastus\n  stamps:emails: [a@b.c]\n"


def test_get_by_selector_index_and_default_namespace(stack_file: Path) -> None:
    cfg = StackConfigFile(stack_file)
    assert cfg.get("stamps:cells[name=banking].replicas.min") == 3
    assert cfg.get("cells[1].name") == "retail"
    assert cfg.get("stamps:cells[-1].name") == "shared-smb"
    assert cfg.get("stamps:tenants[id=banking-corp].compliance") == ["pci-dss"]
    assert cfg.get("azure-native:location") == "eastus"
    assert cfg.get("stamps:cells[name=shared-smb].standby", default=None) is None
    assert cfg.exists("stamps:cells[name=banking].standby.region")
    assert not cfg.exists("stamps:cells[name=nope]")
    assert isinstance(cfg.get("stamps:alertWebhookUrl"), Secret)


def test_unknown_list_item_names_the_path_and_the_valid_choices(stack_file: Path) -> None:
    cfg = StackConfigFile(stack_file)
    with pytest.raises(PathNotFoundError) as err:
        cfg.set("stamps:cells[name=bankin].replicas.min", 4)
    msg = str(err.value)
    assert "no cell named 'bankin' under stamps:cells" in msg
    assert "known: banking, retail, shared-smb" in msg
    assert "did you mean 'banking'" in msg
    with pytest.raises(PathNotFoundError, match=r"no tenant with id 'nobody' under stamps:tenants; known: s"):
        cfg.get("stamps:tenants[id=nobody]")


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("stamps:cells[name=banking].replica.min", r"no key 'replica' under stamps:cells\[name=banking\]"),
        ("stamps:cell", r"no config key 'stamps:cell'.*did you mean 'stamps:cells'"),
        ("stamps:cells[7]", r"index 7 out of range under stamps:cells \(3 items; valid: 0..2\)"),
        ("stamps:activeRegion.region", r"stamps:activeRegion is a str value; it has no key 'region'"),
        ("stamps:trafficManager[0]", r"stamps:trafficManager is a mapping, not a list"),
        ("stamps:alertWebhookUrl.secure", r"stamps:alertWebhookUrl is a secret"),
        ("stamps:cells[name=banking]..x", r"bad config path"),
    ],
)
def test_bad_paths_are_named_in_the_error(stack_file: Path, path: str, expected: str) -> None:
    with pytest.raises(ConfigEditError, match=expected):
        StackConfigFile(stack_file).get(path)


# -- set -------------------------------------------------------------------------------------------------


def test_set_changes_one_line_and_keeps_flow_style(stack_file: Path) -> None:
    cfg = StackConfigFile(stack_file)
    change = cfg.set("stamps:cells[name=banking].replicas.min", 5)
    assert change == Change("stamps:cells[name=banking].replicas.min", 3, 5, "set")
    assert list(cfg.changes) == [change]
    removed, added = changed_lines(STACK, cfg.render())
    assert removed == ["      replicas: {min: 3, max: 10}"]
    assert added == ["      replicas: {min: 5, max: 10}"]
    assert str(cfg.changes) == "stamps:cells[name=banking].replicas.min: 3 -> 5"


def test_index_paths_are_recorded_with_the_item_key(stack_file: Path) -> None:
    cfg = StackConfigFile(stack_file)
    change = cfg.set("stamps:cells[0].sql.sku", "P4")
    assert change is not None and change.path == "stamps:cells[name=banking].sql.sku"


def test_setting_the_current_value_records_nothing_and_save_does_not_write(stack_file: Path) -> None:
    before = stack_file.stat()
    cfg = StackConfigFile(stack_file)
    assert cfg.set("stamps:cells[name=banking].replicas", {"min": 3, "max": 10}) is None
    assert cfg.set("stamps:activeRegion", "eastus") is None
    assert cfg.append("stamps:cells[name=banking].compliance", "sox") is None
    assert cfg.delete("stamps:tenants[id=gone]", missing_ok=True) is None
    assert list(cfg.changes) == []
    assert cfg.save() is False
    after = stack_file.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)


def test_type_change_is_a_change(stack_file: Path) -> None:
    cfg = StackConfigFile(stack_file)
    assert cfg.set("stamps:trafficManager.ttl", "300") is not None
    assert cfg.get("stamps:trafficManager.ttl") == "300"
    # 3.0 == 3 and True == 1 in Python, but they are different YAML (and a reviewer would see the line change).
    assert cfg.set("stamps:cells[name=banking].replicas.min", 3.0) is not None
    assert "replicas: {min: 3.0, max: 10}" in cfg.render()
    assert cfg.set("stamps:cells[name=retail].replicas.min", 2) is None
    assert cfg.set("stamps:cells[name=retail].capacity", True) is not None


def test_set_keeps_end_of_line_comments_and_quoting(stack_file: Path) -> None:
    cfg = StackConfigFile(stack_file)
    cfg.set("stamps:trafficManager.ttl", 30)
    cfg.set("stamps:notifications.slackChannel", "#sre-oncall")
    removed, added = changed_lines(STACK, cfg.render())
    assert removed == ["    ttl: 300  # seconds", '    slackChannel: "#operations"']
    # ruamel keeps an end-of-line comment in its column.
    assert added == ["    ttl: 30   # seconds", '    slackChannel: "#sre-oncall"']


def test_new_key_copies_the_style_of_its_siblings(stack_file: Path) -> None:
    cfg = StackConfigFile(stack_file)
    standby = {"region": "westus", "replicas": {"min": 1, "max": 4}}
    change = cfg.set("stamps:cells[name=shared-smb].standby", standby)
    assert change is not None and change.old is MISSING
    removed, added = changed_lines(STACK, cfg.render())
    assert removed == []
    assert added == ["      standby: {region: westus, replicas: {min: 1, max: 4}}"]
    assert cfg.render().index(added[0]) < cfg.render().index("  stamps:tenants:")


def test_new_key_in_the_last_region_goes_above_the_next_keys_comment(stack_file: Path) -> None:
    cfg = StackConfigFile(stack_file)
    cfg.set("stamps:regions[name=westus].drRegion", "eastus")
    text = cfg.render()
    assert "      addressSpace: 10.20.0.0/16\n      drRegion: eastus\n  # Which region serves" in text
    assert comment_lines(text) == comment_lines(STACK)


def test_set_a_mapping_updates_in_place(stack_file: Path) -> None:
    cfg = StackConfigFile(stack_file)
    cfg.set("stamps:trafficManager", {"ttl": 300, "failoverTtl": 30})
    removed, added = changed_lines(STACK, cfg.render())
    assert (removed, added) == (["    failoverTtl: 60"], ["    failoverTtl: 30"])
    assert [str(c) for c in cfg.changes] == [
        'stamps:trafficManager: {"ttl": 300, "failoverTtl": 60} -> {"ttl": 300, "failoverTtl": 30}'
    ]


def test_set_cannot_create_list_items(stack_file: Path) -> None:
    with pytest.raises(ConfigEditError, match=r"stamps:tenants\[id=newco\] does not exist; add list items"):
        StackConfigFile(stack_file).set("stamps:tenants[id=newco]", {"id": "newco"})


def test_unsupported_value_types_are_refused(stack_file: Path) -> None:
    with pytest.raises(ConfigEditError, match="set cannot be stored"):
        StackConfigFile(stack_file).set("stamps:activeRegion", {"a", "b"})


# -- secrets ---------------------------------------------------------------------------------------------


def test_plain_value_over_a_secret_is_refused_without_opt_in(stack_file: Path) -> None:
    cfg = StackConfigFile(stack_file)
    with pytest.raises(ConfigEditError, match=r"alertWebhookUrl holds a secret.*allow_plaintext_over_secret"):
        cfg.set("stamps:alertWebhookUrl", "https://hooks.example/plain")
    assert list(cfg.changes) == [] and cfg.render() == STACK
    cfg.set("stamps:alertWebhookUrl", "https://hooks.example/plain", allow_plaintext_over_secret=True)
    assert cfg.get("stamps:alertWebhookUrl") == "https://hooks.example/plain"


def test_replacing_a_secret_with_a_secret_never_shows_ciphertext(stack_file: Path) -> None:
    cfg = StackConfigFile(stack_file)
    cfg.set("stamps:alertWebhookUrl", Secret("v1:newnonce:NEWCIPHERTEXT"))
    cfg.set("stamps:pagerDutyWebhookUrl", {"secure": "v1:other:OTHERCIPHER"})
    assert "secure: v1:newnonce:NEWCIPHERTEXT" in cfg.render()
    shown = "\n".join([str(cfg.changes), repr(list(cfg.changes)), cfg.diff()])
    for secret in (*CIPHERTEXTS, "NEWCIPHERTEXT", "OTHERCIPHER"):
        assert secret not in shown
    assert "[secret]" in str(cfg.changes) and "secure: [redacted]" in cfg.diff()


def test_redact_hides_block_and_flow_secure_values() -> None:
    assert redact("  k:\n    secure: v1:abc:XYZ=\n  j: {secure: v1:d:E=}") == (
        "  k:\n    secure: [redacted]\n  j: {secure: [redacted]}"
    )


# -- delete / append -------------------------------------------------------------------------------------


def test_delete_list_item_removes_only_its_lines(stack_file: Path) -> None:
    cfg = StackConfigFile(stack_file)
    change = cfg.delete("stamps:tenants[id=startup]")
    assert change is not None and change.op == "delete" and change.new is MISSING
    assert change.old["email"] == "admin@startup.example"
    removed, added = changed_lines(STACK, cfg.render())
    assert added == []
    assert removed == ["    - id: startup", "      tier: basic", "      cell: shared-smb",
                       "      email: admin@startup.example"]


def test_delete_keeps_the_comment_that_introduces_the_next_key(stack_file: Path) -> None:
    cfg = StackConfigFile(stack_file)
    cfg.delete("stamps:regions[name=westus]")
    cfg.delete("stamps:notifications.slackChannel")
    text = cfg.render()
    assert comment_lines(text) == comment_lines(STACK)
    assert "      addressSpace: 10.10.0.0/16\n  # Which region serves traffic now" in text
    assert "    email: [sre-oncall@contoso.com]\n  # Secrets: set your own" in text


def test_delete_missing_is_an_error_unless_missing_ok(stack_file: Path) -> None:
    cfg = StackConfigFile(stack_file)
    with pytest.raises(PathNotFoundError, match="no tenant with id 'ghost'"):
        cfg.delete("stamps:tenants[id=ghost]")
    assert cfg.delete("stamps:tenants[id=ghost]", missing_ok=True) is None
    # missing_ok only forgives the last step: a misspelt parent is still an error.
    with pytest.raises(PathNotFoundError, match="no config key 'stamps:tenant'"):
        cfg.delete("stamps:tenant[id=ghost]", missing_ok=True)


def test_append_tenant_goes_at_the_end_of_the_list_in_block_style(stack_file: Path) -> None:
    cfg = StackConfigFile(stack_file)
    tenant = {"id": "newco", "tier": "basic", "cell": "retail", "email": "it@newco.example",
              "compliance": ["gdpr"]}
    change = cfg.append("stamps:tenants", tenant)
    assert str(change) == (
        'stamps:tenants[id=newco]: added {"id": "newco", "tier": "basic", "cell": "retail", '
        '"email": "it@newco.example", "compliance": ["gdpr"]}'
    )
    removed, added = changed_lines(STACK, cfg.render())
    assert removed == []
    assert added == ["    - id: newco", "      tier: basic", "      cell: retail",
                     "      email: it@newco.example", "      compliance: [gdpr]"]
    assert cfg.render().index("id: newco") < cfg.render().index("  stamps:notifications:")
    assert cfg.append("stamps:tenants", dict(tenant)) is None  # re-run: nothing more
    assert len(cfg.changes) == 1


def test_append_region_keeps_the_following_comment_in_place(stack_file: Path) -> None:
    cfg = StackConfigFile(stack_file)
    cfg.append("stamps:regions", {"name": "centralus", "role": "dr", "addressSpace": "10.30.0.0/16"})
    text = cfg.render()
    assert "    - name: centralus\n      role: dr\n      addressSpace: 10.30.0.0/16\n  # Which region" in text
    assert comment_lines(text) == comment_lines(STACK)


def test_append_conflicting_item_is_refused(stack_file: Path) -> None:
    with pytest.raises(ConfigEditError, match=r"already has a tenant with id 'startup' that differs.*"
                                              r"set\('stamps:tenants\[id=startup\]'"):
        StackConfigFile(stack_file).append("stamps:tenants", {"id": "startup", "tier": "premium"})


def test_append_to_a_flow_list_and_to_a_missing_list(stack_file: Path) -> None:
    cfg = StackConfigFile(stack_file)
    cfg.append("stamps:cells[name=banking].compliance", "gdpr")
    cfg.append("stamps:cells[name=retail].compliance", "pci-dss")
    removed, added = changed_lines(STACK, cfg.render())
    assert removed == ["      compliance: [pci-dss, sox]"]
    assert added == ["      compliance: [pci-dss, sox, gdpr]", "      compliance: [pci-dss]"]


def test_edits_never_lose_comments_or_touch_unrelated_lines(stack_file: Path) -> None:
    cfg = StackConfigFile(stack_file)
    cfg.set("stamps:activeRegion", "westus")
    cfg.delete("stamps:tenants[id=startup]")
    cfg.append("stamps:tenants", {"id": "z", "tier": "basic", "cell": "retail", "email": "z@z.example"})
    cfg.set("stamps:cells[name=retail].replicas.max", 12)
    text = cfg.render()
    assert comment_lines(text) == comment_lines(STACK)
    reloaded = StackConfigFile(stack_file)
    reloaded_text_lines = set(STACK.splitlines())
    removed, _ = changed_lines(STACK, text)
    assert len(removed) == 1 + 4 + 1
    assert set(removed) <= reloaded_text_lines
    assert reloaded.render() == STACK  # nothing was written


# -- change sets replayed --------------------------------------------------------------------------------


def test_apply_changes_replays_onto_another_copy(stack_file: Path, tmp_path: Path) -> None:
    cfg = StackConfigFile(stack_file)
    cfg.set("stamps:cells[name=banking].replicas.min", 6)
    cfg.delete("stamps:tenants[id=startup]")
    cfg.append("stamps:tenants", {"id": "n", "tier": "basic", "cell": "retail", "email": "n@n.example"})
    cfg.set("stamps:alertWebhookUrl", Secret("v1:x:Y"))
    other_path = tmp_path / "copy" / "Pulumi.prod.yaml"
    other_path.parent.mkdir()
    other_path.write_text(STACK)
    other = StackConfigFile(other_path)
    assert other.unapplied(cfg.changes) == list(cfg.changes)
    applied = apply_changes(other, cfg.changes)
    assert list(applied) == list(cfg.changes)
    assert other.render() == cfg.render()
    assert other.unapplied(cfg.changes) == []
    assert list(apply_changes(other, cfg.changes)) == []  # idempotent


# -- save ------------------------------------------------------------------------------------------------


def test_save_is_atomic_keeps_mode_and_leaves_no_temp_files(stack_file: Path) -> None:
    os.chmod(stack_file, 0o640)
    inode = stack_file.stat().st_ino
    cfg = StackConfigFile(stack_file)
    cfg.set("stamps:activeRegion", "westus")
    assert cfg.dirty
    assert cfg.save() is True
    assert not cfg.dirty
    assert stat.S_IMODE(stack_file.stat().st_mode) == 0o640
    assert stack_file.stat().st_ino != inode  # replaced, not rewritten in place
    assert sorted(p.name for p in stack_file.parent.iterdir()) == ["Pulumi.prod.yaml"]
    assert StackConfigFile(stack_file).get("stamps:activeRegion") == "westus"
    assert cfg.save() is False


def test_failed_save_leaves_the_original_intact(stack_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = StackConfigFile(stack_file)
    cfg.set("stamps:activeRegion", "westus")

    def boom(src: str, dst: str) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        cfg.save()
    assert stack_file.read_text() == STACK
    assert sorted(p.name for p in stack_file.parent.iterdir()) == ["Pulumi.prod.yaml"]


def test_save_refuses_when_the_file_changed_behind_our_back(stack_file: Path) -> None:
    cfg = StackConfigFile(stack_file)
    cfg.set("stamps:activeRegion", "westus")
    stack_file.write_text(STACK.replace("ttl: 300", "ttl: 120"))
    with pytest.raises(ConfigEditError, match="changed on disk since it was loaded"):
        cfg.save()
    assert "ttl: 120" in stack_file.read_text()


def test_stack_file_path_handles_qualified_names(tmp_path: Path) -> None:
    assert stack_file_path(tmp_path, "org/stamps/prod") == tmp_path / "Pulumi.prod.yaml"
    with pytest.raises(ConfigEditError, match="does not exist"):
        StackConfigFile.for_stack(tmp_path, "nope")


# -- lock ------------------------------------------------------------------------------------------------


def test_second_lock_in_the_same_process_is_refused_with_the_holder(tmp_path: Path) -> None:
    with stack_lock(tmp_path, "prod", holder="failover") as info:
        assert info.path == tmp_path / ".stamps" / "locks" / "prod.lock"
        with pytest.raises(StackLockedError) as err, stack_lock(tmp_path, "prod", holder="scale"):
            pass
        msg = str(err.value)
        assert "stack 'prod' is locked by playbook 'failover'" in msg
        assert f"pid {os.getpid()}" in msg and info.host in msg and info.since in msg
        with stack_lock(tmp_path, "dev", holder="scale"):  # other stacks are independent
            pass
    with stack_lock(tmp_path, "prod", holder="scale"):  # released on exit
        pass


def test_lock_held_by_another_process_then_released_when_it_dies(tmp_path: Path) -> None:
    code = (
        "import sys; from ops.stackconfig import stack_lock\n"
        f"with stack_lock({str(tmp_path)!r}, 'prod', holder='failback'):\n"
        "    print('locked', flush=True); sys.stdin.read()\n"
    )
    child = subprocess.Popen([sys.executable, "-c", code], cwd=REPO, stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "locked"
        with pytest.raises(StackLockedError, match=rf"'failback' \(pid {child.pid} on host"), \
                stack_lock(tmp_path, "prod", holder="failover"):
            pass
    finally:
        child.kill()  # dies holding the lock: the kernel releases it
        child.wait()
    with stack_lock(tmp_path, "prod", holder="failover") as info:
        assert info.holder == "failover"


def test_stale_lock_file_from_a_dead_process_does_not_block(tmp_path: Path) -> None:
    path = lock_path(tmp_path, "prod")
    path.parent.mkdir(parents=True)
    path.write_text('{"holder": "failover", "pid": 999999, "host": "gone", "since": "2020-01-01T00:00Z"}\n')
    with stack_lock(tmp_path, "prod", holder="scale") as info:
        assert '"holder": "scale"' in path.read_text()
        assert info.pid == os.getpid()
    assert path.read_text() == ""  # holder record cleared on release
