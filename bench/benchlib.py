"""What the benchmarks share: a manager process with its own subnet, waits with
deadlines, the native tools on a node's socket, CPU and memory accounting, and
the quiet-machine check.

The scripts are run as ``.venv/bin/python bench/NAME.py``, so this module is
imported as a sibling (``import benchlib``). Nothing here prints a result: each
benchmark renders its own table.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any, Protocol, TypeVar

from rich.console import Console
from rich.table import Table

from conpaassql.cloud.local import pid_alive
from conpaassql.mysql.binaries import find_binary

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # the harness the tests use too
    sys.path.insert(0, str(REPO))

from testbed.manager import HarnessError, Manager, local_cloud, wait_until  # noqa: E402

T = TypeVar("T")
CLIENT = ("mariadb", "mysql")
DUMPER = ("mariadb-dump", "mysqldump")
SOURCE_DB = "src"
TABLE = "sbtest1"
SAMPLE_EVERY = 0.05  # seconds between two memory samples
SETTLE_TIMEOUT = 120.0  # seconds to wait for a quiet server before a run
SETTLED_DIRTY_PAGES = 64
SETTLED_HISTORY = 100
BUSY_SHARE = 0.10  # other processes' share of the CPUs above which the figures are noisy
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
#: What other engineers' test runs and benchmarks look like in a process list.
OTHER_WORK_PATTERNS = ("pytest", r"bench/(provision|dump|replication|clouds|gui)\.py")
QUIET_WAIT = 900.0  # seconds to wait at most for the machine to be free of them
QUIET_POLL = 10.0

err = Console(stderr=True)


#: The benchmark could not measure what it wanted (the harness's timeouts are of it too).
BenchError = HarnessError


# -- small helpers ------------------------------------------------------------


def run_within(work: Coroutine[Any, Any, T], deadline: float | None, what: str) -> T:
    """``asyncio.run(work)``; ``BenchError`` if it takes over ``deadline`` seconds."""

    async def bounded() -> T:
        try:
            return await asyncio.wait_for(work, deadline)
        except TimeoutError:
            raise BenchError(f"{what} took over {deadline:g}s") from None

    return asyncio.run(bounded())


def vmrss_mb(pid: int | None) -> float | None:
    if pid is None:
        return None
    try:
        with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as handle:
            for line in handle:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024.0
    except (OSError, ValueError):
        return None
    return None


def cpu_times(pid: int | None) -> tuple[float, float] | None:
    """CPU seconds (user plus system) of ``pid`` so far, and of its children it reaped."""
    if pid is None:
        return None
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as handle:
            fields = handle.read().rpartition(")")[2].split()
    except OSError:
        return None
    # After the command, fields[0] is stat(5)'s field 3: utime is 14, stime 15,
    # cutime 16 and cstime 17.
    return ((int(fields[11]) + int(fields[12])) / CLOCK_TICKS,
            (int(fields[13]) + int(fields[14])) / CLOCK_TICKS)


def machine_busy_seconds() -> float:
    """CPU seconds the whole machine spent busy (not idle, not waiting for I/O) so far."""
    with open("/proc/stat", encoding="ascii") as handle:
        fields = [int(value) for value in handle.readline().split()[1:]]
    # user nice system idle iowait irq softirq (then steal, not this machine's own work)
    return (sum(fields[:7]) - fields[3] - fields[4]) / CLOCK_TICKS


def machine_steal_seconds() -> float:
    """CPU seconds the hypervisor gave to other guests while this machine wanted them."""
    with open("/proc/stat", encoding="ascii") as handle:
        fields = [int(value) for value in handle.readline().split()[1:]]
    return (fields[7] if len(fields) > 7 else 0) / CLOCK_TICKS


def median(values: list[float]) -> float:
    return float(statistics.median(values))


def mib(size: int) -> str:
    return f"{size / 2**20:.1f} MiB"


def order(kinds: tuple[str, ...], round_index: int) -> tuple[str, ...]:
    """The runs of one round: as given in even rounds, reversed in odd ones."""
    return kinds if round_index % 2 == 0 else kinds[::-1]


def verdict(ok: bool) -> str:
    return "[green]met[/green]" if ok else "[red]missed[/red]"


def runs_of(values: list[float]) -> str:
    return " ".join(f"{v:.2f}" for v in values)


class Watch:
    """While a block runs: the peak resident memory of some processes (sampled every
    50 ms) and the CPU time used by them, by the client tools (``mariadb``,
    ``mariadb-dump``: children of this process or of an agent) and by this process."""

    def __init__(self, pids: dict[str, int | None], rss: tuple[str, ...] = ()) -> None:
        self.pids = {name: pid for name, pid in pids.items() if pid is not None}
        self.rss = {name: self.pids[name] for name in rss if name in self.pids}
        self.peak: dict[str, float] = {}
        self.cpu: dict[str, float] = {}
        self._start: dict[str, float] = {}
        self._halt = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="rss-sampler")

    def _sample(self) -> None:
        for name, pid in self.rss.items():
            value = vmrss_mb(pid)
            if value is not None and value > self.peak.get(name, 0.0):
                self.peak[name] = value

    def _run(self) -> None:
        while not self._halt.wait(SAMPLE_EVERY):
            self._sample()

    def _cpu_now(self) -> dict[str, float]:
        now: dict[str, float] = {}
        tools = 0.0
        for name, pid in self.pids.items():
            times = cpu_times(pid)
            if times is not None:
                now[name] = times[0]
                if name.startswith("agent"):
                    tools += times[1]
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        now["client tool"] = tools + children.ru_utime + children.ru_stime
        now["bench"] = time.process_time()
        now["machine"] = machine_busy_seconds()
        return now

    def __enter__(self) -> Watch:
        self._start = self._cpu_now()
        self._sample()
        if self.rss:
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._halt.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        self._sample()
        end = self._cpu_now()
        self.cpu = {name: end[name] - self._start[name] for name in end
                    if name in self._start}
        # What the rest of the machine used meanwhile (other work slows every run).
        machine = self.cpu.pop("machine")
        self.cpu["other processes"] = max(0.0, machine - sum(self.cpu.values()))


def other_share(runs: list[tuple[float, float]]) -> float:
    """The share of the machine's CPU time that other processes took during some runs,
    given each run's (seconds, other processes' CPU seconds)."""
    available = sum(seconds for seconds, _ in runs) * (os.cpu_count() or 1)
    taken = sum(other for _, other in runs)
    return taken / available if available else 0.0


# -- other work on the machine --------------------------------------------------


def _ancestors() -> set[int]:
    """This process and the processes it descends from (``make bench``'s shell...)."""
    found, pid = set(), os.getpid()
    while pid > 1 and pid not in found:
        found.add(pid)
        try:
            with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as handle:
                pid = int(handle.read().rpartition(")")[2].split()[1])
        except (OSError, ValueError, IndexError):
            break
    return found


def other_work() -> list[str]:
    """Test runs and benchmarks of others running now (``pgrep -f``), as 'pid command'."""
    mine = _ancestors()
    found: dict[int, str] = {}
    for pattern in OTHER_WORK_PATTERNS:
        try:
            listed = subprocess.run(["pgrep", "-af", pattern], capture_output=True, text=True,
                                    timeout=10, check=False).stdout
        except (OSError, subprocess.TimeoutExpired):
            continue
        for line in listed.splitlines():
            pid_text, _, command = line.partition(" ")
            if pid_text.isdigit() and int(pid_text) not in mine:
                found[int(pid_text)] = command[:100]
    return [f"{pid} {command}" for pid, command in sorted(found.items())]


class QuietMachine:
    """Waits, before each timed run, until no other test run or benchmark is running
    (at most ``limit`` seconds, polling every ``poll``); remembers how long it waited
    and what it saw. Once a wait ran out, later ones look once and go on: the
    machine is busy for good, and the figures say so."""

    def __init__(self, limit: float = QUIET_WAIT, poll: float = QUIET_POLL) -> None:
        self.limit = limit
        self.poll = poll
        self.waited = 0.0
        self.waits = 0
        self.gave_up = 0  # waits that ran out with others still running
        self.seen: dict[str, int] = {}  # process -> times seen busy before a run
        self._exhausted = False

    def wait(self, what: str) -> list[str]:
        """Wait for a quiet machine before ``what``; the others still running, if any."""
        self.waits += 1
        started = time.monotonic()
        deadline = started + (0.0 if self._exhausted else self.limit)
        announced = False
        while True:
            others = other_work()
            if not others:
                break
            for line in others:
                self.seen[line] = self.seen.get(line, 0) + 1
            if time.monotonic() + self.poll > deadline:
                self.gave_up += 1
                self._exhausted = True
                err.print(f"[yellow]still running after {time.monotonic() - started:.0f}s, "
                          f"measuring {what} anyway:[/yellow] {'; '.join(others)[:300]}")
                break
            if not announced:
                err.print(f"waiting (up to {self.limit:.0f}s) for others' tests or benchmarks "
                          f"to end before {what}: {'; '.join(others)[:300]}")
                announced = True
            time.sleep(self.poll)
        self.waited += time.monotonic() - started
        return others


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


@dataclass(frozen=True)
class _Seen:
    kind: str
    own: float  # CPU seconds of the process itself
    reaped: float  # ... of its children it waited for
    ppid: int


#: Where the CPU time of the children a process of each kind reaped is counted.
_REAPED_AS = {"agent": "tools", "bench": "tools", "manager": "manager",
              "mariadbd": "mariadbd", "tools": "tools"}
CPU_KINDS = ("mariadbd", "tools", "agent", "manager", "bench")


def _kind(pid: int, command: bytes) -> str:
    if pid == os.getpid():
        return "bench"
    if b"\0conpaassql\0manager\0" in command:
        return "manager"
    if b"\0conpaassql\0agent\0" in command:
        return "agent"
    if command.split(b"\0", 1)[0].endswith(b"mariadbd"):
        return "mariadbd"
    return "tools"


class MachineShare:
    """The CPU time of the machine during a block, split into this benchmark's (this
    process, and every process whose command line names ``root``: the manager, the
    agents, their servers and the tools they run) by kind, and everybody else's.

    Processes come and go (a server killed and started again, a mariabackup): one
    started meanwhile counts from its start, one gone counts through the parent
    of ours that reaped it (``tools``: what an agent or this benchmark ran). The
    same measure as the "other processes" of ``Watch``, for such runs."""

    def __init__(self, root: Path) -> None:
        self.root = os.fsencode(str(root))
        self.seconds = 0.0
        self.other = 0.0
        self.ours = 0.0
        self.steal = 0.0  # CPU seconds the hypervisor gave to other guests meanwhile
        self.cpu: dict[str, float] = {}  # kind -> CPU seconds during the block

    def _ours(self) -> dict[int, _Seen]:
        found: dict[int, _Seen] = {}
        me = os.getpid()
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            pid = int(entry)
            command = _cmdline(pid)
            if pid != me and self.root not in command:
                continue
            try:
                with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as handle:
                    fields = handle.read().rpartition(")")[2].split()
            except OSError:
                continue
            found[pid] = _Seen(_kind(pid, command),
                               (int(fields[11]) + int(fields[12])) / CLOCK_TICKS,
                               (int(fields[13]) + int(fields[14])) / CLOCK_TICKS,
                               int(fields[1]))
        return found

    def __enter__(self) -> MachineShare:
        self._started = time.perf_counter()
        self._machine = machine_busy_seconds()
        self._steal = machine_steal_seconds()
        self._before = self._ours()
        return self

    def __exit__(self, *exc: object) -> None:
        after = self._ours()
        machine = machine_busy_seconds() - self._machine
        self.steal = machine_steal_seconds() - self._steal
        self.seconds = time.perf_counter() - self._started
        before = self._before
        cpu = dict.fromkeys(CPU_KINDS, 0.0)
        for pid, now in after.items():
            then = before.get(pid)
            if then is not None and then.kind != now.kind:
                then = None  # a reused pid (or a process that exec'd): new
            cpu[now.kind] += now.own - (then.own if then else 0.0)
            cpu[_REAPED_AS[now.kind]] += now.reaped - (then.reaped if then else 0.0)
        for pid, then in before.items():
            parent = before.get(then.ppid)
            if pid in after or parent is None or then.ppid not in after:
                continue  # still there (counted above), or not reaped by one of ours
            # Its parent reaped it: its whole life is in the parent's children's time.
            cpu[_REAPED_AS[parent.kind]] -= then.own + then.reaped
        self.cpu = cpu
        self.ours = sum(cpu.values())
        self.other = max(0.0, machine - max(0.0, self.ours))

    @property
    def share(self) -> float:
        return other_share([(self.seconds, self.other)])


# -- the manager and its nodes --------------------------------------------------


class ManagerProcess(Manager):
    """The shared harness's manager, with its own state dir, template cache and address
    range under ``root``, and what it started tracked to the end."""

    def __init__(self, root: Path, subnet: int, buffer_pool: str | None,
                 manager_options: str = "") -> None:
        self.root = root
        self.cache_dir = root / "cache"
        (root / "state").mkdir(mode=0o700)
        self.cache_dir.mkdir(mode=0o700)
        mysql_options = f"innodb_buffer_pool_size={buffer_pool}" if buffer_pool else None
        super().__init__(root / "state", local_cloud(subnet, self.cache_dir, mysql_options),
                         manager_options)
        self.seen_pids: list[int] = []  # node processes to be sure of at the end

    def add_nodes(self, count: int) -> list[int]:
        """``add_nodes``: the new nodes' ids (they boot in the background)."""
        answer = self.post("add_nodes", count=count)
        nodes = answer.get("nodes") or answer.get("serviceNode")
        if isinstance(nodes, dict):
            nodes = [nodes]
        return [int(node["id"]) for node in nodes]

    def add_node(self, timeout: float) -> int:
        node_id = self.add_nodes(1)[0]

        def running() -> bool:
            states = {n["id"]: n["state"] for n in self.get("list_nodes")["nodes"]}
            if states.get(node_id) in ("FAILED", "TERMINATED"):
                raise BenchError(f"node {node_id} is {states[node_id]}")
            return states.get(node_id) == "RUNNING"

        wait_until(running, timeout, 0.2, f"node {node_id} RUNNING")
        self.note_pids(node_id)
        return node_id

    def note_pids(self, node_id: int) -> None:
        """Remember the node's agent and mariadbd, to be sure they are gone at the end."""
        self.seen_pids += [pid for pid in (self.agent_pid(node_id), self.mysqld_pid(node_id))
                           if pid is not None and pid not in self.seen_pids]

    def shutdown(self, timeout: float) -> None:
        if self.get("get_service_info")["state"] not in ("EPILOGUE", "STOPPED"):
            self.post("shutdown")
        wait_until(lambda: self.get("get_service_info")["state"] == "STOPPED", timeout, 0.2,
                   "the service STOPPED")

    def leftovers(self) -> list[int]:
        """Processes still running whose command line names this manager's state dir."""
        marker = os.fsencode(str(self.state_dir))
        return [int(entry) for entry in os.listdir("/proc")
                if entry.isdigit() and int(entry) != os.getpid()
                and marker in _cmdline(int(entry))]

    def close(self) -> None:
        """Stop the manager and every node process it left, whatever state they are in."""
        self.stop()
        super().close()
        for pid in self.seen_pids:  # the node directory may be gone, its processes not
            if pid_alive(pid) and is_node_process(pid, self.state_dir):
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
        for pid in self.leftovers():  # a tool an agent started, a server restarted...
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)


def is_node_process(pid: int, state_dir: Path) -> bool:
    """True if ``pid`` still is one of this benchmark's agents or mariadbd (not a reuse)."""
    return str(state_dir).encode() in _cmdline(pid)


# -- the native tools on the node's socket ---------------------------------------


class Native:
    """``mariadb`` and ``mariadb-dump`` as root on one node's unix socket, or as the
    account and over the connection (TCP, TLS) that ``defaults`` names when
    ``socket_path`` is None."""

    def __init__(self, socket_path: Path | None, defaults: Path, timeout: float) -> None:
        self.connection = ["-S", str(socket_path)] if socket_path is not None else []
        self.defaults = defaults
        self.timeout = timeout
        self.client = find_binary(*CLIENT)
        self.dumper = find_binary(*DUMPER)

    def _run(self, args: list[str], stdin: Any, stdout: Any, what: str) -> None:
        process = subprocess.Popen(args, stdin=stdin, stdout=stdout, stderr=subprocess.PIPE,
                                   start_new_session=True)
        try:
            _, errors = process.communicate(timeout=self.timeout)
        except subprocess.TimeoutExpired:
            raise BenchError(f"{what} took over {self.timeout:g}s") from None
        finally:
            if process.poll() is None:
                with contextlib.suppress(OSError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)
        if process.returncode != 0:
            text = errors.decode("utf-8", "replace").strip()[-800:]
            raise BenchError(f"{what} exited with {process.returncode}: {text}")

    def sql(self, statements: str) -> list[list[str]]:
        """Run ``statements``; the rows they printed, tab-separated fields."""
        args = [self.client, f"--defaults-file={self.defaults}", *self.connection,
                "--batch", "--skip-column-names", "-e", statements]
        process = subprocess.run(args, stdin=subprocess.DEVNULL, capture_output=True,
                                 timeout=self.timeout, check=False)
        if process.returncode != 0:
            text = process.stderr.decode("utf-8", "replace").strip()[-800:]
            raise BenchError(f"SQL failed ({statements[:80]}...): {text}")
        lines = process.stdout.decode("utf-8", "replace").splitlines()
        return [line.split("\t") for line in lines if line]

    def load(self, dump: Path, database: str) -> float:
        """``mariadb DATABASE < dump``; its seconds."""
        args = [self.client, f"--defaults-file={self.defaults}", *self.connection,
                database]
        with open(dump, "rb") as source:
            started = time.perf_counter()
            self._run(args, source, subprocess.DEVNULL, f"mariadb {database} < {dump.name}")
            return time.perf_counter() - started

    def dump(self, database: str, out: Path,
             options: tuple[str, ...] = ("--single-transaction",)) -> float:
        """``mariadb-dump OPTIONS -- DATABASE > out`` (by default the plain
        ``--single-transaction`` a user would run); its seconds."""
        args = [self.dumper, f"--defaults-file={self.defaults}", *self.connection,
                *options, "--", database]
        with open(out, "wb") as sink:
            started = time.perf_counter()
            self._run(args, subprocess.DEVNULL, sink, f"mariadb-dump {database}")
            return time.perf_counter() - started

    def status(self, name: str) -> int:
        rows = self.sql(f"SHOW GLOBAL STATUS LIKE '{name}'")
        return int(rows[0][1]) if rows else 0

    def settle(self, timeout: float = SETTLE_TIMEOUT) -> None:
        """Start every run from the same quiet server: the previous run's dirty pages
        flushed and its undo purged, and the OS's write-back done."""
        os.sync()
        limit = self.sql("SELECT @@GLOBAL.innodb_max_dirty_pages_pct")[0][0]
        self.sql("SET GLOBAL innodb_max_dirty_pages_pct = 0")
        try:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                if self.status("Innodb_buffer_pool_pages_dirty") <= SETTLED_DIRTY_PAGES and \
                        self.status("Innodb_history_list_length") <= SETTLED_HISTORY:
                    break
                time.sleep(0.2)
            else:
                err.print(f"[yellow]the server did not settle in {timeout:g}s[/yellow]")
        finally:
            self.sql(f"SET GLOBAL innodb_max_dirty_pages_pct = {float(limit)}")
        os.sync()

    def fingerprint(self, database: str) -> tuple[str, str]:
        """(row count, ``CHECKSUM TABLE``) of the benchmark table in ``database``."""
        rows = self.sql(f"SELECT COUNT(*) FROM `{database}`.`{TABLE}`;"
                        f" CHECKSUM TABLE `{database}`.`{TABLE}`")
        return rows[0][0], rows[1][1]


def fill_source(native: Native, rows: int, database: str = SOURCE_DB) -> None:
    """``DATABASE.sbtest1`` as sysbench makes it (id, k with its index, c, pad), from a
    sequence."""
    native.sql(
        f"CREATE DATABASE `{database}`;"
        f" CREATE TABLE `{database}`.`{TABLE}` (id INT NOT NULL PRIMARY KEY,"
        " k INT NOT NULL DEFAULT 0, c CHAR(120) NOT NULL DEFAULT '',"
        " pad CHAR(60) NOT NULL DEFAULT '', KEY k_1 (k)) ENGINE=InnoDB;"
        f" INSERT INTO `{database}`.`{TABLE}` (id, k, c, pad)"
        f" SELECT seq, 1 + (seq * 7919) MOD {rows}, LEFT(REPEAT(MD5(seq), 4), 120),"
        f" LEFT(REPEAT(SHA1(seq), 2), 60) FROM `{database}`.`seq_1_to_{rows}`")


# -- signals ------------------------------------------------------------------------


def _raise_on_term(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


@contextlib.contextmanager
def signals_raise() -> Iterator[None]:
    """SIGTERM unwinds like SIGINT, so that the cleanup runs."""
    previous = signal.signal(signal.SIGTERM, _raise_on_term)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def quiet_signals() -> None:
    """Cleanup must not be interrupted half way."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


# -- running a benchmark ------------------------------------------------------------


def run_measured(prefix: str, measure: Callable[[Path], None]) -> bool:
    """``measure(root)`` in a temporary directory of its own, SIGTERM unwinding like
    SIGINT; the directory is removed whatever happens. False, said on stderr, if the
    benchmark failed."""
    root = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    try:
        with signals_raise():
            measure(root)
    except BenchError as exc:
        err.print(f"[red]benchmark failed:[/red] {exc}")
        return False
    finally:
        quiet_signals()
        shutil.rmtree(root, ignore_errors=True)
    return True


class Timed(Protocol):
    """A benchmark's results: its whole time and the load average at its start and end."""

    total_s: float
    load: list[float]


def report(results: Timed, started: float, summarize: Callable[[Any], dict[str, Any]],
           render: Callable[[dict[str, Any]], None], **extra: Any) -> int:
    """A run's end: its time and the load average into ``results``, then its figures
    (``summarize(results)`` and ``extra``) as a table and as one JSON line; 0."""
    results.total_s = time.perf_counter() - started
    results.load.append(os.getloadavg()[0])
    figures = {**summarize(results), **extra}
    render(figures)
    print(json.dumps(figures, sort_keys=True), flush=True)
    return 0


def print_with_machine_rows(table: Table, figures: dict[str, Any], width: int = 160) -> None:
    """The rows a transfer benchmark's table ends with (its time, the load, the other
    work's share of the CPUs), the table, and a note when the machine was busy."""
    blank = [""] * (len(table.columns) - 2)
    table.add_row("total benchmark time", f"{figures['total_s']:.1f} s", *blank)
    table.add_row("load average (1 min) start / end, CPUs",
                  " / ".join(f"{v:.2f}" for v in figures["load_average_1m"]),
                  str(figures["cpus"]), *blank[1:])
    share = figures["other_cpu_share"]
    table.add_row("other processes' share of the CPUs during the runs", f"{share:.0%}",
                  *blank[:-1], f"< {BUSY_SHARE:.0%} {verdict(share < BUSY_SHARE)}")
    console = Console(width=width)
    console.print(table)
    if share >= BUSY_SHARE:
        console.print(f"[yellow]note:[/yellow] other work took {share:.0%} of this machine's "
                      "CPU time during the timed runs; it slows whichever run it overlaps, so "
                      "the ratios are noisy: run again on a quiet machine (or with --repeat).")


def table_arguments(doc: str | None, *, rows: int, size: str,
                    repeat: int) -> argparse.ArgumentParser:
    """The options of a benchmark on a table of ``rows`` rows (about ``size`` of
    SQL): its rows, the rounds, the nodes' buffer pool, their subnet, and the limit
    of every wait. ``parse_table_arguments`` checks them."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0] if doc else None)
    parser.add_argument("--rows", type=int, default=rows,
                        help=f"rows of the table (default %(default)s: ~{size})")
    parser.add_argument("--repeat", type=int, default=repeat,
                        help="rounds of each comparison, order alternating (default %(default)s)")
    parser.add_argument("--buffer-pool", default="256M",
                        help="innodb_buffer_pool_size of the nodes (default %(default)s)")
    parser.add_argument("--subnet", type=int, default=None,
                        help="nodes get 127.0.SUBNET.10-60 (default: a free one of 101-249)")
    parser.add_argument("--timeout", type=float, default=1800.0,
                        help="limit of every single wait, in seconds (default %(default)s)")
    return parser


def parse_table_arguments(parser: argparse.ArgumentParser, argv: list[str] | None,
                          *counts: str) -> argparse.Namespace:
    """The arguments, with --rows, --repeat and the other ``counts`` at least 1 and
    --subnet one of 1-254."""
    args = parser.parse_args(argv)
    names = ("rows", "repeat", *counts)
    if min(getattr(args, name) for name in names) < 1:
        parser.error(", ".join(f"--{name}" for name in names) + " must be at least 1")
    if args.subnet is not None and not 0 < args.subnet < 255:
        parser.error("--subnet must be 1-254")
    return args
