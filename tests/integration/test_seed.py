"""Seeding a node with a physical copy of another, streamed agent to agent: seed_from.

The manager makes one node the master and seeds the others itself; to look at
``seed_from`` alone, the tests pause the manager process (SIGSTOP) once its own
copies are done, call the agents directly, and let it go on (SIGCONT) only
where they check what it then sees.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import shutil
import signal
import ssl
import stat
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pymysql
import pytest

from conpaassql.layout import MYSQLD_PID_FILE, MYSQLD_SOCKET_FILE
from conpaassql.manager.authority import Authority
from conpaassql.rpc.grants import make_grant
from tests.integration.harness import Manager, free_port, rpc_error, wait_until

pytestmark = pytest.mark.integration

ROWS = 20_000  # about 4 MB of InnoDB data
GTID_LIST = re.compile(r"\d+-\d+-\d+(,\d+-\d+-\d+)*")
BACKUP_PROGRAMS = ("mariabackup", "mariadb-backup", "mbstream")


@dataclass
class Pair:
    manager: Manager
    source: int  # the node copied (the master, when the manager chose one)
    target: int  # the node seeded
    urls: dict[int, str]  # agent URLs
    paused: bool = False

    def pause(self) -> None:
        """Stop the manager's process and wait until no copy is running on the nodes."""
        if self.paused:
            wait_until(self._idle, 60, 0.1, "no copy in progress")
            return
        assert self.manager.process is not None
        self.manager.process.send_signal(signal.SIGSTOP)
        self.paused = True
        time.sleep(0.3)  # a call the manager just sent reaches its agent
        wait_until(self._settled, 60, 0.1, "no copy in progress")

    def resume(self) -> None:
        if self.paused:
            assert self.manager.process is not None
            self.manager.process.send_signal(signal.SIGCONT)
            self.paused = False

    def _settled(self) -> bool:
        """Idle, and still idle a moment later."""
        if not self._idle():
            return False
        time.sleep(0.5)
        return self._idle()

    def _idle(self) -> bool:
        listing = ps_lines()
        for node_id in self.urls:
            mysql = self.manager.node_dir(node_id) / "mysql"
            if list(mysql.glob(".seed-*")) or list(mysql.glob(".backup-*")):
                return False
            if any(str(mysql / "backup.cnf") in line for line in listing):
                return False
        return True

    def call(self, node_id: int, method: str, params: dict[str, Any] | None = None,
             verb: str = "POST", timeout: float = 120) -> Any:
        if method == "seed_from" and params and "grant" not in params:
            # As the manager does: its leave for this node to copy the source.
            source = next((i for i, url in self.urls.items() if url == params.get("source")),
                          self.source)
            authority = Authority.load_or_create(self.manager.state_dir / "pki",
                                                 self.manager.service_id)
            address = self.urls[node_id].split("//")[1].split(":")[0]
            params = {**params, "grant": make_grant(authority.grant_key, source, node_id,
                                                    address)}
        return self.manager.agent_call(node_id, method, params, verb, timeout)

    def seed_error(self, source: str) -> str:
        """The error text of ``seed_from`` on the target (which must fail)."""
        return rpc_error(lambda: self.call(self.target, "seed_from", {"source": source}))

    def seed(self, source: str) -> Any:
        """``seed_from`` on the target, waiting out a copy someone else started."""
        deadline = time.monotonic() + 60
        while True:
            try:
                return self.call(self.target, "seed_from", {"source": source})
            except Exception as exc:
                if "busy" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.2)


@pytest.fixture(scope="module")
def pair(template_cache: Path) -> Iterator[Pair]:
    """Two nodes; the source holds ``src.t`` (InnoDB) and ``src.a`` (Aria)."""
    manager = Manager(template_cache).start()
    pair: Pair | None = None
    try:
        manager.post("add_nodes", count=2)
        manager.wait_running(2)
        with_roles: list[dict[str, Any]] = []
        with contextlib.suppress(AssertionError):  # a manager that leaves roles alone
            with_roles = wait_until(lambda: [n for n in manager.nodes()
                                             if n.get("role") == "master"], 15, 0.2, "a master")
        source = with_roles[0]["id"] if with_roles else 1
        nodes = {n["id"]: manager.node(n["id"]) for n in manager.nodes()}
        target = next(i for i in nodes if i != source)
        urls = {i: manager.agent_url(i) for i in nodes}
        pair = Pair(manager, source, target, urls)
        ok = manager.sql(source, (
            "CREATE DATABASE src; CREATE TABLE src.t (id INT AUTO_INCREMENT PRIMARY KEY,"
            " v VARCHAR(200)) ENGINE=InnoDB;"
            " INSERT INTO src.t (v) SELECT REPEAT(MD5(seq), 4) FROM src.seq_1_to_"
            f"{ROWS};"
            " CREATE TABLE src.a (id INT PRIMARY KEY, v TEXT) ENGINE=Aria;"
            " INSERT INTO src.a SELECT seq, MD5(seq) FROM src.seq_1_to_1000;"))
        assert ok.returncode == 0, ok.stderr
        pair.pause()
        yield pair
    finally:
        if pair is not None:
            pair.resume()
        manager.close()


def ps_lines() -> list[str]:
    return subprocess.run(["ps", "-ww", "-eo", "args"], capture_output=True, text=True,
                          check=False).stdout.splitlines()


def one(manager: Manager, node_id: int, statement: str) -> str:
    answer = manager.sql(node_id, statement)
    assert answer.returncode == 0, answer.stderr
    return answer.stdout.rstrip("\n")


def mysqld_pid(manager: Manager, node_id: int) -> int:
    return int((manager.node_dir(node_id) / MYSQLD_PID_FILE).read_text())


def rows_digest(manager: Manager, node_id: int, upto: int) -> str:
    return one(manager, node_id, "SELECT COUNT(*), SUM(CRC32(CONCAT(id, ':', v)))"
               f" FROM src.t WHERE id <= {upto}")


def sequence(position: str, domain: int = 0) -> int:
    for item in filter(None, position.split(",")):
        d, _, seq = item.split("-")
        if int(d) == domain:
            return int(seq)
    return 0


class Writer(threading.Thread):
    """Keeps inserting one row per transaction into ``src.t`` of a node."""

    def __init__(self, manager: Manager, node_id: int) -> None:
        super().__init__(daemon=True)
        self.connection = pymysql.connect(
            unix_socket=str(manager.node_dir(node_id) / MYSQLD_SOCKET_FILE),
            user="root", password=manager.root_password.encode(), autocommit=True)
        self.halt = threading.Event()
        self.done = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            with self.connection.cursor() as cursor:
                while not self.halt.is_set():
                    cursor.execute("INSERT INTO src.t (v) VALUES (%s)", (f"live-{self.done}",))
                    self.done += 1
        except BaseException as exc:
            self.error = exc
        finally:
            self.connection.close()


class PsWatcher(threading.Thread):
    """Samples the command lines of the backup programs while they run."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.halt = threading.Event()
        self.seen: set[str] = set()

    def run(self) -> None:
        while not self.halt.wait(0.02):
            self.seen.update(line for line in ps_lines()
                             if any(p in line.split(" ")[0] for p in BACKUP_PROGRAMS))


def logs_of(manager: Manager, node_id: int) -> str:
    node = manager.node_dir(node_id)
    files = [node / "agent.log", *node.glob("*.out"), *node.glob("*.err"),
             *(node / "mysql" / "log").glob("*")]
    return "".join(f.read_text(errors="replace") for f in files if f.is_file())


def test_bad_sources_are_refused(pair: Pair) -> None:
    pair.pause()
    for source in ["ftp://127.0.0.1:60000/", "https://127.0.0.1/", "127.0.0.1:60000",
                   "http://127.0.0.1:60000/",
                   "http://root:pw@127.0.0.1:60000/", "http://127.0.0.1:60000/x?y=1",
                   "http://:60000/", "http://127.0.0.1:99999/", "", "http://a b:1/"]:
        text = pair.seed_error(source)
        assert text.startswith("Invalid argument: source"), (source, text)
    text = pair.seed_error(pair.urls[pair.target])
    assert text.startswith("Invalid argument: source DETAIL:that is this node"), text
    text = rpc_error(lambda: pair.call(pair.target, "seed_from", {}))
    assert text.startswith("Missing argument: source"), text
    # A writable server (the master) is never overwritten.
    if one(pair.manager, pair.source, "SELECT @@global.read_only") == "0":
        text = rpc_error(lambda: pair.call(pair.source, "seed_from",
                                           {"source": pair.urls[pair.target]}))
        assert "this server takes writes" in text, text


class FakeSource(ThreadingHTTPServer):
    """Answers every request with ``body`` as a complete reply of ``media_type``, over
    TLS with a certificate of the service's CA (as a node of the service would)."""

    def __init__(self, manager: Manager, body: bytes,
                 media_type: str = "application/octet-stream") -> None:
        self.body = body
        self.requests = 0
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                fake.requests += 1
                self.send_response(200)
                self.send_header("Content-Type", media_type)
                self.send_header("Content-Length", str(len(fake.body)))
                self.end_headers()
                self.wfile.write(fake.body)

            def log_message(self, *args: object) -> None:
                pass

        super().__init__(("127.0.0.1", free_port()), Handler)
        authority = Authority.load_or_create(manager.state_dir / "pki", manager.service_id)
        issued = authority.issue("fake-source", ips=("127.0.0.1",))
        directory = Path(tempfile.mkdtemp(prefix="cq-fake-"))
        (directory / "c.pem").write_text(issued.cert_pem + issued.key_pem)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(str(directory / "c.pem"))
        shutil.rmtree(directory)
        self.socket = context.wrap_socket(self.socket, server_side=True)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.server_address[1]}/"


def fetch_backup(pair: Pair, node_id: int) -> bytes:
    async def read() -> bytes:
        async with pair.manager.agent_client(node_id) as client, \
                client.stream("backup_stream") as stream:
            return b"".join([chunk async for chunk in stream.chunks()])

    return asyncio.run(read())


def last_files(stream: bytes) -> int:
    """Where the chunk of ``xtrabackup_info`` (written last) starts in an xbstream."""
    # A chunk: magic (8 bytes), flags (1), type (1), path length (4, little-endian), path...
    name = b"xtrabackup_info"
    at = stream.find(len(name).to_bytes(4, "little") + name) - 10
    assert at > 0 and stream[at:at + 8] == b"XBSTCK01"
    return at


def test_failed_seeds_leave_the_node_on_its_old_data(pair: Pair) -> None:
    manager = pair.manager
    pair.pause()
    one(manager, pair.target, "CREATE DATABASE IF NOT EXISTS keep_me")
    pid = mysqld_pid(manager, pair.target)
    whole = fetch_backup(pair, pair.source)
    assert whole.startswith(b"XBSTCK01")
    fakes = [
        FakeSource(manager, b'{"result": null, "error": "Not authorized", "id": 1}',
                   "application/json"),
        FakeSource(manager, b"not an xbstream" * 1000),
        FakeSource(manager, whole[: len(whole) // 2]),  # complete replies of cut copies: mid-file,
        FakeSource(manager, whole[:last_files(whole)]),  # and before the files written last
    ]
    cases = [
        (f"https://127.0.0.1:{free_port()}/", "Cannot reach"),
        (fakes[0].url, "Not authorized"),
        (fakes[1].url, "the copy is not an xbstream"),
        (fakes[2].url, "the copy is incomplete (it ends in the middle of a file)"),
        (fakes[3].url, "the copy is incomplete (it ends before mariabackup's info file)"),
    ]
    try:
        for source, expected in cases:
            text = pair.seed_error(source)
            assert expected in text, (source, text)
            # Never stopped: the copy failed before the swap.
            assert mysqld_pid(manager, pair.target) == pid
            assert "keep_me" in one(manager, pair.target, "SHOW DATABASES")
    finally:
        for fake in fakes:
            fake.shutdown()
    assert [fake.requests for fake in fakes] == [1, 1, 1, 1]
    assert not list((manager.node_dir(pair.target) / "mysql").glob(".seed-*"))
    state = pair.call(pair.target, "get_server_state", verb="GET")["return"]
    assert state["mysqld"]["answering"] is True, state


def test_a_copy_that_does_not_start_is_rolled_back(pair: Pair) -> None:
    """A copy the agent cannot log in to: its grant tables on disk hold another root
    password (changed on the source without FLUSH PRIVILEGES, so the source itself
    still accepts the real one). The agent puts the old datadir back and starts that."""
    manager = pair.manager
    pair.pause()
    one(manager, pair.target, "CREATE DATABASE IF NOT EXISTS keep_me")
    pid = mysqld_pid(manager, pair.target)
    where = "WHERE User = 'root' AND Host = 'localhost'"
    saved = one(manager, pair.source, f"SELECT HEX(Priv) FROM mysql.global_priv {where}")
    other_hash = "*" + "0" * 40
    one(manager, pair.source, "SET SESSION sql_log_bin = 0; UPDATE mysql.global_priv SET Priv ="
        f" JSON_SET(Priv, '$.authentication_string', '{other_hash}') {where}")
    try:
        copy = fetch_backup(pair, pair.source)
    finally:
        one(manager, pair.source, "SET SESSION sql_log_bin = 0; UPDATE mysql.global_priv"
            f" SET Priv = UNHEX('{saved}') {where}")
    fake = FakeSource(manager, copy)
    try:
        text = pair.seed_error(fake.url)
    finally:
        fake.shutdown()
    assert "mysqld did not start on the new data; the old data is back" in text, text
    assert "Access denied for user 'root'@'localhost'" in text, text
    assert mysqld_pid(manager, pair.target) != pid  # stopped for the swap, started again
    assert "keep_me" in one(manager, pair.target, "SHOW DATABASES")
    assert one(manager, pair.target, "SELECT @@server_id") == str(pair.target)
    state = pair.call(pair.target, "get_server_state", verb="GET")["return"]
    assert state["mysqld"]["answering"] is True and state["state"] == "RUNNING", state
    assert not list((manager.node_dir(pair.target) / "mysql").glob(".seed-*"))


def test_one_copy_at_a_time_and_a_reader_that_leaves(pair: Pair) -> None:
    manager = pair.manager
    pair.pause()
    source_log = manager.node_dir(pair.source) / "agent.log"
    broken_before = source_log.read_text().count("backup stream broken off")

    async def seed_while_a_backup_is_held() -> tuple[str, Any]:
        async with manager.agent_client(pair.source) as client, \
                client.stream("backup_stream") as stream:
            chunks = stream.chunks()  # kept referenced: the stream stays open
            first = await anext(chunks)
            assert first.startswith(b"XBSTCK01")
            # The source is busy streaming to us: a seed from it waits its turn...
            seeding = asyncio.create_task(asyncio.to_thread(pair.seed, pair.urls[pair.source]))
            await asyncio.sleep(1.5)
            assert not seeding.done()
            # ... and the node being seeded takes no second seed meanwhile.
            busy = await asyncio.to_thread(pair.seed_error, pair.urls[pair.source])
        # Leaving the block closed our connection half-way through the copy.
        return busy, await seeding

    busy, result = asyncio.run(seed_while_a_backup_is_held())
    assert f"busy: seeding from {pair.urls[pair.source]} in progress on node {pair.target}" \
        in busy, busy
    assert result["return"] == "OK" and GTID_LIST.fullmatch(result["gtid_position"]), result
    # The reader that went away had its mariabackup stopped.
    assert source_log.read_text().count("backup stream broken off") == broken_before + 1
    backup_cnf = str(manager.node_dir(pair.source) / "mysql" / "backup.cnf")
    assert not any(backup_cnf in line for line in ps_lines())
    assert not list((manager.node_dir(pair.source) / "mysql").glob(".backup-*"))


def test_the_copy_over_the_rpc_stream_and_the_socket_checks(pair: Pair) -> None:
    manager = pair.manager
    pair.pause()
    one(manager, pair.target, "CREATE DATABASE IF NOT EXISTS gone_after_copy")
    result = pair.call(pair.target, "seed_from", {"source": pair.urls[pair.source],
                                                   "transport": "http"})
    assert result["return"] == "OK" and result["transport"] == "http", result
    assert GTID_LIST.fullmatch(result["gtid_position"]), result
    assert "gone_after_copy" not in one(manager, pair.target, "SHOW DATABASES")
    assert rows_digest(manager, pair.target, ROWS) == rows_digest(manager, pair.source, ROWS)

    # Asked for the socket only, a source that cannot send over one is an error...
    fake = FakeSource(manager, b"XBSTCK01 never read")
    try:
        text = rpc_error(lambda: pair.call(pair.target, "seed_from",
                                           {"source": fake.url, "transport": "socket"}))
    finally:
        fake.shutdown()
    assert "501" in text or "Unsupported method" in text, text
    assert fake.requests == 0  # and it was not asked for its RPC stream
    text = rpc_error(lambda: pair.call(pair.target, "seed_from",
                                       {"source": pair.urls[pair.source], "transport": "ftp"}))
    assert text.startswith("Invalid argument: transport"), text

    # backup_push checks what it is given, and says when it cannot connect.
    good = {"host": "127.0.0.1", "port": free_port(), "ticket": "ab" * 32}
    for bad, name in [({"host": "a b"}, "host"), ({"host": "-x.example"}, "host"),
                      ({"port": 0}, "port"), ({"port": "80"}, "port"),
                      ({"ticket": "AB" * 32}, "ticket"), ({"ticket": "ab"}, "ticket")]:
        params = {**good, **bad}
        text = rpc_error(lambda: pair.call(pair.source, "backup_push", params))  # noqa: B023
        assert text.startswith(f"Invalid argument: {name}"), (bad, text)
    text = rpc_error(lambda: pair.call(pair.source, "backup_push", {**good, "extra": 1}))
    assert text.startswith("Unexpected arguments"), text
    text = rpc_error(lambda: pair.call(pair.source, "backup_push", good))
    assert text.startswith("Cannot reach 127.0.0.1:"), text
    backup_cnf = str(manager.node_dir(pair.source) / "mysql" / "backup.cnf")
    assert not any(backup_cnf in line for line in ps_lines())


def test_the_logical_copy(pair: Pair) -> None:
    """``method=logical``: a dump of the source, its accounts and its position."""
    manager, source, target = pair.manager, pair.source, pair.target
    pair.pause()
    one(manager, source, "CREATE USER IF NOT EXISTS 'copied'@'%' IDENTIFIED BY 'pw-Copied1';"
        " GRANT SELECT ON src.* TO 'copied'@'%'; CREATE ROLE IF NOT EXISTS reader_role")
    one(manager, target, "SET SESSION sql_log_bin = 0; CREATE DATABASE IF NOT EXISTS stale;"
        " CREATE USER IF NOT EXISTS 'stale'@'%'; SET SESSION sql_log_bin = 1;"
        " CREATE DATABASE IF NOT EXISTS stale_logged")
    pid = mysqld_pid(manager, target)
    try:
        result = pair.call(target, "seed_from", {"source": pair.urls[source],
                                                 "method": "logical"})
    finally:
        one(manager, source, "DROP USER IF EXISTS 'copied'@'%'; DROP ROLE IF EXISTS reader_role")
    assert result["return"] == "OK" and result["method"] == "logical", result
    gtid = result["gtid_position"]
    assert GTID_LIST.fullmatch(gtid) and result["bytes"] > ROWS * 100, result
    assert mysqld_pid(manager, target) == pid  # loaded into the running server
    assert rows_digest(manager, target, ROWS) == rows_digest(manager, source, ROWS)
    assert one(manager, target, "CHECKSUM TABLE src.a").split("\t")[1] == \
        one(manager, source, "CHECKSUM TABLE src.a").split("\t")[1]
    databases = one(manager, target, "SHOW DATABASES").split()
    assert "stale" not in databases and "stale_logged" not in databases
    users = one(manager, target, "SELECT CONCAT(User, '@', Host) FROM mysql.user").split()
    assert "copied@%" in users and "stale@%" not in users and "reader_role@" in users, users
    assert "GRANT SELECT ON `src`.* TO `copied`@`%`" in one(
        manager, target, "SHOW GRANTS FOR 'copied'@'%'")
    # Nothing of the load went into the target's binlog: its only position is the copy's.
    positions = one(manager, target, "SELECT @@gtid_binlog_pos, @@gtid_slave_pos,"
                    " @@gtid_current_pos").split("\t")
    assert positions == ["", gtid, gtid], positions
    assert sequence(one(manager, source, "SELECT @@gtid_binlog_pos")) >= sequence(gtid)
    assert manager.root_password not in logs_of(manager, target)

    # What is not a whole dump is refused (the server is left emptied, positionless).
    fakes = [FakeSource(manager, b"-- MariaDB dump 10.19\nCREATE DATABASE half;\n"),
             FakeSource(manager, b"SELECT 1;\n" * 100)]
    try:
        text = rpc_error(lambda: pair.call(target, "seed_from",
                                           {"source": fakes[0].url, "method": "logical"}))
        assert "the copy is incomplete (the dump does not end as completed)" in text, text
        text = rpc_error(lambda: pair.call(target, "seed_from",
                                           {"source": fakes[1].url, "method": "logical"}))
        assert "the copy is not a dump of mariadb-dump" in text, text
    finally:
        for fake in fakes:
            fake.shutdown()
    assert one(manager, target, "SELECT @@gtid_current_pos") == ""
    text = rpc_error(lambda: pair.call(target, "seed_from",
                                       {"source": pair.urls[source], "method": "copy"}))
    assert text.startswith("Invalid argument: method"), text
    # Put the target back on a physical copy for the tests that follow.
    assert pair.seed(pair.urls[source])["method"] == "physical"


def test_seed_copies_a_node_that_keeps_taking_writes(pair: Pair) -> None:
    manager, source, target = pair.manager, pair.source, pair.target
    pair.pause()
    one(manager, target, "CREATE DATABASE only_on_target")
    before_max = int(one(manager, source, "SELECT MAX(id) FROM src.t"))
    before_count = int(one(manager, source, "SELECT COUNT(*) FROM src.t"))
    before_gtid = one(manager, source, "SELECT @@gtid_binlog_pos")
    writer, ps = Writer(manager, source), PsWatcher()
    writer.start()
    ps.start()
    wait_until(lambda: writer.done > 50, 10, 0.01, "writer going")
    try:
        writes_at_start = writer.done
        started = time.monotonic()
        result = pair.seed(pair.urls[source])
        took = time.monotonic() - started
        writes_during = writer.done - writes_at_start
    finally:
        writer.halt.set()
        writer.join(10)
        ps.halt.set()
        ps.join(10)
    assert writer.error is None, writer.error
    # The source kept taking writes throughout the copy.
    assert writes_during > 20, (writes_during, took)

    assert result["return"] == "OK", result
    gtid = result["gtid_position"]
    assert GTID_LIST.fullmatch(gtid), gtid
    assert result["bytes"] > 4 * 2**20 and 0 < result["seconds"] < took + 1
    assert result["transport"] == "socket", result  # mariabackup wrote straight to mbstream
    print(f"\nseed: {result['bytes'] / 2**20:.1f} MB in {result['seconds']:.2f} s "
          f"(prepare {result['prepare_seconds']:.2f} s, stop-swap-start "
          f"{result['swap_seconds']:.2f} s), {writes_during} writes on the source meanwhile,"
          f" GTID {gtid}")

    # The target now holds the source's data as of the copy: all rows from before it...
    assert rows_digest(manager, target, before_max) == rows_digest(manager, source, before_max)
    assert one(manager, target, "CHECKSUM TABLE src.a").split("\t")[1] == \
        one(manager, source, "CHECKSUM TABLE src.a").split("\t")[1]
    assert "only_on_target" not in one(manager, target, "SHOW DATABASES")
    # ... and exactly the writes up to the GTID position it reports (one per transaction).
    copied = int(one(manager, target, "SELECT COUNT(*) FROM src.t"))
    assert copied >= before_count
    assert copied - before_count == sequence(gtid) - sequence(before_gtid)
    assert copied < int(one(manager, source, "SELECT COUNT(*) FROM src.t"))  # not caught up
    assert sequence(one(manager, source, "SELECT @@gtid_binlog_pos")) > sequence(gtid)

    # What MariaDB reports: the copy brings no binlog (the restored server's is empty);
    # the copy's position is recorded as its slave position, hence its current one.
    positions = one(manager, target, "SELECT @@gtid_binlog_pos, @@gtid_slave_pos,"
                    " @@gtid_current_pos, @@server_id").split("\t")
    assert positions == ["", gtid, gtid, str(target)], positions
    assert one(manager, target, "SHOW ALL SLAVES STATUS") == ""  # replicates from nobody

    # The agent's own session reconnected to the new server.
    state = pair.call(target, "get_server_state", verb="GET")["return"]
    assert state["mysqld"]["answering"] is True and state["state"] == "RUNNING", state
    users = pair.call(target, "get_all_users", verb="GET")
    assert users, users

    # No secret anywhere it should not be.
    password = manager.root_password
    cnf = manager.node_dir(source) / "mysql" / "backup.cnf"
    assert stat.S_IMODE(cnf.stat().st_mode) == 0o600
    assert password in cnf.read_text() or password.replace('"', '\\"') in cnf.read_text()
    assert any("--backup" in line and "--stream=xbstream" in line for line in ps.seen), ps.seen
    assert any("mbstream" in line for line in ps.seen), ps.seen
    assert not [line for line in ps.seen if password in line]
    for node_id in (source, target):
        assert password not in logs_of(manager, node_id)
        assert not list((manager.node_dir(node_id) / "mysql").glob(".seed-*"))
        assert not list((manager.node_dir(node_id) / "mysql").glob(".backup-*"))

    # The manager, let go on, sees the target RUNNING.
    pair.resume()
    wait_until(lambda: (n := manager.node(target))["state"] == "RUNNING" and n["isRunningMySQL"],
               30, 0.2, "target RUNNING")
    wait_until(lambda: any(f"data replaced by a copy from {pair.urls[source]}"
                           in e.get("message", "") for e in manager.node(target)["history"]),
               15, 0.2, "the seed in the target's history")
