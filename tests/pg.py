"""PostgreSQL for tests: an existing server from $STAMPS_TEST_PG_URL, else a throwaway local cluster.

Resolution order (once per test process):

1. ``STAMPS_TEST_PG_URL`` (what ``.ci/postgres.sh`` exports): used as the admin connection; the
   role needs CREATEDB because every test gets fresh databases.
2. A server binary under ``/usr/lib/postgresql/*/bin``: ``initdb`` a cluster in a temp dir and start
   it on a free loopback port (fsync off: it is disposable). initdb refuses to run as root, so as
   root the cluster runs as the ``postgres`` OS user (or ``nobody``). Stopped at interpreter exit.
3. Otherwise skip — unless ``CI=true``, where a missing PostgreSQL fails the test instead, so a
   broken CI setup can never pass as "all skipped".

A second login role (``second_login``) comes from ``STAMPS_TEST_PG_ALIAS_URL`` (also exported by
``.ci/postgres.sh``), else is created when the admin role may create roles (the throwaway cluster's
superuser).
"""

from __future__ import annotations

import atexit
import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

PG_URL_ENV = "STAMPS_TEST_PG_URL"
PG_ALIAS_URL_ENV = "STAMPS_TEST_PG_ALIAS_URL"


class PgServer:
    """An admin URL plus helpers to create/drop throwaway databases."""

    def __init__(self, admin_url: sa.URL, description: str) -> None:
        self.admin_url = admin_url
        self.description = description
        self._admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)

    def create_database(self) -> sa.URL:
        name = f"stamps_t_{uuid.uuid4().hex[:12]}"
        with self._admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
        return self.admin_url.set(database=name)

    def drop_database(self, url: sa.URL) -> None:
        # Plain DROP, not WITH (FORCE): FORCE needs the right to signal *every* session, and a
        # non-superuser test role (as in CI) may not signal autovacuum, which plain DROP handles.
        # Our own leftover sessions (e.g. a SIGKILLed child's, or the second login's) are terminated first.
        name = url.database
        for attempt in range(50):
            with self._admin.connect() as conn:
                conn.execute(
                    sa.text(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                        "WHERE datname = :d AND pid <> pg_backend_pid() "
                        "AND (usename = current_user OR pg_has_role(current_user, usesysid, 'MEMBER'))"
                    ),
                    {"d": name},
                )
                try:
                    conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}"')
                    return
                except sa.exc.OperationalError:
                    if attempt == 49:
                        raise
            time.sleep(0.1)  # sessions take a moment to exit after being terminated

    def second_login(self, url: sa.URL) -> sa.URL:
        """``url``'s database under another login role, granted read and write on its public tables.

        Skips (fails when CI=true) if there is no such role and the admin role may not create one.
        """
        alias_env = os.environ.get(PG_ALIAS_URL_ENV)
        if alias_env:
            alias = sa.make_url(alias_env)
            name, password = alias.username, alias.password
        else:
            name, password = f"stamps_alias_{os.getpid()}", "alias-pw"
            with self._admin.connect() as conn:
                if not conn.exec_driver_sql(
                    "SELECT rolcreaterole OR rolsuper FROM pg_roles WHERE rolname = current_user"
                ).scalar():
                    reason = f"no ${PG_ALIAS_URL_ENV} and the test role may not create a second login role"
                    if os.environ.get("CI") == "true":
                        pytest.fail(reason + " (.ci/postgres.sh exports one)", pytrace=False)
                    pytest.skip(reason)
                conn.exec_driver_sql(f"DROP ROLE IF EXISTS {name}")
                conn.exec_driver_sql(f"CREATE ROLE {name} LOGIN PASSWORD '{password}'")
        # As the owner of the tables: enough for the alias to be taken for a real target.
        owner = sa.create_engine(url, poolclass=sa.pool.NullPool)
        try:
            with owner.begin() as conn:
                conn.exec_driver_sql(f'GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO "{name}"')
        finally:
            owner.dispose()
        return url.set(username=name, password=password)

    @contextlib.contextmanager
    def databases(self, n: int) -> Iterator[list[sa.URL]]:
        urls = [self.create_database() for _ in range(n)]
        try:
            yield urls
        finally:
            for url in urls:
                self.drop_database(url)


def find_bindir() -> Path | None:
    candidates = sorted(
        Path("/usr/lib/postgresql").glob("*/bin"),
        key=lambda p: [int(x) if x.isdigit() else 0 for x in p.parent.name.split(".")],
    )
    for bindir in reversed(candidates):
        if (bindir / "initdb").exists() and (bindir / "pg_ctl").exists():
            return bindir
    return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _run_as() -> tuple[list[str], str | None]:
    """Command prefix and OS user for running initdb/pg_ctl (never as root)."""
    if os.geteuid() != 0:
        return [], None
    for user in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            pwd.getpwnam(user)
            return ["runuser", "-u", user, "--"], user
    raise RuntimeError("running as root and neither a 'postgres' nor a 'nobody' user exists for initdb")


def start_throwaway_cluster(bindir: Path) -> tuple[PgServer, Path]:
    prefix, user = _run_as()
    root = Path(tempfile.mkdtemp(prefix="stamps-pg-"))
    data = root / "data"
    data.mkdir()
    if user is not None:
        pw = pwd.getpwnam(user)
        for p in (root, data):
            os.chown(p, pw.pw_uid, pw.pw_gid)
    root.chmod(0o755)
    port = _free_port()
    env = {**os.environ, "LC_ALL": "C.UTF-8", "LANG": "C.UTF-8"}
    subprocess.run(
        [*prefix, str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8",
         "--no-sync"],
        check=True, capture_output=True, env=env,
    )  # fmt: skip
    opts = (
        f"-p {port} -k {data} -c listen_addresses=127.0.0.1 -c fsync=off "
        "-c synchronous_commit=off -c full_page_writes=off"
    )
    subprocess.run(
        [*prefix, str(bindir / "pg_ctl"), "-D", str(data), "-l", str(data / "server.log"), "-w", "-t", "60",
         "-o", opts, "start"],
        check=True, capture_output=True, env=env,
    )  # fmt: skip
    url = sa.URL.create("postgresql+psycopg2", username="postgres", host="127.0.0.1", port=port, database="postgres")
    return PgServer(url, f"throwaway cluster {data} on port {port}"), data


def _stop_cluster(bindir: Path, data: Path) -> None:
    prefix, _ = _run_as()
    subprocess.run(
        [*prefix, str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"],
        check=False, capture_output=True,
    )  # fmt: skip
    shutil.rmtree(data.parent, ignore_errors=True)


_server: PgServer | None = None
_unavailable: str | None = None


def get_server() -> PgServer:
    """The process-wide server; skips (or fails when CI=true) if PostgreSQL is unavailable."""
    global _server, _unavailable
    if _server is None and _unavailable is None:
        url = os.environ.get(PG_URL_ENV)
        bindir = find_bindir()
        try:
            if url:
                _server = PgServer(sa.make_url(url), f"${PG_URL_ENV}")
            elif bindir is not None:
                _server, data = start_throwaway_cluster(bindir)
                atexit.register(_stop_cluster, bindir, data)
            else:
                _unavailable = f"no ${PG_URL_ENV} and no PostgreSQL server under /usr/lib/postgresql/*/bin"
        except (subprocess.CalledProcessError, RuntimeError, OSError) as exc:
            detail = exc.stderr.decode(errors="replace") if isinstance(exc, subprocess.CalledProcessError) else ""
            _unavailable = f"cannot start a throwaway PostgreSQL cluster: {exc} {detail}".strip()
    if _server is None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"PostgreSQL is required in CI: {_unavailable}", pytrace=False)
        pytest.skip(_unavailable or "PostgreSQL unavailable")
    return _server
