"""The master's lease on real nodes: a master cut off from its manager and its slaves
gives up ``/primary`` and goes read-only before another node takes writes; without
the manager, its slaves keep its lease, and once they stop, it goes read-only until
the manager is back and makes it writable again."""

from __future__ import annotations

import http.client
import threading
import time
from typing import Any

import pytest

from conpaassql.domain.lease import DEFAULT_LEASE
from tests.integration.harness import Manager, Partition, health_get, wait_until

pytestmark = pytest.mark.integration


def check(node: dict[str, Any], path: str) -> tuple[int, dict[str, Any]]:
    """``health_get`` that gives up soon: a watch asks every 50 ms."""
    return health_get(node, path, timeout=2)


class PrimaryWatch:
    """Asks a node's ``/primary`` every 50 ms: (wall time, status, body), None when it
    does not answer."""

    def __init__(self, node: dict[str, Any]) -> None:
        self.node = node
        self.seen: list[tuple[float, int | None, dict[str, Any]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> PrimaryWatch:
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            try:
                status, body = check(self.node, "/primary")
            except (OSError, http.client.HTTPException, ValueError):
                status, body = None, {}
            self.seen.append((time.time(), status, body))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)


def test_a_master_cut_off_gives_up_its_lease_before_another_takes_writes(
        trio: Manager) -> None:
    """Every packet from or to the master's address is dropped but for its health port:
    its heartbeats and its questions to the slaves go nowhere, a client still asks it.
    Its /primary goes 503 for its lease and its server read-only, before the manager
    (which cannot reach its agent: the cloud reboots it) makes another node writable,
    after a wait it shows."""
    manager = trio
    master, _ = manager.wait_topology(3)
    node = manager.node(master)
    wait_until(lambda: check(node, "/primary")[1].get("lease") == "renewed by the manager",
               30, 0.1, "the master's lease renewed by the manager")
    watch = PrimaryWatch(node).start()
    partition = Partition(node["ip"], open_port=node["health_port"])
    try:
        with partition:
            wait_until(lambda: manager.get("list_nodes")["masters"] not in ([master], []),
                       120, 0.1, what="a new master")
    finally:
        partition.heal()
        watch.stop()
    waits = [e for e in manager.node(master)["history"]
             if "lease to run out" in e["message"]]
    assert len(waits) == 1, manager.node(master)["history"]
    waited = float(waits[0]["message"].split("waiting ")[1].split(" s")[0])
    writable_at = waits[0]["at"] + waited  # the new master, made writable after the wait
    ran_out = [(at, body) for at, status, body in watch.seen
               if status == 503 and "lease ran out" in str(body.get("lease"))]
    assert ran_out, watch.seen[-20:]
    fenced = [at for at, body in ran_out if body["read_only"] is True]
    assert fenced, ran_out[-5:]  # the agent set read_only itself
    assert fenced[0] < writable_at, (fenced[0], waits[0])
    # Never 200 again once it ran out.
    assert not [s for at, s, _ in watch.seen if at > ran_out[0][0] and s == 200]


def test_without_the_manager_the_slaves_keep_the_lease(pair: Manager) -> None:
    """The manager stopped, the master's slave renews its lease: /primary stays 200 over
    several leases. The slave stops replicating: the lease runs out, the master goes
    read-only; the manager back makes it writable again."""
    manager = pair
    master, (slave,) = manager.wait_topology(2)
    node = manager.node(master)
    manager.kill()
    wait_until(lambda: check(node, "/primary")[1].get("lease") == "renewed by the slaves",
               30, 0.1, "the master's lease renewed by its slave")
    until = time.monotonic() + 3 * DEFAULT_LEASE
    while time.monotonic() < until:
        status, body = check(node, "/primary")
        assert status == 200, body
        time.sleep(0.1)

    stopped = manager.sql(slave, "STOP SLAVE")
    assert stopped.returncode == 0, stopped.stderr
    wait_until(lambda: (answer := check(node, "/primary"))[0] == 503
               and answer[1]["read_only"] is True, 30, 0.1, "the master read-only")
    assert "lease ran out" in check(node, "/primary")[1]["lease"]

    manager.start()
    wait_until(lambda: check(node, "/primary")[0] == 200, 60, 0.2,
               "the master writable again")
    manager.wait_topology(2)


def test_a_master_that_cannot_go_read_only_in_time_is_killed(pair: Manager) -> None:
    """A session holds a table lock on the master, so that ``read_only`` waits for it:
    once the lease runs out (manager stopped, its slave stopped), the agent does not
    wait behind the lock but kills mysqld, and the session ends with it."""
    manager = pair
    master, (slave,) = manager.wait_topology(2)
    node = manager.node(master)
    made = manager.sql(master, "CREATE DATABASE IF NOT EXISTS fence_lock; "
                       "CREATE TABLE IF NOT EXISTS fence_lock.t (i INT)")
    assert made.returncode == 0, made.stderr
    manager.kill()
    wait_until(lambda: check(node, "/primary")[1].get("lease") == "renewed by the slaves",
               30, 0.1, "the master's lease renewed by its slave")
    held: list[Any] = []
    holder = threading.Thread(target=lambda: held.append(manager.sql(
        master, "LOCK TABLES fence_lock.t WRITE; SELECT SLEEP(25)")), daemon=True)
    holder.start()
    wait_until(lambda: manager.sql(
        master, "SELECT COUNT(*) FROM information_schema.PROCESSLIST "
        "WHERE INFO = 'SELECT SLEEP(25)'").stdout.strip() == "1", 20, 0.1, "the lock held")

    stopped = manager.sql(slave, "STOP SLAVE")
    assert stopped.returncode == 0, stopped.stderr
    holder.join(20)  # well before the sleep ends, if mysqld is killed
    assert held and held[0].returncode != 0, held  # its connection went with mysqld
    status, body = check(node, "/primary")
    assert status == 503 and body["answering"] is False, body
