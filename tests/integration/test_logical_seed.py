"""Slaves seeded with a logical copy (``seed_method = logical``), end to end."""

from __future__ import annotations

from pathlib import Path

import pytest

from conpaassql.domain.gtid import GtidPosition
from tests.integration.harness import Manager, wait_until

pytestmark = pytest.mark.integration


def value(manager: Manager, node: int, statement: str) -> str:
    answer = manager.sql(node, statement)
    assert answer.returncode == 0, answer.stderr
    return answer.stdout.strip()


def test_slaves_from_a_dump_of_the_master(template_cache: Path) -> None:
    manager = Manager(template_cache, "seed_method = logical\n").start()
    try:
        manager.post("add_nodes", count=1)
        master, _ = manager.wait_topology(1)
        value(manager, master, "CREATE DATABASE shop; CREATE TABLE shop.item (id INT PRIMARY"
              " KEY, name TEXT) ENGINE=InnoDB; INSERT INTO shop.item SELECT seq, MD5(seq)"
              " FROM shop.seq_1_to_5000;")
        manager.post("configure_user", username="clerk", password="Clerk-pw-1",
                     database="shop")
        manager.post("add_nodes", count=2)
        master_again, slaves = manager.wait_topology(3)
        assert master_again == master
        for slave in slaves:
            events = [e["message"] for e in manager.node(slave)["history"]]
            assert any(f"is a slave of node {master}" in m and m.endswith("logical)")
                       for m in events), events
        # Written after the copies: it reaches the slaves by replication.
        value(manager, master, "INSERT INTO shop.item VALUES (5001, 'after')")
        manager.sync_slaves(master, slaves)
        checksum = value(manager, master, "CHECKSUM TABLE shop.item").split()[-1]
        master_pos = GtidPosition.parse(value(manager, master, "SELECT @@gtid_current_pos"))
        for slave in slaves:
            assert value(manager, slave, "CHECKSUM TABLE shop.item").split()[-1] == checksum
            assert value(manager, slave, "SELECT @@global.read_only") == "1"
            mine = GtidPosition.parse(value(manager, slave, "SELECT @@gtid_current_pos"))
            assert master_pos.contains(mine), (str(mine), str(master_pos))
            # The account came with the copy, and logs in on the slave.
            login = manager.sql(slave, "SELECT COUNT(*) FROM shop.item", user="clerk",
                                password="Clerk-pw-1")
            assert login.returncode == 0 and login.stdout.strip() == "5001", login.stderr
        # A slave asked to become one again is copied anew, logically.
        manager.post("set_up_replica_slave", serviceNodeId=slaves[0])
        wait_until(lambda: sum(m["message"].endswith("logical)") for m in
                               manager.node(slaves[0])["history"]) >= 2, 120, 0.3,
                   "a second logical copy")
        manager.wait_topology(3)
        manager.sync_slaves(master, slaves)
        assert value(manager, slaves[0], "CHECKSUM TABLE shop.item").split()[-1] == checksum
    finally:
        manager.close()
