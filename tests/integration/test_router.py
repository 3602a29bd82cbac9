"""``conpaassql router`` with real HAProxy and real nodes: the writer address reaches
the master and the readers address the slaves, across a lagging slave, failovers,
a switchover and the manager's absence."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pymysql
import pytest

from conpaassql.layout import AGENT_PID_FILE, MYSQLD_PID_FILE
from testbed.router import Router, RouterWriter
from tests.integration import workload
from tests.integration.harness import REPO, Manager, Partition, free_port, wait_until

pytestmark = pytest.mark.integration

USER, PASSWORD = workload.APP_USER, workload.APP_PASSWORD


@pytest.fixture
def trio(template_cache: Path) -> Iterator[tuple[Manager, Router]]:
    """A master and two slaves with the app's table, and a router in front of them."""
    manager = Manager(template_cache).start()
    router = Router(manager, manager.subnet)
    try:
        manager.post("add_nodes", count=3)
        manager.wait_topology(3)
        workload.prepare(manager)
        router.start()
        yield manager, router
    finally:
        router.stop()
        manager.close()


def server_ids(manager: Manager) -> dict[int, int]:
    """``@@server_id`` -> node id, for every node."""
    found = {}
    for node in manager.nodes():
        answer = manager.sql(node["id"], "SELECT @@server_id")
        assert answer.returncode == 0, answer.stderr
        found[int(answer.stdout)] = node["id"]
    return found


def readers_reach(router: Router, ids: dict[int, int], count: int = 8) -> set[int]:
    """The nodes that ``count`` connections at once to the readers address reach."""
    connections = [router.connect(router.readers, USER, PASSWORD) for _ in range(count)]
    try:
        reached = set()
        for connection in connections:
            with connection.cursor() as cursor:
                cursor.execute("SELECT @@server_id, @@read_only")
                server_id, read_only = cursor.fetchone()
            assert read_only == 1
            reached.add(ids[int(server_id)])
        return reached
    finally:
        for connection in connections:
            connection.close()


def writer_node(router: Router, ids: dict[int, int]) -> int:
    return ids[int(router.ask(router.writer, USER, PASSWORD, "SELECT @@server_id"))]


def test_writes_and_reads_through_both_addresses(trio: tuple[Manager, Router]) -> None:
    manager, router = trio
    ids = server_ids(manager)
    master, slaves = manager.wait_topology(3)
    # The router registered: the service gives its addresses to connect to.
    info = wait_until(lambda: (i := manager.get("get_service_info"))["routers"] and i, 30,
                      0.2, "the router registered")
    assert info["endpoints"] == {"writer": {"host": router.host, "port": 3306},
                                 "readers": {"host": router.host, "port": 3307}}
    assert [r["name"] for r in info["routers"]] == ["r1"]
    wait_until(lambda: writer_node(router, ids) == master, 30, 0.2, "the writer address")
    connection = router.connect(router.writer, USER, PASSWORD, "app")
    with connection.cursor() as cursor:
        cursor.execute("SELECT @@read_only")
        assert cursor.fetchone() == (0,)
        cursor.executemany("INSERT INTO w VALUES (%s, 0)", [(n,) for n in range(1, 11)])
    connection.close()
    manager.sync_slaves(master, slaves)
    # The readers address: read-only servers, the connections spread over both slaves.
    assert router.ask(router.readers, USER, PASSWORD, "SELECT COUNT(*) FROM app.w") == 10
    wait_until(lambda: readers_reach(router, ids) == set(slaves), 30, 0.3,
               "connections on both slaves")
    with pytest.raises(pymysql.MySQLError, match="read-only"):
        router.ask(router.readers, USER, PASSWORD, "INSERT INTO app.w VALUES (99, 0)")
    # A slave whose SQL thread stops leaves the readers, and comes back.
    lagging, other = slaves
    assert manager.sql(lagging, "STOP SLAVE SQL_THREAD").returncode == 0
    wait_until(lambda: readers_reach(router, ids) == {other}, 30, 0.3,
               "the lagging slave out of the readers")
    assert manager.sql(lagging, "START SLAVE SQL_THREAD").returncode == 0
    wait_until(lambda: readers_reach(router, ids) == set(slaves), 30, 0.3,
               "the slave back in the readers")


def _outage(manager: Manager, router: Router, disrupt: Callable[[int], None]) -> None:
    """Unique inserts, each on a new connection to the writer address, while
    ``disrupt(master)`` happens: every acknowledged one is there afterwards."""
    ids = server_ids(manager)
    old_master = manager.get("list_nodes")["masters"][0]
    wait_until(lambda: writer_node(router, ids) == old_master, 30, 0.2, "the writer address")
    writer = RouterWriter(manager, USER, PASSWORD, address=router.writer).start()
    try:
        wait_until(lambda: len(writer.acked) > 50, 30, what="writes flowing")
        count = len(writer.acked)
        disrupt(old_master)
        wait_until(lambda: manager.get("list_nodes")["masters"] not in ([old_master], []),
                   60, 0.1, what="a new master")
        wait_until(lambda: len(writer.acked) > count + 100, 60, what="writes through the "
                   "writer address again")
    finally:
        writer.stop()
    new_master = manager.get("list_nodes")["masters"][0]
    assert new_master != old_master
    assert writer_node(router, ids) == new_master
    present = {int(x) for x in manager.sql(new_master, "SELECT id FROM app.w").stdout.split()}
    lost = sorted(set(writer.acked) - present)
    assert not lost, f"{len(lost)} acknowledged inserts lost, e.g. {lost[:10]}"
    sys.stderr.write(f"\nlongest time without a successful write through the router: "
                     f"{writer.longest_gap():.2f} s ({len(writer.acked)} inserts, "
                     f"{len(writer.failures)} failed tries)\n")


def _kill(manager: Manager, node: int, *pid_files: str) -> None:
    for pid_file in pid_files:
        os.kill(int((manager.node_dir(node) / pid_file).read_text()), signal.SIGKILL)


def test_writes_go_on_when_the_master_mysqld_is_killed(trio: tuple[Manager, Router]) -> None:
    manager, router = trio
    _outage(manager, router, lambda master: _kill(manager, master, MYSQLD_PID_FILE))


def test_writes_go_on_when_the_master_node_is_killed(trio: tuple[Manager, Router]) -> None:
    manager, router = trio
    _outage(manager, router,
            lambda master: _kill(manager, master, AGENT_PID_FILE, MYSQLD_PID_FILE))


def test_writes_go_on_through_a_switchover(trio: tuple[Manager, Router]) -> None:
    manager, router = trio

    def switch(master: int) -> None:
        target = manager.get("list_nodes")["slaves"][0]
        assert manager.post("set_up_replica_master", id=target)["master"] == target

    _outage(manager, router, switch)


def test_writes_go_on_when_the_master_is_cut_off_the_network(
        trio: tuple[Manager, Router]) -> None:
    """Every packet from or to the master's address dropped (nftables): the router's
    checks fail too, and the writer address follows the new master."""
    manager, router = trio
    master = manager.get("list_nodes")["masters"][0]
    partition = Partition(manager.node(master)["ip"])
    try:
        _outage(manager, router, lambda _: partition.__enter__())
    finally:
        partition.heal()


def test_routing_goes_on_without_the_manager(trio: tuple[Manager, Router]) -> None:
    manager, router = trio
    ids = server_ids(manager)
    master, slaves = manager.wait_topology(3)
    wait_until(lambda: writer_node(router, ids) == master, 30, 0.2, "the writer address")
    manager.kill()
    for n in range(5):
        assert writer_node(router, ids) == master
        router.ask(router.writer, USER, PASSWORD, f"INSERT INTO app.w VALUES ({n}, 0)")
        assert readers_reach(router, ids, 4) <= set(slaves)
    # Back, the manager adds a node: the router sends readers to it too.
    manager.start()
    manager.post("add_nodes", count=1)
    manager.wait_topology(4)
    ids = server_ids(manager)
    added = (set(ids.values()) - {master, *slaves}).pop()
    wait_until(lambda: added in readers_reach(router, ids), 60, 0.3, "the new slave reached")
    assert writer_node(router, ids) == master
    log = router.log.read_text()
    assert "routing to the 3 nodes last known" in log, log[-3000:]
    wait_until(lambda: router.log.read_text().count("registered with the manager") == 2, 30,
               0.2, "the router registered again")


def verified(router: Router, host: str, port: int,
             ca: Path | None = None) -> subprocess.CompletedProcess[str]:
    """The real client, verifying the server's certificate (against the service's CA
    unless ``ca`` says otherwise)."""
    defaults = router.manager.defaults_file(USER, PASSWORD)
    try:
        return subprocess.run(
            ["mariadb", f"--defaults-extra-file={defaults}", "-h", host, "-P", str(port),
             "--ssl", f"--ssl-ca={ca or router.manager.ca_file}", "--ssl-verify-server-cert",
             "--batch", "--skip-column-names", "-e", "SELECT @@read_only"],
            capture_output=True, text=True, timeout=30, check=False)
    finally:
        defaults.unlink()


def test_clients_verify_the_servers_through_the_router_and_straight(
        trio: tuple[Manager, Router]) -> None:
    """Once the router registered, every node's certificate names its addresses (and
    the node's own): a client that verifies the server connects either way."""
    manager, router = trio
    wait_until(lambda: manager.get("get_service_info")["routers"], 30, 0.2, "registered")
    master, slaves = manager.wait_topology(3)
    for (host, port), read_only in ((router.writer, "0"), (router.readers, "1")):
        done = wait_until(lambda h=host, p=port: (a := verified(router, h, p)).returncode
                          == 0 and a, 30, 0.3, f"a verified connection to {host}:{port}")
        assert done.stdout.strip() == read_only
    for node in (master, *slaves):
        done = verified(router, manager.node(node)["ip"], 3306)
        assert done.returncode == 0, done.stderr
    # The check is real: against other CAs, refused.
    refused = verified(router, *router.writer, ca=Path("/etc/ssl/certs/ca-certificates.crt"))
    assert refused.returncode != 0 and "certificate" in refused.stderr.lower(), refused.stderr


def _router_exits(*args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    done = subprocess.run([sys.executable, "-m", "conpaassql", "router", *args],
                          capture_output=True, text=True, timeout=60, cwd=REPO, check=False,
                          env={**os.environ, "CONPAASSQL_TOKEN": "", "CONPAASSQL_CA_FILE": "",
                               **(env or {})})
    return done.returncode, done.stderr.strip().splitlines()[-1]


def test_a_wrong_manager_address_token_or_ca_is_refused_at_start(
        template_cache: Path, tmp_path: Path) -> None:
    manager = Manager(template_cache, "require_token = true\n").start()
    try:
        listen = ["--writer", f"127.0.{manager.subnet}.3:3306",
                  "--readers", f"127.0.{manager.subnet}.3:3307"]
        code, said = _router_exits("--manager", f"127.0.0.1:{free_port()}", *listen,
                                   "--state-dir", str(tmp_path / "a"))
        assert code != 0 and said.startswith("conpaassql router: cannot reach the manager"), said
        wrong = tmp_path / "token"
        wrong.write_text("cqt_not-the-token\n")
        code, said = _router_exits("--manager", f"127.0.0.1:{manager.port}", *listen,
                                   "--token-file", str(wrong), "--state-dir", str(tmp_path / "b"))
        assert code != 0 and "refused the token" in said, said
        assert "cqt_not-the-token" not in said
        code, said = _router_exits("--manager", f"127.0.0.1:{manager.port}", *listen,
                                   "--state-dir", str(tmp_path / "c"))
        assert code != 0 and "refused the token" in said, said
        # A TLS peer whose certificate another CA signed: the service's own agent,
        # checked against the system's CAs.
        manager.post("add_nodes", count=1)
        node = manager.node(manager.wait_running(1)[0]["id"])
        code, said = _router_exits("--manager", f"{node['ip']}:{node['agent_port']}",
                                   "--https", "--ca-file", "/etc/ssl/certs/ca-certificates.crt",
                                   *listen, "--state-dir", str(tmp_path / "d"))
        assert code != 0 and "cannot verify the manager's certificate" in said, said
        code, said = _router_exits("--manager", "127.0.0.1:50000", "--https", "--ca-file",
                                   str(tmp_path / "none.crt"), *listen)
        assert code == 2 and "cannot read the TLS files" in said, said
        # With the right token it starts (and registers).
        router = Router(manager, manager.subnet, "--token-file",
                        str(manager.state_dir / "secrets" / "api_token"), name="good")
        try:
            router.start()
        finally:
            router.stop()
    finally:
        manager.close()
