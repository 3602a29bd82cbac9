"""conpaassql.mysql against a real mariadbd: datadirs, start/stop, auth, secrets, status.

Servers bind to 127.0.N.x:3306 (N claimed for this process) and live under short
/tmp/cq-* directories
(unix socket paths must stay under 108 bytes). Every mariadbd started here is
killed in fixture teardown, even when a test fails.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import functools
import logging
import os
import pwd
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pymysql
import pytest

from conpaassql.errors import ConfigError, InvalidArgumentError, MySQLError
from conpaassql.mysql import (
    PROTECTED_OPTIONS,
    STATUS_KEYS,
    ConnectInfo,
    MariaDBProcess,
    MetricsSampler,
    ServerPaths,
    ServerSettings,
    execute,
    find_binary,
    initialise_datadir,
    is_initialised,
    is_protected,
    mysql_native_password_hash,
    normalise_option,
    ping,
    prepare_template,
    read_status,
    read_variables,
    render_client_cnf,
    render_my_cnf,
    validate_option_value,
)
from tests.integration.harness import claim_subnet

#: Quotes, backslashes, '#', ';', spaces (also leading/trailing), a tab and non-ASCII.
TRICKY_PASSWORD = ' it\'s "q" \\back\\ #not-a-comment; x\tz é€漢 '

@functools.cache
def net() -> str:
    """The 127.0.N prefix of this process's servers."""
    return f"127.0.{claim_subnet()}"


@dataclass
class Node:
    """One test server: its files, settings and a root connection."""

    paths: ServerPaths
    settings: ServerSettings
    info: ConnectInfo
    server: MariaDBProcess

    def write_cnf(self) -> None:
        self.paths.cnf.write_text(render_my_cnf(self.paths, self.settings))


class Lab:
    """A scratch directory of nodes; remembers every pid to kill at teardown."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.pids: set[int] = set()

    def node(self, name: str, ip: str, password: str = TRICKY_PASSWORD, **options: str) -> Node:
        paths = ServerPaths(self.root / name)
        settings = ServerSettings(bind_address=ip, options=options)
        info = ConnectInfo(socket=paths.socket, user="root", password=password)
        node = Node(paths, settings, info, MariaDBProcess(paths, info))
        paths.ensure_dirs()
        node.write_cnf()
        return node

    async def start(self, node: Node, *, use_init_file: bool = False) -> asyncio.subprocess.Process:
        process = await node.server.start(use_init_file=use_init_file)
        self.pids.add(process.pid)
        await node.server.wait_ready(process, timeout=30)
        return process

    @contextlib.asynccontextmanager
    async def running(self, node: Node, *, first: bool = False) -> AsyncIterator[int]:
        process = await self.start(node, use_init_file=first)
        try:
            yield process.pid
        finally:
            await node.server.stop(process, timeout=10)

    def kill_all(self) -> None:
        """SIGKILL every server started here that is still alive, and reap it."""
        for pid in self.pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)


@pytest.fixture(scope="module")
def lab_root() -> Iterator[Path]:
    root = Path(tempfile.mkdtemp(prefix="cq-", dir="/tmp"))
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def template(lab_root: Path) -> Path:
    return asyncio.run(prepare_template(lab_root / "template"))


@pytest.fixture
def lab(lab_root: Path) -> Iterator[Lab]:
    lab = Lab(Path(tempfile.mkdtemp(prefix="t-", dir=lab_root)))
    try:
        yield lab
    finally:
        lab.kill_all()


def cmdlines() -> list[bytes]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                found.append((entry / "cmdline").read_bytes())
    return found


# --------------------------------------------------------------------------- servers


@pytest.mark.integration
def test_template_is_built_once_by_concurrent_processes_and_tasks(lab_root: Path) -> None:
    target = lab_root / "race" / "template"
    script = (
        "import asyncio, logging, sys; from pathlib import Path;"
        "from conpaassql.mysql import prepare_template;"
        "logging.basicConfig(level=logging.INFO, stream=sys.stdout, format='%(message)s');"
        f"asyncio.run(prepare_template(Path({str(target)!r})))"
    )
    children = [
        subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
        for _ in range(2)
    ]

    async def in_process() -> list[Path]:
        return list(await asyncio.gather(*(prepare_template(target) for _ in range(2))))

    records: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record.getMessage())

    handler = Keep()
    logger = logging.getLogger("conpaassql.mysql.datadir")
    logger.addHandler(handler)
    old_level = logger.level
    logger.setLevel(logging.INFO)
    try:
        results = asyncio.run(in_process())
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)
    outputs = [child.communicate(timeout=60)[0] for child in children]
    assert [child.returncode for child in children] == [0, 0]
    assert results == [target, target]
    builds = sum(line.startswith("install-db created") for line in records)
    builds += sum(out.count("install-db created") for out in outputs)
    assert builds == 1, (records, outputs)
    assert is_initialised(ServerPaths(target.parent / "x")) is False
    assert (target / "mysql" / "global_priv.frm").is_file()
    assert not list(target.parent.glob(".template.build-*"))

    # Two datadirs made from it at the same time are separate copies.
    first, second = ServerPaths(lab_root / "race" / "a"), ServerPaths(lab_root / "race" / "b")

    async def two() -> None:
        await asyncio.gather(
            initialise_datadir(first, "pw-a", target), initialise_datadir(second, "pw-b", target)
        )

    asyncio.run(two())
    assert is_initialised(first) and is_initialised(second)
    assert (first.datadir / "ibdata1").stat().st_ino != (second.datadir / "ibdata1").stat().st_ino
    assert not list(first.base.glob(".data-*"))
    # the sparse copy does not store the ~100 MB of zeros of the redo log
    assert (first.datadir / "ib_logfile0").stat().st_blocks * 512 < 20 * 1024 * 1024


@pytest.mark.integration
def test_first_boot_from_template_secures_root(lab: Lab, template: Path) -> None:
    node = lab.node("n1", f"{net()}.10")
    password = TRICKY_PASSWORD

    async def scenario() -> None:
        started = time.monotonic()
        await initialise_datadir(node.paths, password, template)
        init_sql = node.paths.init_file.read_text()
        assert stat.S_IMODE(node.paths.init_file.stat().st_mode) == 0o600
        assert stat.S_IMODE(node.paths.client_cnf.stat().st_mode) == 0o600
        assert mysql_native_password_hash(password) in init_sql
        assert password not in init_sql and password.strip() not in init_sql
        async with lab.running(node, first=True) as pid:
            elapsed = time.monotonic() - started
            print(f"template init + start to first query: {elapsed:.3f}s")
            assert not node.paths.init_file.exists()
            assert node.server.running_pid() == pid
            assert await ping(node.info)
            sql = "SELECT CURRENT_USER() AS me, PASSWORD(%s) AS h"
            rows = await execute(node.info, sql, [password])
            assert rows == [{"me": "root@localhost", "h": mysql_native_password_hash(password)}]

            # wrong password: refused, and the error does not echo any password
            wrong = ConnectInfo(node.paths.socket, "root", "wrong-password")
            assert not await ping(wrong)
            with pytest.raises(MySQLError) as refused:
                await execute(wrong, "SELECT 1")
            assert refused.value.errno == 1045
            assert "wrong-password" not in str(refused.value)

            # install-db's other accounts are gone; nothing but root@localhost over TCP
            accounts = await execute(node.info, "SELECT User, Host FROM mysql.user ORDER BY 1, 2")
            assert [(a["User"], a["Host"]) for a in accounts] == [
                ("mariadb.sys", "localhost"),
                ("root", "localhost"),
            ]
            for user, secret in (("root", ""), ("root", password), ("", "")):
                with pytest.raises(pymysql.err.OperationalError) as tcp:
                    pymysql.connect(
                        host=f"{net()}.10", port=3306, user=user, password=secret.encode(),
                        bind_address="127.0.0.1", connect_timeout=2,
                    )  # fmt: skip
                # 1130: no account at all for host 127.0.0.1
                assert tcp.value.args[0] in (1045, 1130)

            # the CLI reads client.cnf with the same quoting rules as the server
            cli = await asyncio.create_subprocess_exec(
                find_binary("mariadb", "mysql"),
                f"--defaults-extra-file={node.paths.client_cnf}",
                "-N", "-e", "SELECT CURRENT_USER()",
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            )  # fmt: skip
            out, err = await cli.communicate()
            assert (cli.returncode, out.decode().strip()) == (0, "root@localhost"), err

            # a server message that echoes a parameter does not leak it
            with pytest.raises(MySQLError) as syntax:
                await execute(node.info, "SELEC %s", ["s3cr3t-value"])
            assert syntax.value.errno == 1064
            assert "s3cr3t-value" not in str(syntax.value) and "***" in str(syntax.value)

            secret_bytes = [password.encode(), password.strip().encode()]
            for cmdline in cmdlines():
                assert not any(s in cmdline for s in secret_bytes)
        log_bytes = node.paths.error_log.read_bytes()
        assert not any(s in log_bytes for s in secret_bytes)
        assert b"ready for connections" in log_bytes
        assert node.server.running_pid() is None

    asyncio.run(scenario())


@pytest.mark.integration
def test_datadirs_have_the_time_zones_and_an_older_template_is_rebuilt(
        lab: Lab, template: Path, lab_root: Path) -> None:
    node = lab.node("tz", f"{net()}.15", password="pw-tz")

    async def scenario() -> None:
        await initialise_datadir(node.paths, "pw-tz", template)
        async with lab.running(node, first=True):
            rows = await execute(node.info, "SELECT CONVERT_TZ('2026-07-01 12:00:00', 'UTC',"
                                 " 'Europe/Paris') AS paris, @@character_set_server AS cs,"
                                 " @@collation_server AS collation")
            assert rows == [{"paris": datetime.datetime(2026, 7, 1, 14, 0), "cs": "utf8mb4",
                             "collation": "utf8mb4_unicode_520_ci"}]

    asyncio.run(scenario())
    # A template made before the time zone tables (theirs empty) is made again.
    old = lab_root / "old" / "template"
    old.parent.mkdir()
    subprocess.run(["cp", "-a", "--sparse=always", str(template), str(old)], check=True)
    names = old / "mysql" / "time_zone_name.MAD"
    names.write_bytes(bytes(8192))
    assert asyncio.run(prepare_template(old)) == old
    assert names.stat().st_size > 8192
    assert sorted(p.name for p in old.parent.iterdir()) == [".template.lock", "template"]


@pytest.mark.integration
def test_install_db_restart_persistence_and_adoption(lab: Lab) -> None:
    node = lab.node("n2", f"{net()}.11", password="plain-pw", **{"max-connections": "50"})

    async def scenario() -> None:
        started = time.monotonic()
        await initialise_datadir(node.paths, "plain-pw")  # no template: install-db
        first = await lab.start(node, use_init_file=True)
        print(f"install-db init + start to first query: {time.monotonic() - started:.3f}s")
        assert not node.paths.init_file.exists()
        await execute(node.info, "CREATE DATABASE app")
        await execute(node.info, "CREATE TABLE app.t (id INT PRIMARY KEY, v VARCHAR(20))")
        await execute(node.info, "INSERT INTO app.t VALUES (%s, %s), (%s, %s)", [1, "a", 2, "é"])
        assert await read_variables(node.info, ["max_connections", "log_bin"]) == {
            "max_connections": "50",
            "log_bin": "ON",
        }
        with pytest.raises(MySQLError):
            await node.server.start()  # one server per datadir

        await node.server.stop(first)
        await node.server.stop(first)  # idempotent
        assert first.returncode == 0
        assert node.server.running_pid() is None
        assert not await ping(node.info)

        second = await lab.start(node)
        rows = await execute(node.info, "SELECT id, v FROM app.t ORDER BY id")
        assert rows == [{"id": 1, "v": "a"}, {"id": 2, "v": "é"}]

        # a new agent adopts the running server by its pid file and stops it
        adopter = MariaDBProcess(node.paths, node.info)
        pid = adopter.running_pid()
        assert pid == second.pid
        await adopter.stop(pid)
        await asyncio.wait_for(second.wait(), 5)
        assert adopter.running_pid() is None
        await adopter.stop(pid)  # gone already: nothing happens

    asyncio.run(scenario())


@pytest.mark.integration
def test_status_counters_grow(lab: Lab, template: Path) -> None:
    node = lab.node("n3", f"{net()}.12", password="pw3")

    async def scenario() -> None:
        await initialise_datadir(node.paths, "pw3", template)
        async with lab.running(node, first=True):
            before = await read_status(node.info)
            assert set(before) == set(STATUS_KEYS)
            assert all(isinstance(value, int) for value in before.values())
            for _ in range(5):
                await execute(node.info, "SELECT 1")
            after = await read_status(node.info)
            assert after["Questions"] >= before["Questions"] + 5
            assert after["Com_select"] >= before["Com_select"] + 5
            sampler = MetricsSampler()
            sampler.add(0.0, before)
            sampler.add(2.0, after)
            assert sampler.rates()["com_select_per_second"] >= 2.5

    asyncio.run(scenario())


@pytest.mark.integration
def test_failed_start_reports_the_error_log(lab: Lab, template: Path) -> None:
    node = lab.node("n4", f"{net()}.13", password="pw4", **{"no-such-option-xyz": "1"})

    async def scenario() -> None:
        await initialise_datadir(node.paths, "pw4", template)
        with pytest.raises(MySQLError) as failed:
            await lab.start(node, use_init_file=True)
        assert "no-such-option-xyz" in (failed.value.detail or "")
        assert node.paths.init_file.exists()  # kept for the next attempt

    asyncio.run(scenario())


@pytest.mark.integration
@pytest.mark.skipif(os.geteuid() != 0, reason="only root can run the server as another user")
def test_server_runs_as_another_user(lab: Lab, lab_root: Path, template: Path) -> None:
    try:
        mysql_uid = pwd.getpwnam("mysql").pw_uid
    except KeyError:
        pytest.skip("no mysql user")
    for directory in (lab_root, lab.root):
        os.chmod(directory, 0o711)  # the server user must reach its directories
    node = lab.node("n5", f"{net()}.14", password="pw5")
    node.settings = ServerSettings(bind_address=f"{net()}.14", run_as="mysql")
    node.write_cnf()

    async def scenario() -> None:
        await initialise_datadir(node.paths, "pw5", template, run_as="mysql")
        assert (node.paths.datadir / "ibdata1").stat().st_uid == mysql_uid
        assert node.paths.client_cnf.stat().st_uid == 0
        async with lab.running(node, first=True) as pid:
            status = Path(f"/proc/{pid}/status").read_text()
            assert f"Uid:\t{mysql_uid}\t" in status
            assert await ping(node.info)

    asyncio.run(scenario())


@pytest.mark.integration
def test_unreachable_server_is_a_mysql_error() -> None:
    info = ConnectInfo(Path("/tmp/cq-nowhere/mysqld.sock"), "root", "hush-hush")
    with pytest.raises(MySQLError) as failed:
        asyncio.run(execute(info, "SELECT 1"))
    assert failed.value.errno == 2002
    assert "hush-hush" not in str(failed.value)
    assert asyncio.run(ping(info)) is False


# --------------------------------------------------------------------------- no server


@pytest.mark.integration
def test_metrics_sampler_rates() -> None:
    sampler = MetricsSampler(max_samples=10)
    assert sampler.latest() == {} and sampler.rates()["queries_per_second"] == 0.0
    for second in range(8):
        counters = {"Queries": 100 * second, "Com_select": 10 * second}
        counters |= {"Bytes_received": 1000 * second, "Threads_connected": 3}
        sampler.add(float(second), counters)
    rates = sampler.rates(window=5.0)
    assert rates["queries_per_second"] == pytest.approx(100.0)
    assert rates["com_select_per_second"] == pytest.approx(10.0)
    assert rates["bytes_received_per_second"] == pytest.approx(1000.0)
    assert "threads_connected_per_second" not in rates
    assert sampler.latest()["Queries"] == 700

    # a restart: counters go back; the window restarts from there
    sampler.add(8.0, {"Queries": 5, "Com_select": 1, "Bytes_received": 10})
    assert sampler.rates()["queries_per_second"] == 0.0
    sampler.add(10.0, {"Queries": 45, "Com_select": 1, "Bytes_received": 10})
    assert sampler.rates()["queries_per_second"] == pytest.approx(20.0)

    # only the last max_samples are kept, and the window picks a recent base
    steady = MetricsSampler(max_samples=4)
    for second in range(10):
        steady.add(float(second), {"Queries": second * second})
    assert len(steady) == 4
    assert steady.rates(window=2.0)["queries_per_second"] == pytest.approx((81 - 49) / 2)
    with pytest.raises(InvalidArgumentError):
        steady.add(1.0, {"Queries": 100})


@pytest.mark.integration
def test_option_names_and_values() -> None:
    assert normalise_option("InnoDB_Buffer_Pool_Size") == "innodb-buffer-pool-size"
    for bad in ("", "1abc", "a b", "a=b", "x" * 65, "opt\n", "é", "-x"):
        with pytest.raises(InvalidArgumentError):
            normalise_option(bad)
    assert validate_option_value("64M") == "64M"
    for bad in ("a\nb", "a\rb", "a\0b", "x" * 1025):
        with pytest.raises(InvalidArgumentError):
            validate_option_value(bad)
    for name in ("datadir", "port", "bind-address", "user", "init-file", "plugin-dir", "server-id",
                 "loose-datadir", "datad", "skip-grant-tables", "loose-skip-grant-tables",
                 "log-bin", "skip-log-bin", "socket", "log"):  # fmt: skip
        assert is_protected(normalise_option(name)), name
    for name in ("innodb-buffer-pool-size", "max-connections", "slow-query-log",
                 "long-query-time", "innodb", "general-log", "sql-mode"):  # fmt: skip
        assert not is_protected(name), name
    assert {"datadir", "socket", "port", "user", "server-id"} <= PROTECTED_OPTIONS
    with pytest.raises(InvalidArgumentError):
        ServerSettings(bind_address="127.0.0.1", options={"Data_Dir": "/x", "datadir": "/y"})
    with pytest.raises(InvalidArgumentError):
        ServerSettings(bind_address="127.0.0.1\nuser=x")
    with pytest.raises(InvalidArgumentError):
        ServerSettings(bind_address="127.0.0.1", options={"sql-mode": "a\nskip-grant-tables"})


@pytest.mark.integration
def test_rendered_option_files() -> None:
    paths = ServerPaths(Path("/tmp/cq-x/node 1/mysql"))
    options = {"Innodb_Buffer_Pool_Size": "64M", "sql-mode": "ANSI QUOTES"}
    options["skip-performance-schema"] = ""  # a bare flag
    settings = ServerSettings(
        bind_address="10.0.0.5", port=3307, server_id=7, run_as="mysql", options=options
    )
    cnf = render_my_cnf(paths, settings)
    lines = cnf.splitlines()
    assert lines[1] == "[mariadbd]"
    for expected in (
        f'datadir="{paths.datadir}"',
        f'socket="{paths.socket}"',
        f'pid-file="{paths.pid_file}"',
        "bind-address=10.0.0.5",
        "port=3307",
        f'log-error="{paths.error_log}"',
        "user=mysql",
        "server-id=7",
        "skip-name-resolve",
        f'log-bin="{paths.datadir}/binlog"',
        "binlog-format=ROW",
        "log-slave-updates",
        f'tmpdir="{paths.tmpdir}"',
        "innodb-buffer-pool-size=64M",
        'sql-mode="ANSI QUOTES"',
        "skip-performance-schema",
    ):
        assert expected in lines, expected
    client_part = cnf[cnf.index("[client]") :]
    assert "password" not in cnf and "user" not in client_part

    client = render_client_cnf(paths, "root", "a\"b'c\\d #e;f")
    assert 'password="a\\"b\\\'c\\\\d #e;f"' in client.splitlines()
    with pytest.raises(InvalidArgumentError) as bad:
        render_client_cnf(paths, "root", "line1\nline2")
    assert "line1" not in str(bad.value)
    with pytest.raises(ConfigError, match="socket path too long"):
        render_my_cnf(ServerPaths(Path("/tmp/" + "x" * 100)), settings)


@pytest.mark.integration
def test_native_password_hash() -> None:
    assert mysql_native_password_hash("test") == "*94BDCEBE19083CE2A1F959FD02F964C7AF4CFC29"
    assert mysql_native_password_hash("") == ""


@pytest.mark.integration
def test_find_binary_names_the_missing_program() -> None:
    assert find_binary("no-such-program-xyz", "sh").endswith("/sh")
    with pytest.raises(ConfigError, match="no-such-program-xyz"):
        find_binary("no-such-program-xyz")
