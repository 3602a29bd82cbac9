"""MariaDB GTID positions: ``domain-server-sequence`` lists, compared per domain.

A position such as ``0-1-57,1-3-9`` holds, for each replication domain, the
last transaction applied. One position *contains* another when it is at least
as far in every domain of the other; a node whose position is not contained in
the master's has transactions the master never had (errant GTIDs).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, order=True)
class Gtid:
    domain: int
    server: int
    sequence: int

    def __str__(self) -> str:
        return f"{self.domain}-{self.server}-{self.sequence}"


@dataclass(frozen=True)
class GtidPosition:
    """The last GTID of each domain."""

    last: tuple[Gtid, ...] = ()

    @classmethod
    def parse(cls, text: str | None) -> GtidPosition:
        """Parse ``@@gtid_current_pos`` and friends; ``ValueError`` if malformed."""
        if text is None or not text.strip():
            return cls()
        by_domain: dict[int, Gtid] = {}
        for item in text.replace("\n", "").split(","):
            parts = item.strip().split("-")
            if len(parts) != 3 or not all(p.isdigit() for p in parts):
                raise ValueError(f"not a GTID: {item.strip()[:40]!r}")
            gtid = Gtid(int(parts[0]), int(parts[1]), int(parts[2]))
            if gtid.domain in by_domain:
                raise ValueError(f"domain {gtid.domain} appears twice")
            by_domain[gtid.domain] = gtid
        return cls(tuple(sorted(by_domain.values())))

    def sequence(self, domain: int) -> int:
        return next((g.sequence for g in self.last if g.domain == domain), 0)

    @property
    def domains(self) -> frozenset[int]:
        return frozenset(g.domain for g in self.last)

    def contains(self, other: GtidPosition) -> bool:
        """True when this position has everything ``other`` has."""
        return all(self.sequence(g.domain) >= g.sequence for g in other.last)

    def behind(self, other: GtidPosition) -> int:
        """How many transactions this position lacks to reach ``other`` (0 if none)."""
        return sum(max(0, g.sequence - self.sequence(g.domain)) for g in other.last)

    def total(self) -> int:
        """A single figure to rank positions of one lineage: the sum of sequences."""
        return sum(g.sequence for g in self.last)

    def __str__(self) -> str:
        return ",".join(str(g) for g in self.last)


def most_advanced(positions: dict[int, GtidPosition]) -> int | None:
    """The key whose position contains every other one, else the largest total.

    ``None`` for no positions. Ties go to the smallest key, so the choice is stable.
    """
    if not positions:
        return None
    for key in sorted(positions):
        if all(positions[key].contains(other) for other in positions.values()):
            return key
    return max(sorted(positions), key=lambda key: positions[key].total())
