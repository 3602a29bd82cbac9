"""The manager's side of binlog archiving without agents: what get_service_info and
the metrics show of the archiver's status, and the request the master is sent."""

from __future__ import annotations

import time
from pathlib import Path

from conpaassql.domain.gtid import GtidPosition
from conpaassql.manager.archiving import BinlogArchiving
from conpaassql.manager.metrics import ManagerMetrics
from conpaassql.protocol.backup import ArchiveStatus
from tests.unit.test_metrics import a_service, samples, scrape, value


def test_status_gap_and_metrics(tmp_path: Path) -> None:
    nodes, reconciler, replication = a_service(tmp_path)
    archiving = BinlogArchiving(nodes, tmp_path)
    reconciler.archiving = archiving
    shown = archiving.service_info()
    assert shown["archiving"] is False and shown["gap"] is None
    _, found = samples(scrape(ManagerMetrics(nodes, reconciler, replication, None)).text)
    assert value(found, "conpaassql_binlog_archive_gap") == 0.0
    assert value(found, "conpaassql_binlog_archive_lag_seconds") is None

    gap = {"archived_to": "0-1-40", "binlogs_from": "0-1-52", "file": "binlog.000003",
           "detected": "1"}
    status = ArchiveStatus(archiving=True, since="0-1-40", archived_to="0-1-60",
                           archived_time=1_800_000_000, caught_up_at=time.time() - 2,
                           segments=3, gap=gap)
    archiving.status = status
    archiving.gaps.append(gap)
    shown = archiving.service_info()
    assert shown["archived_gtid"] == "0-1-60" and shown["gap"] == gap
    assert 1.5 < shown["archive_lag_seconds"] < 60
    _, found = samples(scrape(ManagerMetrics(nodes, reconciler, replication, None)).text)
    assert value(found, "conpaassql_binlog_archive_gap") == 1.0
    assert value(found, "conpaassql_binlog_archived_timestamp_seconds") == 1_800_000_000


def test_the_request_names_the_store_and_holds_the_key_unshown(tmp_path: Path) -> None:
    nodes, _, _ = a_service(tmp_path)
    archiving = BinlogArchiving(nodes, tmp_path)
    request = archiving._request(GtidPosition.parse("0-1-9"))
    assert request.path == str(tmp_path / "backups") and request.bucket is None
    assert request.since == "0-1-9" and request.interval == 5.0
    key = nodes.rt.secrets.backup_key.to_text()
    assert request.key == key and key not in repr(request)
