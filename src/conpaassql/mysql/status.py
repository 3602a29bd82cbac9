"""Server status counters and variables, and per-second rates from samples of them."""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping, Sequence

from conpaassql.errors import InvalidArgumentError
from conpaassql.mysql.connection import ConnectInfo, Session, execute

#: The ``SHOW GLOBAL STATUS`` values the service keeps (all integers). MariaDB
#: 10.11 has no ``Innodb_rows_*``; ``Rows_read``/``Rows_sent`` count all engines.
STATUS_KEYS: tuple[str, ...] = (
    "Questions",
    "Queries",
    "Com_select",
    "Com_insert",
    "Com_update",
    "Com_delete",
    "Com_replace",
    "Com_commit",
    "Com_rollback",
    "Threads_connected",
    "Threads_running",
    "Uptime",
    "Bytes_received",
    "Bytes_sent",
    "Slow_queries",
    "Connections",
    "Aborted_clients",
    "Aborted_connects",
    "Rows_read",
    "Rows_sent",
    "Innodb_row_lock_waits",
    "Innodb_buffer_pool_read_requests",
    "Innodb_buffer_pool_reads",
)

#: Keys that are levels, not ever-growing counters: no rate is computed for them.
GAUGE_KEYS: frozenset[str] = frozenset({"Threads_connected", "Threads_running", "Uptime"})

COUNTER_KEYS: tuple[str, ...] = tuple(key for key in STATUS_KEYS if key not in GAUGE_KEYS)


async def _query(target: ConnectInfo | Session, sql: str,
                 args: Sequence[str]) -> list[dict[str, object]]:
    if isinstance(target, Session):
        return await target.execute(sql, list(args), idempotent=True)
    return await execute(target, sql, list(args))


async def read_status(target: ConnectInfo | Session) -> dict[str, int]:
    """``SHOW GLOBAL STATUS`` restricted to ``STATUS_KEYS``, as ints."""
    placeholders = ", ".join(["%s"] * len(STATUS_KEYS))
    rows = await _query(
        target, f"SHOW GLOBAL STATUS WHERE Variable_name IN ({placeholders})", STATUS_KEYS
    )
    status: dict[str, int] = {}
    for row in rows:
        try:
            status[str(row["Variable_name"])] = int(str(row["Value"]))
        except (TypeError, ValueError):
            continue
    return status


async def read_variables(target: ConnectInfo | Session,
                         names: Sequence[str]) -> dict[str, str]:
    """``SHOW GLOBAL VARIABLES`` for ``names`` (underscore spelling), as strings."""
    if isinstance(names, str):
        raise InvalidArgumentError("names must be a sequence of variable names")
    if not names:
        return {}
    placeholders = ", ".join(["%s"] * len(names))
    rows = await _query(
        target, f"SHOW GLOBAL VARIABLES WHERE Variable_name IN ({placeholders})", names
    )
    return {str(row["Variable_name"]): str(row["Value"]) for row in rows}


def rate_name(key: str) -> str:
    """``Com_select`` -> ``com_select_per_second``."""
    return f"{key.lower()}_per_second"


class MetricsSampler:
    """Keeps the last N (time, status) samples; gives per-second rates over a recent window."""

    def __init__(self, max_samples: int = 120) -> None:
        if max_samples < 2:
            raise InvalidArgumentError("a sampler needs room for at least two samples")
        self._samples: deque[tuple[float, dict[str, int]]] = deque(maxlen=max_samples)

    def __len__(self) -> int:
        return len(self._samples)

    def add(self, at: float, status: Mapping[str, int]) -> None:
        """Record ``status`` taken at time ``at`` (seconds; must not go back in time).

        A counter lower than in the previous sample means the server restarted:
        older samples are forgotten so rates never span a restart.
        """
        sample = dict(status)
        if self._samples:
            last_at, last = self._samples[-1]
            if at < last_at:
                raise InvalidArgumentError("samples must be added in time order")
            if _restarted(last, sample):
                self._samples.clear()
        self._samples.append((at, sample))

    def latest(self) -> dict[str, int]:
        """The most recent sample ({} before the first)."""
        return dict(self._samples[-1][1]) if self._samples else {}

    def rates(self, window: float = 5.0) -> dict[str, float]:
        """Per-second rate of every counter over about the last ``window`` seconds.

        The base sample is the newest one at least ``window`` old, else the oldest
        kept. With fewer than two samples (or no elapsed time) every rate is 0.
        """
        result = {rate_name(key): 0.0 for key in COUNTER_KEYS}
        if len(self._samples) < 2:
            return result
        end_at, end = self._samples[-1]
        base_at, base = self._samples[0]
        for at, sample in reversed(list(self._samples)[:-1]):
            if at <= end_at - window:
                base_at, base = at, sample
                break
        elapsed = end_at - base_at
        if elapsed <= 0:
            return result
        for key in end:  # the standard counters and any the caller added
            if key in base and key not in GAUGE_KEYS:
                result[rate_name(key)] = max(0, end[key] - base[key]) / elapsed
        return result


def _restarted(before: Mapping[str, int], after: Mapping[str, int]) -> bool:
    keys = (*COUNTER_KEYS, "Uptime")
    return any(key in before and key in after and after[key] < before[key] for key in keys)
