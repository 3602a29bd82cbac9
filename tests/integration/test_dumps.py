"""Dumps in and out of real nodes through a real manager: send_mysqldump, load_dump, sqldump."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conpaassql.errors import RemoteError
from conpaassql.layout import AGENT_PID_FILE, MYSQLD_SOCKET_FILE
from conpaassql.manager.data_api import MAX_EXPORTS
from conpaassql.rpc import transfer
from conpaassql.rpc.client import RpcClient, call_blocking, read_chunks
from tests.integration.harness import Manager, rpc_error, wait_until

pytestmark = pytest.mark.integration

ROWS = 400_000  # about 50 MB of dump


class Pair:
    """A manager with a master and a slave replicating from it; the master holds src.t."""

    def __init__(self, manager: Manager, master: int, slave: int) -> None:
        self.manager = manager
        self.master = master
        self.slave = slave

    def sync(self) -> None:
        self.manager.sync_slaves(self.master, [self.slave])


@pytest.fixture(scope="module")
def pair(template_cache: Path) -> Iterator[Pair]:
    manager = Manager(template_cache).start()
    try:
        manager.post("add_nodes", count=2)
        master, slaves = manager.wait_topology(2)
        ok = manager.sql(master, (
            "CREATE DATABASE src; CREATE TABLE src.t (id INT PRIMARY KEY, name VARCHAR(40),"
            " note TEXT, price DECIMAL(10,2), at DATETIME) ENGINE=InnoDB;"
            f" INSERT INTO src.t SELECT seq, CONCAT('name-', seq, '-\\'quoted\\''),"
            " REPEAT(MD5(seq), 2), seq / 7, '2024-01-01' + INTERVAL seq SECOND"
            f" FROM src.seq_1_to_{ROWS};"))
        assert ok.returncode == 0, ok.stderr
        yield Pair(manager, master, slaves[0])
    finally:
        manager.close()


def checksum(manager: Manager, node_id: int, table: str) -> tuple[str, str]:
    """(rows, CHECKSUM TABLE) of ``table`` on the node."""
    answer = manager.sql(node_id, f"SELECT COUNT(*) FROM {table}; CHECKSUM TABLE {table}")
    assert answer.returncode == 0, answer.stderr
    lines = answer.stdout.split("\n")
    return lines[0], lines[1].split("\t")[1]


def native_dump(manager: Manager, node_id: int, database: str, out: Path) -> None:
    """``mariadb-dump`` run directly on the node (the tool users would run)."""
    socket = manager.node_dir(node_id) / MYSQLD_SOCKET_FILE
    defaults = manager.defaults_file()
    with open(out, "wb") as handle:
        done = subprocess.run(["mariadb-dump", f"--defaults-extra-file={defaults}",
                               "-S", str(socket), "--single-transaction", database],
                              stdout=handle, stderr=subprocess.PIPE, timeout=300, check=False)
    defaults.unlink()
    assert done.returncode == 0, done.stderr


class PeakRss:
    """Samples the resident memory of some processes while a block runs."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids
        self.start = {name: rss_mb(pid) for name, pid in pids.items()}
        self.peak = dict(self.start)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            for name, pid in self.pids.items():
                self.peak[name] = max(self.peak[name], rss_mb(pid))

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def growth(self) -> dict[str, float]:
        return {name: self.peak[name] - self.start[name] for name in self.pids}


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def test_upload_50mb_dump_streams_and_matches_the_source(pair: Pair, tmp_path: Path) -> None:
    manager, master, slave = pair.manager, pair.master, pair.slave
    dump = tmp_path / "src.sql"
    native_dump(manager, master, "src", dump)
    assert dump.stat().st_size > 40 * 2**20
    assert manager.sql(master, "CREATE DATABASE copy1").returncode == 0
    assert manager.process is not None
    agent_pid = int((manager.node_dir(master) / AGENT_PID_FILE).read_text())
    with PeakRss({"manager": manager.process.pid, "agent": agent_pid}) as rss:
        reply = manager.upload("send_mysqldump", "mysqldump", dump,
                               serviceNodeId=master, database="copy1")
    assert reply["nodes"] == [master]
    assert reply["bytes"] == dump.stat().st_size
    source = checksum(manager, master, "src.t")
    assert source[0] == str(ROWS)
    assert checksum(manager, master, "copy1.t") == source
    pair.sync()  # the slave got it through replication
    assert checksum(manager, slave, "copy1.t") == source
    # Streamed, not held: neither process grew by anything near the dump's size.
    growth = rss.growth()
    assert growth["manager"] < 25 and growth["agent"] < 25, growth
    history = manager.node(master)["history"]
    assert any(f"loaded into node {master}" in e.get("message", "") for e in history), history


def test_sqldump_round_trip_through_load_dump(pair: Pair, tmp_path: Path) -> None:
    manager, master, slave = pair.manager, pair.master, pair.slave
    exported = tmp_path / "export.sql"
    pair.sync()
    # A slave is a fine source for an export: it spares the master.
    size = manager.download("sqldump", exported, database="src", serviceNodeId=slave)
    assert size == exported.stat().st_size > 40 * 2**20
    data = exported.read_bytes()
    assert "-- Dump completed" in data[-200:].decode()
    # The GTID position of the copy, for seeding a slave from it.
    assert "MASTER_USE_GTID=slave_pos" in data[:4000].decode()
    assert "SET GLOBAL gtid_slave_pos='0-" in data[-2000:].decode()

    assert manager.post("create_database", database="copy2")["nodes"] == [master]
    reply = manager.upload("load_dump", "mysqldump_file", exported, database="copy2")
    assert reply["nodes"] == [master]  # the master only: the slave replicates it
    source = checksum(manager, master, "src.t")
    assert checksum(manager, master, "copy2.t") == source
    pair.sync()
    assert checksum(manager, slave, "copy2.t") == source


def test_whole_service_export_and_gzip_load(pair: Pair, tmp_path: Path) -> None:
    manager, master, slave = pair.manager, pair.master, pair.slave
    exported = tmp_path / "all.sql"
    manager.download("sqldump", exported)
    text = exported.read_bytes()
    assert b"CREATE DATABASE /*!32312 IF NOT EXISTS*/ `src`" in text
    assert b"CREATE DATABASE /*!32312 IF NOT EXISTS*/ `mysql`" not in text
    # A gzip dump (several members, as pigz or concatenated files make) loads as is.
    part = b"CREATE DATABASE zipped; USE zipped; CREATE TABLE z (a INT);\n"
    rows = b"".join(b"INSERT INTO z VALUES (%d);\n" % i for i in range(1000))
    packed = tmp_path / "z.sql.gz"
    packed.write_bytes(gzip.compress(part) + gzip.compress(rows))
    reply = manager.upload("send_mysqldump", "mysqldump", packed, serviceNodeId="all")
    assert reply["gzip"] is True
    assert reply["sql_bytes"] == len(part) + len(rows)
    pair.sync()
    for node in (master, slave):
        assert manager.sql(node, "SELECT COUNT(*), SUM(a) FROM zipped.z").stdout.split() == \
            ["1000", str(sum(range(1000)))]


def test_dumps_straight_to_and_from_the_node(pair: Pair, tmp_path: Path) -> None:
    """As conpaassql-client sends and takes them: the manager grants, and the bytes go
    between the client and the node's agent alone; a grant is good once."""
    manager, master, slave = pair.manager, pair.master, pair.slave
    exported = tmp_path / "direct.sql"
    pair.sync()
    assert manager.post("create_database", database="copy3")["nodes"] == [master]

    def loads() -> int:
        return sum(f"loaded into node {master}" in e.get("message", "")
                   for e in manager.node(master)["history"])

    before = loads()

    async def scenario() -> tuple[str | None, Any, Any]:
        async with RpcClient(manager.url, token=manager.api_token) as client:
            async with transfer.stream(client, "sqldump", {"database": "src",
                                                           "serviceNodeId": slave}) as stream:
                with open(exported, "wb") as out:
                    async for chunk in stream.chunks():
                        out.write(chunk)
                node = stream.headers.get("x-conpaassql-node")
            with open(exported, "rb") as handle:
                reply = await transfer.upload(client, "load_dump", {"database": "copy3"},
                                              "mysqldump_file", "direct.sql",
                                              read_chunks(handle))
            link = await client.call("grant_sqldump", {"database": "src"}, verb="GET")
        async with transfer.agent_client(link) as agent:
            async with agent.stream("sqldump", {"database": "src"}) as stream:
                await anext(stream.chunks())
            try:  # the same grant again
                async with agent.stream("sqldump", {"database": "src"}):
                    pass
            except RemoteError as exc:
                again: Any = str(exc)
            else:
                again = None
        return node, reply, again

    node, reply, again = asyncio.run(scenario())
    assert node == str(slave)
    assert "-- Dump completed" in exported.read_bytes()[-200:].decode()
    assert reply["nodes"] == [master] and reply["bytes"] == exported.stat().st_size
    source = checksum(manager, master, "src.t")
    assert checksum(manager, master, "copy3.t") == source
    pair.sync()
    assert checksum(manager, slave, "copy3.t") == source
    assert again is not None and "answers its manager only" in again
    # The manager heard of the load from the node (its heartbeat).
    wait_until(lambda: loads() > before, 30, what="the load in the node's history")
    # A grant is refused where the call itself would be, in the same words.
    for params, expected in [
            ({"method": "send_mysqldump", "serviceNodeId": slave},
             f"Service in wrong state DETAIL:node {slave} is a slave"),
            ({"method": "load_dump", "serviceNodeId": master},
             "Unexpected arguments ['serviceNodeId']"),
            ({"method": "load_dump", "database": "mysql"}, "Invalid argument: database"),
            ({"method": "fence"}, "Invalid argument: method")]:
        text = rpc_error(lambda p=params: call_blocking(manager.url, "grant_load", p,
                                                         token=manager.api_token))
        assert text.startswith(expected), (params, text)
    assert rpc_error(lambda: manager.get("grant_sqldump", serviceNodeId=99)).startswith(
        "Invalid argument: serviceNodeId")
    # The same for an account to run mariadb-dump with; and nothing is made.
    for method, params, expected in [
            ("grant_sqldump_login", {"serviceNodeId": 99}, "Invalid argument: serviceNodeId"),
            ("grant_sqldump_login", {"database": "mysql"}, "Invalid argument: database"),
            ("grant_sqldump_login", {"database": "no_such_db"},
             "Invalid argument: database DETAIL:no database 'no_such_db'"),
            ("grant_sqldump_login", {"database": "src", "user": "x"},
             "Unexpected arguments ['user']"),
            ("release_sqldump_login", {}, "Missing argument: user"),
            ("release_sqldump_login", {"user": "conpaassql_dump_000000000000"},
             "Invalid argument: user"),
            ("release_sqldump_login", {"user": ["x"]}, "Invalid argument: user")]:
        text = rpc_error(lambda m=method, p=params: manager.get(m, **p))
        assert text.startswith(expected), (method, params, text)
    assert dump_accounts(manager, master) == dump_accounts(manager, slave) == []


def test_dump_with_an_error_in_the_middle(pair: Pair, tmp_path: Path) -> None:
    manager, master = pair.manager, pair.master
    dump = tmp_path / "broken.sql"
    lines = ["CREATE DATABASE broken;", "USE broken;", "CREATE TABLE b (a INT);"]
    lines += [f"INSERT INTO b VALUES ({i});" for i in range(50)]
    lines += ["INSERT INTO b VALUES (1,,2);"]  # line 54
    lines += [f"INSERT INTO b VALUES ({i});" for i in range(50, 100)]
    dump.write_text("\n".join(lines) + "\n")
    text = rpc_error(lambda: manager.upload("load_dump", "mysqldump_file", dump))
    assert text.startswith("MySQL reported an error: ERROR 1064 (42000) at line 54"), text
    assert "You have an error in your SQL syntax" in text
    assert "statement: INSERT INTO b VALUES (1,,2)" in text
    # The client stopped at the error, like `mariadb < dump.sql`.
    assert manager.sql(master, "SELECT COUNT(*) FROM broken.b").stdout.strip() == "50"
    assert any("failed" in e.get("message", "") for e in manager.node(master)["history"])
    # Not busy afterwards: the next load goes through.
    good = tmp_path / "good.sql"
    good.write_text("INSERT INTO broken.b VALUES (1000);\n")
    assert manager.upload("load_dump", "mysqldump_file", good)["nodes"] == [master]


def test_bad_requests_and_slaves_change_nothing(pair: Pair, tmp_path: Path) -> None:
    manager, master, slave = pair.manager, pair.master, pair.slave
    dump = tmp_path / "d.sql"
    dump.write_text("CREATE DATABASE should_not_exist;\n")
    before = {node: manager.sql(node, "SHOW DATABASES").stdout for node in (master, slave)}
    cases = [
        ({"serviceNodeId": 99}, "Invalid argument: serviceNodeId"),
        ({"serviceNodeId": "two"}, "Invalid argument: serviceNodeId"),
        ({"serviceNodeId": slave}, f"Service in wrong state DETAIL:node {slave} is a slave"),
        ({"serviceNodeId": master, "database": "mysql"}, "Invalid argument: database"),
        ({"serviceNodeId": master, "database": "a`b; DROP DATABASE src; --"},
         "Invalid argument: database"),
        ({"serviceNodeId": master, "database": "nope"}, "Invalid argument: database DETAIL:no "),
        ({"serviceNodeId": master, "bogus": "1"}, "Unexpected arguments ['bogus']"),
    ]
    for params, expected in cases:
        text = rpc_error(lambda p=params: manager.upload("send_mysqldump", "mysqldump", dump,
                                                          **p))
        assert text.startswith(expected), (params, text)
    # The slave's own agent refuses too: its server is read-only.
    agent = manager.agent_client(slave)

    async def direct() -> None:
        async with agent:
            with open(dump, "rb") as handle:
                await agent.upload_file("send_mysqldump", {}, "mysqldump", handle, "d.sql")

    text = rpc_error(lambda: asyncio.run(direct()))
    assert "read-only (a slave)" in text, text
    assert {node: manager.sql(node, "SHOW DATABASES").stdout
            for node in (master, slave)} == before
    for params, expected in [({"database": "nope"}, "Invalid argument: database DETAIL:no "),
                             ({"database": "mysql"}, "Invalid argument: database"),
                             ({"serviceNodeId": 7}, "Invalid argument: serviceNodeId")]:
        out = tmp_path / "x.sql"
        assert rpc_error(lambda p=params, o=out: manager.download("sqldump", o, **p)) \
            .startswith(expected), params
        assert out.stat().st_size == 0


def test_client_commands_load_and_export(pair: Pair, tmp_path: Path) -> None:
    """``conpaassql-client`` as a user runs it: load a file, export to a file and to stdout."""
    manager, master, slave = pair.manager, pair.master, pair.slave
    client = [sys.executable, "-m", "conpaassql.client", "127.0.0.1", str(manager.port)]
    dump = tmp_path / "small.sql"
    dump.write_text("CREATE TABLE s (a INT PRIMARY KEY);\n"
                    + "".join(f"INSERT INTO s VALUES ({i});\n" for i in range(500)))
    made = subprocess.run([*client, "create_database", "cli"], capture_output=True,
                          text=True, timeout=60, check=False)
    assert made.returncode == 0, made.stderr
    loaded = subprocess.run([*client, "load_dump", str(dump), "--database", "cli"],
                            capture_output=True, text=True, timeout=120, check=False)
    assert loaded.returncode == 0, loaded.stderr
    assert json.loads(loaded.stdout)["nodes"] == [master]
    pair.sync()
    assert manager.sql(slave, "SELECT COUNT(*) FROM cli.s").stdout.strip() == "500"

    out = tmp_path / "cli.sql"
    exported = subprocess.run([*client, "sqldump", "cli", "--node", str(slave), "-o", str(out)],
                              capture_output=True, text=True, timeout=120, check=False)
    assert exported.returncode == 0, exported.stderr
    assert b"INSERT INTO `s` VALUES" in out.read_bytes()
    piped = subprocess.run([*client, "sqldump", "cli"], capture_output=True, timeout=120,
                           check=False)
    assert piped.returncode == 0, piped.stderr
    assert b"INSERT INTO `s` VALUES" in piped.stdout
    assert b"-- Dump completed on" in piped.stdout[-100:]
    assert piped.stderr == b""  # no progress bar when nobody watches

    failed = subprocess.run([*client, "sqldump", "no_such_db", "-o", str(tmp_path / "n.sql")],
                            capture_output=True, text=True, timeout=120, check=False)
    assert failed.returncode == 1
    assert "Invalid argument: database" in failed.stderr
    assert not (tmp_path / "n.sql").exists()


def test_exports_at_once_are_bounded(pair: Pair) -> None:
    """Four sqldump streams at once; a fifth is refused as busy, and taken once one ends
    (even one whose reader went away part-way)."""
    manager = pair.manager
    # Big enough that a held stream cannot end into the sockets' buffers.
    made = manager.sql(pair.master, "CREATE DATABASE IF NOT EXISTS big; CREATE TABLE IF NOT "
                       "EXISTS big.t (id INT PRIMARY KEY, v TEXT); INSERT IGNORE INTO big.t "
                       "SELECT seq, REPEAT(MD5(seq), 16) FROM big.seq_1_to_40000")
    assert made.returncode == 0, made.stderr

    async def scenario() -> tuple[str, int]:
        readers = []  # kept: a reader dropped would close its stream
        async with contextlib.AsyncExitStack() as held:
            client = await held.enter_async_context(RpcClient(manager.url))
            for _ in range(MAX_EXPORTS):
                stream = await held.enter_async_context(client.stream("sqldump",
                                                                      {"database": "big"}))
                readers.append(stream.chunks())
                await anext(readers[-1])  # started, and held open
            try:
                async with RpcClient(manager.url) as other, \
                        other.stream("sqldump", {"database": "big"}):
                    pass
            except RemoteError as exc:
                refused = str(exc)
            else:
                raise AssertionError("a fifth export was taken")
        await asyncio.sleep(0.5)  # the readers went away: their exports end
        async with RpcClient(manager.url) as client:
            with open(os.devnull, "wb") as sink:
                size = await client.download("sqldump", {"database": "big"}, sink)
        made = await asyncio.to_thread(manager.sql, pair.master, "DROP DATABASE big")
        assert made.returncode == 0, made.stderr
        return refused, size

    refused, size = asyncio.run(scenario())
    assert refused.startswith(f"Service in wrong state DETAIL:busy: {MAX_EXPORTS} dumps"), \
        refused
    assert size > 0


# -- sqldump made by the client's own mariadb-dump ---------------------------------------


def dump_accounts(manager: Manager, node_id: int) -> list[str]:
    """The short-lived dump accounts on the node, and whether each is locked."""
    answer = manager.sql(node_id, "SELECT User,"
                                  " COALESCE(JSON_EXTRACT(Priv, '$.account_locked'), 'false')"
                                  " FROM mysql.global_priv"
                                  " WHERE LEFT(User, 16) = 'conpaassql_dump_' ORDER BY User")
    assert answer.returncode == 0, answer.stderr
    return [line for line in answer.stdout.splitlines() if line]


def gtid_binlog_pos(manager: Manager, node_id: int) -> str:
    return manager.sql(node_id, "SELECT @@global.gtid_binlog_pos").stdout.strip()


def test_a_dump_account_serves_one_login_over_tls_on_its_node_only(pair: Pair) -> None:
    """``grant_sqldump_login``: an account on the master alone (nothing replicated, no
    GTID spent), refused without TLS, locked once its one session is open, refused a
    second login, and dropped when that session ends."""
    manager, master, slave = pair.manager, pair.master, pair.slave
    before = gtid_binlog_pos(manager, master)
    login = manager.get("grant_sqldump_login", database="src", serviceNodeId=master)
    assert (login["node"], login["host"]) == (master, manager.node(master)["ip"])
    assert login["args"][-2:] == ["--", "src"] and "--master-data=2" in login["args"]
    user, password, where = login["user"], login["password"], (login["host"], login["port"])
    assert f"{user}\tfalse" in dump_accounts(manager, master)
    pair.sync()
    assert dump_accounts(manager, slave) == []
    assert gtid_binlog_pos(manager, master) == before
    grants = manager.sql(master, f"SHOW GRANTS FOR '{user}'@'%'").stdout.splitlines()
    assert grants[0].startswith(f"GRANT USAGE ON *.* TO `{user}`@`%`")  # nothing global
    assert "REQUIRE SSL WITH MAX_CONNECTIONS_PER_HOUR 1 MAX_USER_CONNECTIONS 1" in grants[0]
    assert sorted(grants[1:]) == [
        f"GRANT SELECT ON `mysql`.`proc` TO `{user}`@`%`",
        f"GRANT SELECT, SHOW VIEW, EVENT, TRIGGER ON `src`.* TO `{user}`@`%`"]

    plain = subprocess.run(
        ["mariadb", f"--defaults-file={manager.defaults_file(user, password)}",
         "-h", where[0], "-P", str(where[1]), "--skip-ssl", "-e", "SELECT 1"],
        capture_output=True, text=True, timeout=30, check=False)
    assert plain.returncode != 0 and "Access denied" in plain.stderr
    session = subprocess.Popen(
        ["mariadb", f"--defaults-file={manager.defaults_file(user, password)}",
         "-h", where[0], "-P", str(where[1]), "--ssl", f"--ssl-ca={manager.ca_file}",
         "--ssl-verify-server-cert", "--batch", "--skip-column-names",
         "-e", "SELECT SLEEP(3); SELECT COUNT(*) FROM src.t"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_until(lambda: f"{user}\ttrue" in dump_accounts(manager, master)
                   or session.poll() is not None, 10, 0.1,
                   "the account locked once its session is open")
        assert session.poll() is None, session.communicate()
        again = manager.sql(master, "SELECT 1", user=user, password=password, tcp=where)
        assert again.returncode != 0
        assert "locked" in again.stderr or "max_connections_per_hour" in again.stderr
        out, err = session.communicate(timeout=30)
    finally:
        if session.poll() is None:
            session.kill()
            session.wait()
    assert session.returncode == 0, err
    assert out.split() == ["0", str(ROWS)]  # the locked account's session went on
    wait_until(lambda: not any(line.startswith(user) for line in dump_accounts(manager, master)),
               15, 0.2, "the account dropped once its session ended")
    assert gtid_binlog_pos(manager, master) == before


def test_sqldump_by_this_hosts_mariadb_dump_is_whole_and_leaves_no_account(
        pair: Pair, tmp_path: Path) -> None:
    """``conpaassql-client sqldump`` runs mariadb-dump here against the node: routines,
    triggers, events and views come along, the dump loads back to the same rows, and
    the account is gone afterwards."""
    manager, master, slave = pair.manager, pair.master, pair.slave
    made = manager.sql(master, (
        "CREATE DATABASE kit; CREATE TABLE kit.t (id INT PRIMARY KEY, v INT);"
        " INSERT INTO kit.t SELECT seq, seq * 3 FROM kit.seq_1_to_2000;"
        " CREATE VIEW kit.big AS SELECT * FROM kit.t WHERE v > 3000;"
        " CREATE PROCEDURE kit.triple(IN x INT) SELECT x * 3;"
        " USE kit; CREATE TRIGGER keep BEFORE INSERT ON t FOR EACH ROW SET NEW.v = NEW.id * 3;"
        " CREATE EVENT kit.tick ON SCHEDULE EVERY 1 DAY DISABLE DO SELECT 1;"))
    assert made.returncode == 0, made.stderr
    pair.sync()
    client = [sys.executable, "-m", "conpaassql.client", "127.0.0.1", str(manager.port)]
    out = tmp_path / "kit.sql"
    done = subprocess.run([*client, "sqldump", "kit", "--node", str(slave), "-o", str(out)],
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    text = out.read_text()
    for made_here in ("PROCEDURE `triple`", "TRIGGER keep", "EVENT `tick`",
                      "VIEW `big`", "INSERT INTO `t` VALUES"):
        assert made_here in text, made_here
    assert f"-- Host: {manager.node(slave)['ip']}" in text  # made over TCP, not by the agent
    history = [e["message"] for e in manager.get("get_service_history", limit=50)["history"]]
    assert f"dump account opened on node {slave} for kit" in history
    assert manager.sql(master, "CREATE DATABASE kit_copy").returncode == 0
    reply = manager.upload("load_dump", "mysqldump_file", out, database="kit_copy")
    assert reply["nodes"] == [master]
    assert checksum(manager, master, "kit_copy.t") == checksum(manager, master, "kit.t")
    wait_until(lambda: dump_accounts(manager, slave) == [], 15, 0.2, "no dump account left")


def test_sqldump_without_mariadb_dump_here_comes_from_the_agent(
        pair: Pair, tmp_path: Path) -> None:
    """A host without the tool takes the dump from the node's agent, as before."""
    manager = pair.manager
    empty = tmp_path / "bin"
    empty.mkdir()
    client = [sys.executable, "-m", "conpaassql.client", "127.0.0.1", str(manager.port)]
    opened = len([e for e in manager.get("get_service_history", limit=300)["history"]
                  if e["message"].startswith("dump account ")])
    out = tmp_path / "src.sql"
    done = subprocess.run([*client, "sqldump", "src", "-o", str(out)], capture_output=True,
                          text=True, timeout=120, check=False,
                          env={**os.environ, "PATH": str(empty)})
    assert done.returncode == 0, done.stderr
    text = out.read_text()
    assert "-- Host: localhost" in text and "-- Dump completed on" in text[-100:]
    assert opened == len([e for e in manager.get("get_service_history", limit=300)["history"]
                          if e["message"].startswith("dump account ")])


def test_a_dump_account_nobody_watches_is_dropped(pair: Pair) -> None:
    """One left by an earlier agent (or copied in with another node's data) goes when
    the node next opens one; one in use stays."""
    manager, slave = pair.manager, pair.slave
    leftover = "conpaassql_dump_0123456789ab"
    made = manager.sql(slave, f"SET STATEMENT sql_log_bin=0 FOR CREATE USER '{leftover}'@'%'")
    assert made.returncode == 0, made.stderr
    assert f"{leftover}\tfalse" in dump_accounts(manager, slave)
    login = manager.get("grant_sqldump_login", database="src", serviceNodeId=slave)
    assert dump_accounts(manager, slave) == [f"{login['user']}\tfalse"]
    assert manager.get("release_sqldump_login", user=login["user"]) == {
        "user": login["user"], "node": slave, "released": True}
    wait_until(lambda: dump_accounts(manager, slave) == [], 10, 0.1,
               "the released account dropped")
    assert "Invalid argument: user" in rpc_error(
        lambda: manager.get("release_sqldump_login", user=login["user"]))
