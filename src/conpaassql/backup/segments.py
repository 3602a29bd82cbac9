"""Archived binlog segments as the store lists them: their GTIDs and times."""

from __future__ import annotations

from dataclasses import dataclass

from conpaassql.backup.store import BackupStore, StoredObject
from conpaassql.domain.gtid import Gtid, GtidPosition

PREFIX = "binlogs/"


@dataclass(frozen=True)
class Segment:
    """One archived object, read back from its metadata."""

    key: str
    server_id: int
    file: str
    start: int
    end: int
    first: GtidPosition
    last: GtidPosition
    first_time: int
    last_time: int
    count: int
    created: float

    @classmethod
    def from_object(cls, item: StoredObject) -> Segment:
        meta = item.metadata
        return cls(item.key, int(meta["server_id"]), meta["file"], int(meta["start"]),
                   int(meta["end"]), GtidPosition.parse(meta["gtid_first"]),
                   GtidPosition.parse(meta["gtid_last"]), int(meta["time_first"]),
                   int(meta["time_last"]), int(meta["count"]), item.created)

    @property
    def order(self) -> tuple[int, int]:
        return (self.last.total(), self.last_time)


async def archived(store: BackupStore) -> list[Segment]:
    """Every archived segment, in transaction order."""
    return sorted((Segment.from_object(item) for item in await store.list(PREFIX)),
                  key=lambda segment: segment.order)


def position_of(segments: list[Segment]) -> GtidPosition:
    """How far ``segments`` reach: the last GTID of each domain."""
    last: dict[int, Gtid] = {}
    for segment in segments:
        for gtid in segment.last.last:
            if gtid.domain not in last or gtid.sequence > last[gtid.domain].sequence:
                last[gtid.domain] = gtid
    return GtidPosition(tuple(sorted(last.values())))


def gaps(segments: list[Segment], since: GtidPosition | None = None) -> list[dict[str, str]]:
    """Where consecutive segments (in order) skip sequence numbers of a domain."""
    reached = dict((g.domain, g.sequence) for g in since.last) if since else {}
    found = []
    for segment in segments:
        for gtid in segment.first.last:
            before = reached.get(gtid.domain)
            if before is not None and gtid.sequence > before + 1:
                found.append({"after": f"{gtid.domain}-{before}", "next": str(gtid),
                              "segment": segment.key})
        for gtid in segment.last.last:
            reached[gtid.domain] = max(reached.get(gtid.domain, 0), gtid.sequence)
    return found
