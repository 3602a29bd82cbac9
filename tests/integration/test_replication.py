"""Replication with real nodes: a master and its slaves, switchover, failover, rejoin."""

from __future__ import annotations

import os
import signal
import subprocess

import pymysql
import pytest

from conpaassql.domain.gtid import GtidPosition
from conpaassql.layout import AGENT_PID_FILE, MYSQLD_PID_FILE, MYSQLD_SOCKET_FILE
from tests.integration import workload
from tests.integration.harness import (
    Manager,
    Partition,
    process_alive,
    rpc_error,
    wait_until,
)

pytestmark = pytest.mark.integration



def sql_value(manager: Manager, node: int, statement: str) -> str:
    answer = manager.sql(node, statement)
    assert answer.returncode == 0, answer.stderr
    return answer.stdout.strip()


def assert_converged(manager: Manager) -> None:
    """One master, the others replicating from it, the same rows everywhere, no errant GTID."""
    master, slaves = manager.wait_topology(3, timeout=180)
    manager.sync_slaves(master, slaves)
    sums = {node: sql_value(manager, node, "CHECKSUM TABLE app.w").split()[-1]
            for node in [master, *slaves]}
    assert len(set(sums.values())) == 1, sums
    master_position = GtidPosition.parse(
        sql_value(manager, master, "SELECT @@global.gtid_current_pos"))
    for slave in slaves:
        mine = GtidPosition.parse(sql_value(manager, slave, "SELECT @@global.gtid_current_pos"))
        assert master_position.contains(mine), (slave, str(mine), str(master_position))
        assert sql_value(manager, slave, "SELECT @@global.read_only") == "1"
    assert sql_value(manager, master, "SELECT @@global.read_only") == "0"


def slave_status(manager: Manager, node: int) -> dict[str, object]:
    """``SHOW SLAVE STATUS`` of a node, by column name (as root, over its socket)."""
    connection = pymysql.connect(
        unix_socket=str(manager.node_dir(node) / MYSQLD_SOCKET_FILE),
        user="root", password=manager.root_password.encode(),
        cursorclass=pymysql.cursors.DictCursor)
    try:
        with connection.cursor() as cursor:
            cursor.execute("SHOW SLAVE STATUS")
            row = cursor.fetchone()
    finally:
        connection.close()
    assert row is not None
    return dict(row)


def listed_nodes(manager: Manager) -> list[dict[str, object]]:
    return [manager.node(n["id"]) for n in manager.nodes()]


def acked_rows_present(manager: Manager, writer: workload.Writer) -> None:
    master = manager.get("get_service_info")["master"]["id"]
    present = {int(x) for x in sql_value(manager, master, "SELECT id FROM app.w").split()}
    lost = sorted(set(writer.acked) - present)
    assert not lost, f"{len(lost)} acknowledged writes lost, e.g. {lost[:10]}"


def test_master_and_two_slaves_replicate(trio: Manager) -> None:
    manager = trio
    listed = manager.get("list_nodes")
    master = listed["masters"][0]
    assert sorted(listed["serviceNode"]) == [1, 2, 3]
    assert sorted([master, *listed["slaves"]]) == [1, 2, 3]
    assert sql_value(manager, master, "INSERT INTO app.w VALUES (1, 0), (2, 0), (3, 0); "
                                      "SELECT COUNT(*) FROM app.w") == "3"
    manager.sync_slaves(master, listed["slaves"])
    for slave in listed["slaves"]:
        assert sql_value(manager, slave, "SELECT COUNT(*) FROM app.w") == "3"
        info = manager.node(slave)
        assert info["role"] == "slave"
        seen = info["replication"]
        assert seen["io_running"] == "Yes" and seen["sql_running"] == "Yes"
        assert seen["read_only"] is True
        assert seen["seconds_behind_master"] == 0
        assert seen["master_host"] == manager.node(master)["ip"]
        assert GtidPosition.parse(seen["gtid_position"]).last
        wait_until(lambda s=slave: manager.node(s)["replication"]["lag_transactions"] == 0,
                   20, what="no lag in transactions")
        # A slave refuses writes, even from the application's account.
        refused = manager.sql(slave, "INSERT INTO app.w VALUES (99, 0)",
                              user=workload.APP_USER, password=workload.APP_PASSWORD,
                              tcp=(info["ip"], 3306))
        assert "read-only" in refused.stderr, refused.stderr
        # Replication goes over TLS (the servers take nothing else over TCP).
        status = slave_status(manager, slave)
        assert status["Master_SSL_Allowed"] == "Yes", status
        assert status["Master_SSL_CA_File"] == str(manager.node_dir(slave) / "tls" / "ca.crt")
    # Over TCP, TLS or nothing: a client without it is turned away.
    # (MariaDB 10.11 answers it "Access denied"; the same login with TLS gets in.)
    login = manager.defaults_file(workload.APP_USER, workload.APP_PASSWORD)
    plain = subprocess.run(
        ["mariadb", f"--defaults-extra-file={login}", "--skip-ssl", "-h",
         manager.node(master)["ip"], "-e", "SELECT 1"],
        capture_output=True, text=True, timeout=30, check=False)
    login.unlink()
    assert plain.returncode != 0 and "Access denied" in plain.stderr, plain.stderr
    with_tls = manager.sql(master, "SELECT 1", user=workload.APP_USER,
                           password=workload.APP_PASSWORD, tcp=(manager.node(master)["ip"],
                                                                3306))
    assert with_tls.returncode == 0 and with_tls.stdout.strip() == "1", with_tls.stderr
    # The replication account may connect from the nodes only (here all on one machine,
    # whose node-to-node connections come from 127.0.0.1), never from anywhere.
    hosts = sql_value(manager, master, "SELECT Host FROM mysql.global_priv WHERE User = "
                      "'conpaassql_repl' ORDER BY Host").split()
    ips = sorted(n["ip"] for n in listed_nodes(manager))
    assert hosts == sorted({*ips, "127.0.0.1"}), hosts
    # root logs in on the node itself only (its unix socket).
    assert sql_value(manager, master, "SELECT Host FROM mysql.global_priv WHERE User = "
                     "'root'") == "localhost"
    service = manager.get("get_service_info")
    assert service["writer"] == {"id": master, "ip": manager.node(master)["ip"], "port": 3306}
    assert sorted(r["id"] for r in service["readers"]) == listed["slaves"]
    master_info = manager.node(master)["replication"]
    assert master_info["read_only"] is False
    assert master_info["semi_sync_master"] is True  # commits wait for a slave's ack
    # Asking for a switchover to the master itself, or to nobody, is refused.
    assert "is the master already" in rpc_error(
        lambda: manager.post("set_up_replica_master", id=master))
    assert rpc_error(lambda: manager.post("set_up_replica_master", id=42)).startswith(
        "Invalid argument: serviceNodeId")


def test_switchover_under_write_load(trio: Manager) -> None:
    manager = trio
    listed = manager.get("list_nodes")
    old_master, target = listed["masters"][0], listed["slaves"][0]
    watcher = workload.Watcher(manager, [1, 2, 3]).start()
    writer = workload.writer(manager).start()
    try:
        wait_until(lambda: len(writer.acked) > 50, 30, what="writes flowing")
        result = manager.post("set_up_replica_master", id=target)
        assert result["master"] == target and result["previous"] == old_master
        assert result["write_block_seconds"] >= 0  # measured, and reported by bench/replication.py
        count, samples = len(writer.acked), watcher.samples
        wait_until(lambda: len(writer.acked) > count + 50, 30, what="writes resumed")
        wait_until(lambda: watcher.samples > samples + 10, 30, what="samples after the switch")
    finally:
        writer.stop()
        watcher.stop()
    assert manager.get("list_nodes")["masters"] == [target]
    assert writer.writers_seen[-1] == target
    assert not watcher.violations, watcher.violations[:5]
    acked_rows_present(manager, writer)
    assert_converged(manager)
    events = [e["message"] for e in manager.get("get_service_info")["transitions"]]
    assert any(m.startswith(f"switchover: node {target} is the master") for m in events)


def _failover(manager: Manager, freeze: bool) -> None:
    listed = manager.get("list_nodes")
    old_master = listed["masters"][0]
    directory = manager.node_dir(old_master)
    mysqld = int((directory / MYSQLD_PID_FILE).read_text())
    agent = int((directory / AGENT_PID_FILE).read_text())
    watcher = workload.Watcher(manager, [1, 2, 3]).start()
    writer = workload.writer(manager).start()
    try:
        wait_until(lambda: len(writer.acked) > 100 and watcher.samples > 5, 30,
                   what="writes flowing")
        if freeze:
            os.kill(agent, signal.SIGSTOP)
            os.kill(mysqld, signal.SIGSTOP)
        else:
            os.kill(mysqld, signal.SIGKILL)
        wait_until(lambda: manager.get("list_nodes")["masters"] not in ([old_master], []),
                   60, 0.1, what="a new master")
        count, samples = len(writer.acked), watcher.samples
        wait_until(lambda: len(writer.acked) > count + 100, 30, what="writes on the new master")
        wait_until(lambda: watcher.samples > samples + 10, 30, what="samples after failover")
    finally:
        writer.stop()
        watcher.stop()
        if freeze:
            for pid in (agent, mysqld):
                if process_alive(pid):
                    os.kill(pid, signal.SIGCONT)
    new_master = manager.get("list_nodes")["masters"][0]
    assert new_master != old_master
    assert writer.writers_seen[-1] == new_master
    assert not watcher.violations, watcher.violations[:5]
    acked_rows_present(manager, writer)
    service = manager.get("get_service_info")
    assert service["last_failover"]["from"] == old_master
    assert service["last_failover"]["to"] == new_master
    messages = [e["message"] for e in service["transitions"]]
    assert any(m.startswith(f"failover: node {new_master} is the master") for m in messages)
    # The old master comes back on its own as a read-only slave of the new one.
    assert_converged(manager)
    assert manager.node(old_master)["role"] == "slave"
    wait_until(lambda: manager.get("get_service_info")["state"] == "RUNNING", 60,
               what="service RUNNING again")


def test_failover_when_the_master_mysqld_is_killed(trio: Manager) -> None:
    _failover(trio, freeze=False)


def test_failover_when_the_master_node_freezes(trio: Manager) -> None:
    _failover(trio, freeze=True)


def test_failover_when_the_master_is_cut_off_the_network(trio: Manager) -> None:
    """Every packet from or to the master's address dropped: neither the manager nor the
    slaves reach it, nor its agent. It is powered off through the cloud driver (its agent
    cannot be told), a slave takes over, and once the link is back the old master
    rejoins as a read-only slave."""
    manager = trio
    old_master = manager.get("list_nodes")["masters"][0]
    old_ip = manager.node(old_master)["ip"]
    watcher = workload.Watcher(manager, [1, 2, 3]).start()
    writer = workload.writer(manager).start()
    partition = Partition(old_ip)
    try:
        wait_until(lambda: len(writer.acked) > 100 and watcher.samples > 5, 30,
                   what="writes flowing")
        with partition:
            wait_until(lambda: manager.get("list_nodes")["masters"] not in ([old_master], []),
                       60, 0.1, what="a new master")
            count, samples = len(writer.acked), watcher.samples
            wait_until(lambda: len(writer.acked) > count + 100, 30,
                       what="writes on the new master")
            wait_until(lambda: watcher.samples > samples + 10, 30, what="samples after failover")
            events = [e["message"] for e in manager.node(old_master)["history"]]
            assert any(f"node {old_master} fenced (powered off" in m for m in events), events
            new_master = manager.get("list_nodes")["masters"][0]
            # Cut off, it is not part of the topology meanwhile.
            assert manager.node(old_master)["role"] != "master"
    finally:
        partition.heal()
        writer.stop()
        watcher.stop()
    assert new_master != old_master
    assert writer.writers_seen[-1] == new_master
    assert not watcher.violations, watcher.violations[:5]
    acked_rows_present(manager, writer)
    assert_converged(manager)
    assert manager.node(old_master)["role"] == "slave"
    wait_until(lambda: manager.get("get_service_info")["state"] == "RUNNING", 60,
               what="service RUNNING again")


def test_removing_the_master_elects_the_most_advanced_slave(trio: Manager) -> None:
    manager = trio
    listed = manager.get("list_nodes")
    old_master = listed["masters"][0]
    sql_value(manager, old_master, "INSERT INTO app.w VALUES (1, 0)")
    manager.sync_slaves(old_master, listed["slaves"])
    assert manager.post("remove_nodes", serviceNodeId=old_master)["result"] == "OK"
    wait_until(lambda: manager.get("list_nodes")["masters"] not in ([old_master], []), 60,
               what="a new master")
    master, slaves = manager.wait_topology(2, timeout=120)
    assert master in listed["slaves"]
    sql_value(manager, master, "INSERT INTO app.w VALUES (2, 0)")
    manager.sync_slaves(master, slaves)
    assert sql_value(manager, slaves[0], "SELECT COUNT(*) FROM app.w") == "2"
    # The removed node's address lost the replication account (on every node).
    kept = sorted({*(manager.node(n)["ip"] for n in (master, *slaves)), "127.0.0.1"})

    def hosts(node: int) -> list[str]:
        return sql_value(manager, node, "SELECT Host FROM mysql.global_priv WHERE User = "
                         "'conpaassql_repl' ORDER BY Host").split()

    wait_until(lambda: hosts(master) == kept and hosts(slaves[0]) == kept, 30, 0.2,
               "the removed node's replication host dropped")


def test_a_slave_with_errant_transactions_is_copied_anew(trio: Manager) -> None:
    """A write made behind the service's back on a slave (root ignores read_only) makes its
    history diverge; the slave's replication stops, and it is copied anew on its own."""
    manager = trio
    listed = manager.get("list_nodes")
    master, slave = listed["masters"][0], listed["slaves"][0]
    sql_value(manager, master, "INSERT INTO app.w VALUES (1, 0)")
    manager.sync_slaves(master, listed["slaves"])
    sql_value(manager, slave, "INSERT INTO app.w VALUES (-1, 0)")  # errant
    sql_value(manager, master, "INSERT INTO app.w VALUES (2, 0)")
    wait_until(lambda: any("replication broke: copying node" in e["message"]
                           for e in manager.node(slave)["history"]), 60,
               what="the diverged slave copied anew")
    assert_converged(manager)
    assert sql_value(manager, slave, "SELECT GROUP_CONCAT(id ORDER BY id) FROM app.w") == "1,2"


def test_semi_sync_follows_the_slaves(manager: Manager) -> None:
    """With no slave left the master stops waiting for acknowledgements, and waits
    again once a slave follows: no commit waits out the timeout for nobody."""
    manager.post("add_nodes", count=2)
    master, slaves = manager.wait_topology(2)

    def enabled() -> str:
        return sql_value(manager, master, "SELECT @@rpl_semi_sync_master_enabled")

    assert enabled() == "1"
    manager.post("remove_nodes", serviceNodeId=slaves[0])
    wait_until(lambda: enabled() == "0", 60, 0.2, "semi-sync off with no slave left")
    manager.post("create_database", database="alone")  # a commit with no slave
    manager.post("add_nodes", count=1)
    assert manager.wait_topology(2)[0] == master
    wait_until(lambda: enabled() == "1", 60, 0.2, "semi-sync on again")
    # No commit waited for an acknowledgement and went on without one (each such
    # commit waited the whole semi-sync timeout first).
    unacknowledged = sql_value(manager, master, "SHOW GLOBAL STATUS LIKE "
                               "'Rpl_semi_sync_master_no_tx'").split()[1]
    assert unacknowledged == "0"
