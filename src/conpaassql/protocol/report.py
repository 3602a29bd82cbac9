"""The agent's report of itself: the answer to the manager's probe (``get_server_state``)
and the state its heartbeat sends (``register_node``).

It is parsed once, where it arrives (the manager's typed client for a probe, the
``register_node`` handler for a heartbeat), and read through these models after.
Every field has a default, so a partial report (an older agent, a report kept in
the store) parses too.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar

from pydantic import Field, ValidationError

from conpaassql.protocol.base import Reply


class MysqldStatus(Reply):
    """The agent's view of its mysqld process."""

    answering: bool = False  # the server answered the agent's query just now
    pid: int | None = None
    restarts: int = 0
    last_exit: str | None = None
    last_error: str | None = None
    uptime: float | None = None
    version: str | None = None


class SlaveStatus(Reply):
    """The slave side of ``SHOW SLAVE STATUS`` (None on a server that replicates from
    nobody)."""

    master_host: str | None = None
    master_port: int | None = None
    io_running: str | None = None  # "Yes", "No", "Connecting"
    sql_running: str | None = None
    seconds_behind_master: int | None = None
    gtid_io_pos: str | None = None
    last_io_errno: int | None = None
    last_io_error: str | None = None
    last_sql_errno: int | None = None
    last_sql_error: str | None = None
    using_gtid: str | None = None
    sql_state: str | None = None

    @property
    def replicating(self) -> bool:
        """Both threads run."""
        return self.io_running == "Yes" and self.sql_running == "Yes"

    @property
    def last_error(self) -> str | None:
        return self.last_sql_error or self.last_io_error or None


class ReplicationStatus(Reply):
    """The server's replication state: read-only flag, GTID positions, semi-sync."""

    read_only: bool | None = None
    gtid_current_pos: str = ""
    gtid_binlog_pos: str = ""
    gtid_slave_pos: str = ""
    semi_sync_master: bool = False
    semi_sync_slave: bool = False
    semi_sync_clients: int = 0
    slave: SlaveStatus | None = None


class LeaseHeld(Reply):
    """A master's lease as its agent holds it: the length it renews for and the slaves'
    health ports it asks (None: it was never told any, so it asks nobody)."""

    seconds: Annotated[float, Field(gt=0, le=3600, allow_inf_nan=False)]
    slaves: list[str] | None = None


class StateReport(Reply):
    """What an agent tells of itself and its server."""

    omitted_if_none: ClassVar[frozenset[str]] = frozenset({"event", "options_generation",
                                                            "restart_pending", "lease"})

    id: int | None = None
    node_id: int | None = None
    service_id: str | None = None
    name: str | None = None
    ip: str | None = None
    port: int | None = None
    mysqld_port: int | None = None
    health_port: int | None = None  # the plain-HTTP port of GET /primary, /replica, /health
    tls_names: list[str] | None = None  # the names and addresses its certificate holds
    state: str | None = None  # the agent's AgentState
    mysqld: MysqldStatus = MysqldStatus()
    replication: ReplicationStatus | None = None  # None while mysqld does not answer
    event: str | None = None  # heartbeats only: what just happened
    #: The digest of the service's options the node holds (None: it holds none) and
    #: whether some of them wait for a restart of mysqld.
    options_generation: str | None = None
    restart_pending: bool | None = None
    lease: LeaseHeld | None = None  # the master's only: what its lease holds

    @property
    def mysqld_answering(self) -> bool:
        """Is mysqld answering (the one place this is worked out)."""
        return self.mysqld.answering

    @property
    def slave(self) -> SlaveStatus | None:
        return self.replication.slave if self.replication is not None else None

    @classmethod
    def parse(cls, raw: object) -> StateReport | None:
        """A report read back from where it was kept (None if it is not one)."""
        if not isinstance(raw, dict):
            return None
        try:
            return cls.model_validate(raw)
        except ValidationError:
            return None


def mysqld_answering(report: StateReport | None) -> bool:
    """Is mysqld answering, by ``report`` (no report: not that anyone knows)."""
    return report is not None and report.mysqld_answering


def public_report(report: StateReport) -> dict[str, Any]:
    """The report as the manager keeps and shows it (the heartbeat's event is recorded
    apart)."""
    return report.model_dump(mode="json", exclude={"event", "lease"})
