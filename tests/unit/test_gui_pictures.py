"""The timeline and topology pictures, from the manager's answers (pure functions)."""

from __future__ import annotations

from conpaassql.gui import timeline, topology

HISTORY = [
    {"at": 100.0, "subject": "service", "message": "service created", "to": "INIT",
     "from": None},
    {"at": 101.0, "subject": "node", "node": 1, "message": "node 1 requested from cloud local",
     "from": None, "to": "PENDING"},
    {"at": 103.0, "subject": "service", "message": "1 node(s) added", "from": "INIT",
     "to": "PROLOGUE"},
    {"at": 104.0, "subject": "node", "node": 1, "message": "node 1 is the master"},
    {"at": 105.0, "subject": "service", "message": "switchover to node 2",
     "from": "RUNNING", "to": "ADAPTING"},
    {"at": 105.5, "subject": "node", "node": 2,
     "message": "switchover: node 2 is the master (was node 1); writes blocked for 0.1 s"},
    {"at": 106.0, "subject": "service", "message": "switchover done", "from": "ADAPTING",
     "to": "RUNNING"},
    {"at": 107.0, "subject": "node", "node": 1,
     "message": "failover: node 1 is the master (was node 2: dead master)"},
    {"at": 108.0, "subject": "node", "node": 3, "message": "missed heartbeats",
     "from": "RUNNING", "to": "FAILED"},
    {"at": 109.0, "subject": "node", "node": 3, "message": "removed on request",
     "from": "FAILED", "to": "TERMINATING"},
    {"at": 110.0, "subject": "node", "node": 1, "message": "dump of 42 bytes loaded into node 1"},
    {"at": 111.0, "subject": "node", "node": 1, "message": "agent of node 1 registered"},
]


def test_entries_are_classified() -> None:
    kinds = [timeline.classify(entry) for entry in HISTORY]
    assert kinds == ["service", "added", "service", "master", "switchover", "switchover",
                     "service", "failover", "failed", "removed", "data", "event"]


def test_events_are_newest_first() -> None:
    events = timeline.events(HISTORY)
    assert [e.at for e in events] == sorted((e["at"] for e in HISTORY), reverse=True)
    assert events[-1].label == "service state" and events[-2].label == "node added"


def test_the_band_spans_the_service_states_with_ticks() -> None:
    band = timeline.band(HISTORY, now=120.0)
    assert band is not None
    assert [s.state for s in band.segments] == ["INIT", "PROLOGUE", "ADAPTING", "RUNNING"]
    assert band.segments[0].x == 0 and band.segments[-1].x + band.segments[-1].width == 1000
    assert {t.kind for t in band.ticks} == {"added", "switchover", "failover", "failed",
                                            "removed"}
    assert timeline.band([]) is None


def test_the_topology_has_the_master_on_top_and_an_arrow_per_slave() -> None:
    nodes = [{"id": 1, "ip": "10.0.0.1", "role": "slave", "state": "RUNNING"},
             {"id": 2, "ip": "10.0.0.2", "role": "master", "state": "RUNNING"},
             {"id": 3, "ip": None, "role": "none", "state": "BOOTING"}]
    picture = topology.picture(nodes, [{"id": 1, "seconds_behind_master": 0}])
    assert picture is not None
    assert picture.boxes[0].id == 2 and picture.boxes[0].y < picture.boxes[1].y
    assert [(a.label, a.joining) for a in picture.arrows] == [("0 s", False), ("", True)]
    assert picture.boxes[2].ip == "no address yet"
    assert topology.picture([]) is None
