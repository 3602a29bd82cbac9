"""The timeline's kinds of event, from the manager's own wordings.

``CASES`` holds every history message the manager writes with a fixed wording
(its template as written in ``src/conpaassql/manager/``, a message made from it,
and the kind the timeline gives it); the node moves the reconcile loop makes come
from ``domain.diagnosis`` itself. ``test_every_wording_of_the_manager_is_here``
fails when the manager words something new, so that the table follows it.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any, NamedTuple

import pytest

from conpaassql.domain.diagnosis import TARGET
from conpaassql.domain.states import NodeState
from conpaassql.gui.timeline import KINDS, PATTERNS, classify

MANAGER = Path(__file__).resolve().parents[2] / "src" / "conpaassql" / "manager"


class Case(NamedTuple):
    template: str  # as the manager's source writes it (format specs left out)
    message: str
    subject: str
    to: str | None
    kind: str


def service(template: str, message: str, to: str, kind: str = "service") -> Case:
    return Case(template, message, "service", to, kind)


def node(template: str, message: str, kind: str, to: str | None = None) -> Case:
    return Case(template, message, "node", to, kind)


CASES = [
    # the service's states (set_service_state, refresh_service_state)
    service("service created", "service created", "INIT"),
    service("failover: master node {dead_id} lost ({reason})",
            "failover: master node 1 lost (dead master)", "ADAPTING", "failover"),
    service("failover done", "failover done", "RUNNING"),
    service("switchover to node {target_id}", "switchover to node 2", "ADAPTING",
            "switchover"),
    service("switchover done", "switchover done", "RUNNING"),
    service("switchover abandoned", "switchover abandoned", "RUNNING"),
    service("{count} node(s) added", "2 node(s) added", "PROLOGUE"),
    service("nodes added after shutdown", "nodes added after shutdown", "INIT"),
    service("node {node.id} replaces lost node {lost.id}", "node 4 replaces lost node 2",
            "ADAPTING"),
    service("node {node.id} {reason}", "node 3 removed on request", "ADAPTING"),
    service("node {node.id} destroyed", "node 3 destroyed", "RUNNING"),
    service("shutdown requested", "shutdown requested", "EPILOGUE"),
    service("all nodes destroyed", "all nodes destroyed", "STOPPED"),
    service("reconcile", "reconcile", "RUNNING"),
    # nodes' states (new_node, move_node; the reconcile loop's moves below)
    node("node {node_id} requested from cloud {cloud}", "node 4 requested from cloud default",
         "added", "PENDING"),
    node("cloud refused: {exc}", "cloud refused: Cloud error DETAIL:quota exceeded",
         "removed", "TERMINATED"),
    node("removed on request", "removed on request", "removed", "TERMINATING"),
    node("service shutdown", "service shutdown", "removed", "TERMINATING"),
    node("not re-adopted: find_existing_agents is off",
         "not re-adopted: find_existing_agents is off", "removed", "TERMINATING"),
    node("destroyed by the cloud", "destroyed by the cloud", "removed", "TERMINATED"),
    # events (record_event)
    node("failover: node {dead_id} fenced ({fencing})",
         "failover: node 1 fenced (its node destroyed)", "failover"),
    node("failover: waiting {wait} s for node {old.id}'s lease to run out (its agent "
         "could not fence it)", "failover: waiting 2.50 s for node 1's lease to run out "
         "(its agent could not fence it)", "failover"),
    node("failover: node {master} is the master (was node {lost}: {reason}); "
         "writes resumed after {seconds} s",
         "failover: node 2 is the master (was node 1: dead master); writes resumed "
         "after 0.52 s", "failover"),
    node("switchover: node {target.id} fenced ({done}), not read-only again",
         "switchover: node 2 fenced (powered off and booted again by the cloud; 2.50 s "
         "waited for its lease), not read-only again", "switchover"),
    node("switchover: node {master} is the master (was node {previous}); "
         "writes blocked for {blocked} s",
         "switchover: node 2 is the master (was node 1); writes blocked for 0.012 s",
         "switchover"),
    node("{why}; node {node.id} replaces it",
         "node 2 was lost by cloud local; node 4 replaces it", "replaced"),
    node("{why}; not replaced: {refusal}",
         "node 2 was lost by cloud ec2-east; not replaced: it never ran", "lost"),
    node("node {node.id} was removed while its cloud made it: destroying {made.ref}",
         "node 5 was removed while its cloud made it: destroying i-0abc", "event"),
    service("{moved} node(s) of cloud {old} now on cloud {new}",
            "2 node(s) of cloud 'local' now on cloud 'default'", None, "event"),
    node("{why}; replacing it failed: {exc}",
         "node 2 was lost by cloud local; replacing it failed: Cloud error DETAIL:no "
         "free loopback address left in LOCAL_ADDRESS_RANGE", "lost"),
    node("node {node.id} is the master", "node 1 is the master", "master"),
    node("dump of {answer.bytes} bytes loaded into node {node.id}",
         "dump of 3145728 bytes loaded into node 1", "data"),
    node("dump account opened on node {node.id} for {database or 'every database'}",
         "dump account opened on node 2 for shop", "data"),
    node("{method.name} into node {node.id} failed: {str(exc)[:300]}",
         "load_dump into node 1 failed: MySQL error 1064 DETAIL:syntax error", "data"),
    node("{method.name} into node {node.id} failed: {str(exc)[:300]}",
         "send_mysqldump into node 2 failed: Agent unreachable", "data"),
    service("client certificate issued: {subject}",
            "client certificate issued: CN=mysql-client-bench,OU=aa11bb22,O=conpaassql",
            None, "event"),
    node("destroying node {node.id} failed: {exc}",
         "destroying node 3 failed: Cloud error DETAIL:timed out", "event"),
    node("agent of node {node.id} registered", "agent of node 3 registered", "event"),
    node("node {node.id}: {report.event[:500]}",
         "node 1: dump of 3145728 bytes loaded into node 1", "data"),
    node("node {node.id}: {report.event[:500]}",
         "node 1: load_dump into node 1 failed: MySQL error 1064", "data"),
    node("node {node.id}: {report.event[:500]}", "node 3: mysqld restarted (exit status 1)",
         "event"),
    node("node {node_id}: {why}: copying node {master.id}",
         "node 3: asked to become a slave: copying node 1", "event"),
    node("node {node_id} is a slave of node {master.id} (copy of {answer.bytes} "
         "bytes in {time.monotonic() - started} s, {answer.method})",
         "node 3 is a slave of node 1 (copy of 5242880 bytes in 1.4 s, physical)", "event"),
    node("node {node_id}: copying the master failed: {str(exc)[:300]}",
         "node 3: copying the master failed: Agent unreachable", "event"),
    service("router {params.name} {done}: writer {writer}, readers {readers}",
            "router r1 registered: writer 127.0.0.1:3306, readers 127.0.0.1:3307", None,
            "event"),
    node("node {node_id}: certificate issued again, naming {names}{later}",
         "node 2: certificate issued again, naming 127.0.0.1, 127.0.0.12", "event"),
    # the server configuration's rolling restarts and pushes
    service("rolling restart ({why}): node(s) {', '.join(map(str, chosen))}, slaves first",
            "rolling restart (asked for): node(s) 1, 2, 3, slaves first", None, "event"),
    node("rolling restart: restarting node {node.id} (slave)",
         "rolling restart: restarting node 2 (slave)", "event"),
    node("rolling restart: node {node.id} back in {seconds} s and replicating",
         "rolling restart: node 2 back in 1.4 s and replicating", "event"),
    node("rolling restart: node {master.id} is the only node: restarting it; no query "
         "until it is back",
         "rolling restart: node 1 is the only node: restarting it; no query until it is "
         "back", "event"),
    node("rolling restart: node {master.id} back in {down} s",
         "rolling restart: node 1 back in 1.2 s", "event"),
    node("node {node.id} refused the service's server configuration: {str(exc)[:300]}",
         "node 4 refused the service's server configuration: Invalid argument: options",
         "event"),
    # backups and restores
    service("rollback to the data of node {target_id}", "rollback to the data of node 4",
            "ADAPTING"),
    service("rollback done", "rollback done", "RUNNING"),
    node("rollback: node {target_id} is the master, holding backup {restore.get('backup')}; "
         "node(s) {', '.join((str(n.id) for n in others)) or '-'} are copied from it anew",
         "rollback: node 4 is the master, holding backup 20261207T103000Z-full-3fa2c1; "
         "node(s) 1, 2 are copied from it anew", "event"),
    node("rollback: node {master.id} fenced ({done})",
         "rollback: node 1 fenced (mysqld stopped by its agent)", "event"),
    node("backup {record.id} ({how}) started on node {node.id}",
         "backup 20261207T103000Z-full-3fa2c1 (full) started on node 2", "event"),
    node("backup {record.id} ({how}) started on node {node.id}",
         "backup 20261207T103000Z-full-3fa2c1 (full, scheduled) started on node 2", "event"),
    service("scheduled {kind} backup not started: {exc}",
            "scheduled full backup not started: no running master or slave to take a backup "
            "from", None, "event"),
    node("backup {record.id} done: {record.bytes} bytes from node {node.id}, GTID position "
         "{record.gtid or 'empty'}",
         "backup 20261207T103000Z-full-3fa2c1 done: 5242880 bytes from node 2, GTID position "
         "0-1-57", "event"),
    node("backup {record.id} failed: {record.error}",
         "backup 20261207T103000Z-full-3fa2c1 failed: Agent unreachable", "event"),
    service("backup(s) {', '.join(doomed)} deleted",
            "backup(s) 20261207T103000Z-full-3fa2c1 deleted", None, "event"),
    node("node {node.id} added to hold {what}",
         "node 4 added to hold backup 20261207T103000Z-full-3fa2c1", "event"),
    node("node {node.id} added to hold {what}",
         "node 4 added to hold the data of 2026-12-07 10:00:00 UTC (from backup "
         "20261207T103000Z-full-3fa2c1)", "event"),
    node("node {node_id} restored from backup {backup_id}{upto} (GTID position "
         "{done.gtid_position or 'empty'}), read-only, apart from replication",
         "node 4 restored from backup 20261207T103000Z-full-3fa2c1 (GTID position 0-1-57), "
         "read-only, apart from replication", "event"),
    node("node {node_id} restored from backup {backup_id}{upto} (GTID position "
         "{done.gtid_position or 'empty'}), read-only, apart from replication",
         "node 4 restored from backup 20261207T103000Z-full-3fa2c1 and the binlogs to "
         "2026-12-07 10:00:00 UTC (GTID position 0-1-57), read-only, apart from "
         "replication", "event"),
    node("restoring node {node_id} from backup {backup_id} failed: the node did not come up",
         "restoring node 4 from backup 20261207T103000Z-full-3fa2c1 failed: the node did not "
         "come up", "event"),
    node("restoring node {node_id} from backup {backup_id} failed: {exc}",
         "restoring node 4 from backup 20261207T103000Z-full-3fa2c1 failed: MySQL error", "event"),
    # verification
    node("verification of backup {backup_id} started on node {node.id}",
         "verification of backup 20261207T103000Z-full-3fa2c1 started on node 2", "event"),
    node("backup {backup_id} verified on node {node.id}: {result['tables']} table(s) sound",
         "backup 20261207T103000Z-full-3fa2c1 verified on node 2: 3 table(s) sound", "event"),
    node("verification of backup {backup_id} failed: {result['error']}",
         "verification of backup 20261207T103000Z-full-3fa2c1 failed: Corrupt backup object: "
         "backups/20261207T103000Z-full-3fa2c1.xbstream", "event"),
    service("backup {record.id} not verified: {exc}",
            "backup 20261207T103000Z-full-3fa2c1 not verified: busy: backup x is running",
            None, "event"),
    # restore_from
    node("node {first.id} added to be the first node, holding {self.source.what} (backup "
         "{backup_id}) of {self.source.store} (restore_from)",
         "node 1 added to be the first node, holding backup 20261207T103000Z-full-3fa2c1 "
         "(backup 20261207T103000Z-full-3fa2c1) of s3://svc1/backups (restore_from)", "event"),
    node("restore_from {source} failed: {error}",
         "restore_from s3://svc1/backups#20261207T103000Z-full-3fa2c1 failed: no backup",
         "event"),
    node("restore_from done: node {node_id} holds backup {backup}{upto} of {store} (GTID "
         "position {gtid}) and is the master",
         "restore_from done: node 1 holds backup 20261207T103000Z-full-3fa2c1 of "
         "s3://svc1/backups (GTID position 0-1-57) and is the master", "event"),
    service("restore_from {self.source.text} ignored: the service already had nodes",
            "restore_from s3://svc1/backups@latest ignored: the service already had nodes",
            None, "event"),
    # binlog archiving
    node("binlog archiving from {since or 'the start'}", "binlog archiving from 0-1-57",
         "event"),
    node("binlog archive: {status.diverged.get('set_aside')} segment(s) past "
         "{status.diverged.get('kept_to')} were another history, set aside",
         "binlog archive: 1 segment(s) past 0-1-41 were another history, set aside", "event"),
]

#: The kind of a node's move to each state (the reconcile loop's moves).
BY_STATE = {NodeState.BOOTING: "node", NodeState.RUNNING: "node", NodeState.FAILED: "failed",
            NodeState.TERMINATED: "removed"}


@pytest.mark.parametrize("case", CASES, ids=[case.message[:60] for case in CASES])
def test_each_wording_of_the_manager_has_its_kind(case: Case) -> None:
    entry = {"subject": case.subject, "node": 2 if case.subject == "node" else None,
             "to": case.to, "from": None, "message": case.message}
    assert classify(entry) == case.kind


@pytest.mark.parametrize(("situation", "state"), list(TARGET.items()),
                         ids=[situation.value for situation in TARGET])
def test_each_move_of_the_reconcile_loop_has_its_kind(situation: Any,
                                                      state: NodeState) -> None:
    for detail in ("", " (exit status 1)"):
        entry = {"subject": "node", "node": 2, "from": "RUNNING", "to": state.value,
                 "message": situation.value + detail}
        assert classify(entry) == BY_STATE[state]


def test_every_pattern_and_kind_is_met() -> None:
    met = {case.kind for case in CASES} | set(BY_STATE.values())
    assert met | {"event"} == set(KINDS)
    assert {pattern.kind for pattern in PATTERNS} <= met


# -- the manager's wordings, read from its source --------------------------------

#: method -> where its message is among the arguments
WRITERS = {"record_event": 0, "set_service_state": 1, "refresh_service_state": 0,
           "move_node": 2, "remove_node": 1, "_start_removal": 1, "_add_history": 5}


def templates_of(node: ast.expr) -> list[str]:
    """A message's templates as written (literals and f-strings, either side of an
    ``if``); none for a variable's value."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value]
    if isinstance(node, ast.IfExp):
        return templates_of(node.body) + templates_of(node.orelse)
    if not isinstance(node, ast.JoinedStr):
        return []
    parts = []
    for part in node.values:
        if isinstance(part, ast.Constant):
            parts.append(str(part.value))
        elif isinstance(part, ast.FormattedValue):
            parts.append("{" + ast.unparse(part.value) + "}")
    return ["".join(parts)]


def manager_templates() -> set[str]:
    """The messages given to the history's writers, and those ``manager.events``
    builds for them."""
    found: set[str] = set()
    for path in sorted(MANAGER.glob("*.py")):
        for call in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute) \
                    and call.func.attr in WRITERS and len(call.args) > WRITERS[call.func.attr]:
                found.update(templates_of(call.args[WRITERS[call.func.attr]]))
    for node in ast.walk(ast.parse((MANAGER / "events.py").read_text(encoding="utf-8"))):
        if isinstance(node, ast.Return) and node.value is not None:
            found.update(templates_of(node.value))
    return found


def test_every_wording_of_the_manager_is_here() -> None:
    written = manager_templates()
    assert len(written) > 20  # the search found the manager's messages
    known = {case.template for case in CASES}
    assert written - known == set(), "new wordings: add them to CASES (and PATTERNS)"
    assert known - written == set(), "wordings the manager no longer writes"
