"""How fast do the backup stores stream, and how much memory does a put take?

Run from the repository root::

    .venv/bin/python bench/backup_store.py              # 500 MB, 3 rounds
    .venv/bin/python bench/backup_store.py --mb 100 --repeat 1 --s3

On a data file of ``--mb`` MB that compresses about as InnoDB pages of sysbench
rows do (digits and separators, no two blocks alike), in rounds whose order
alternates, each a median of wall-clock seconds:

- put: ``cat FILE | zstd -3 > out`` (the baseline) against ``FileStore.put`` of
  ``cat FILE``'s stdout (a pipe, as ``mariabackup``'s will be): zstd, AES-256-GCM
  frames, sha256, fsync and rename;
- get: ``zstd -d < out > file`` against ``FileStore.get_into`` a file (frames
  authenticated, checksum checked, ``zstd -d``);
- with ``--s3``, the same put and get through a multipart upload to moto's S3
  server (a separate process on loopback; moto itself is slow, so this tells
  the store's overhead only loosely).

First the peak memory of puts of incompressible bytes from a pipe (``head -c N
/dev/urandom``) of 100 MB, ``--mb`` and four times that (S3: the first two): this
process's resident set sampled every 20 ms before and during the put, and zstd's
peak. It should stay flat, whatever the size.

Prints the figures; asserts nothing (timings belong here, not in the tests).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from conpaassql.backup import BackupKey, BackupStore, FileStore  # noqa: E402
from conpaassql.backup.s3store import S3Settings, S3Store  # noqa: E402

MB = 1_000_000
MIB = 1 << 20
#: Random bytes to digits, spaces and newlines: about 3.4 bits a byte, as sysbench's
#: columns; zstd -3 makes about 2.4 : 1 of it.
DIGITS = bytes((b"0123456789" * 26 + b" \n    ")[:256])


def make_data(path: Path, size: int) -> None:
    with path.open("wb") as stream:
        written = 0
        while written < size:
            block = os.urandom(min(4 * MIB, size - written)).translate(DIGITS)
            stream.write(block)
            written += len(block)


def timed_shell(command: str) -> float:
    start = time.perf_counter()
    subprocess.run(["bash", "-c", command], check=True)
    return time.perf_counter() - start


async def put_from_cat(store: BackupStore, data: Path, key: str) -> float:
    start = time.perf_counter()
    cat = subprocess.Popen(["cat", str(data)], stdout=subprocess.PIPE)
    assert cat.stdout is not None
    try:
        await store.put(key, cat.stdout)
    finally:
        cat.stdout.close()
        cat.wait()
    return time.perf_counter() - start


async def get_to_file(store: BackupStore, key: str, out: Path) -> float:
    start = time.perf_counter()
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        await store.get_into(key, fd)
    finally:
        os.close(fd)
    return time.perf_counter() - start


def same_file(one: Path, two: Path) -> None:
    if subprocess.run(["cmp", "-s", str(one), str(two)], check=False).returncode != 0:
        raise SystemExit(f"{two} differs from {one}")


class S3Server:
    """moto's S3 server in a process of its own, on a free loopback port."""

    def __init__(self) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.url = f"http://127.0.0.1:{self.port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.5).close()
                break
            except OSError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    raise SystemExit("moto's server did not start") from None
                time.sleep(0.1)

    def store(self, key: BackupKey) -> S3Store:
        import boto3

        boto3.client("s3", endpoint_url=self.url, region_name="us-east-1",
                     aws_access_key_id="bench", aws_secret_access_key="bench").create_bucket(
            Bucket="bench")
        return S3Store(S3Settings(bucket="bench", prefix="b", endpoint_url=self.url,
                                  region="us-east-1", access_key_id="bench",
                                  secret_access_key="bench", addressing_style="path"), key)

    def close(self) -> None:
        self.process.terminate()
        self.process.wait(10)


def status_kib(pid: int | str, field: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def zstd_children() -> list[str]:
    """The pids of this process's zstd children."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            name, _, rest = stat.partition(") ")
            if name.endswith("(zstd") and rest.split()[1] == str(os.getpid()):
                found.append(entry.name)
    return found


async def peak_memory(store: BackupStore, size: int) -> tuple[int, int, int]:
    """(resident before, peak during the put, zstd's peak), in bytes."""
    before = status_kib("self", "VmRSS") * 1024
    peak, child = [before], [0]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.02):
            peak[0] = max(peak[0], status_kib("self", "VmRSS") * 1024)
            for pid in zstd_children():
                child[0] = max(child[0], status_kib(pid, "VmHWM") * 1024)
    sampler = threading.Thread(target=sample)
    sampler.start()
    head = subprocess.Popen(["head", "-c", str(size), "/dev/urandom"], stdout=subprocess.PIPE)
    assert head.stdout is not None
    try:
        await store.put("memory/data", head.stdout)
    finally:
        head.stdout.close()
        head.wait()
        done.set()
        sampler.join()
    await store.delete("memory/data")
    return before, peak[0], child[0]


async def memory(name: str, store: BackupStore, sizes: list[int]) -> None:
    for size in sizes:
        before, peak, child = await peak_memory(store, size)
        print(f"memory of a {size / MB:.0f} MB put ({name}, incompressible): this process "
              f"{before / MIB:.0f} MiB before, {peak / MIB:.0f} MiB at most; "
              f"zstd {child / MIB:.0f} MiB at most")


def median(values: list[float]) -> float:
    return statistics.median(values)


async def rounds(name: str, store: BackupStore, data: Path, work: Path, repeat: int,
                 size: int) -> list[tuple[str, float, float]]:
    """(what, baseline seconds, store seconds) medians for put and get."""
    times: dict[str, list[float]] = {"put": [], "base put": [], "get": [], "base get": []}
    compressed, restored = work / "base.zst", work / "restored"
    for turn in range(repeat):
        steps: list[tuple[str, Callable[[], Awaitable[float]]]] = [
            ("base put", lambda: asyncio.to_thread(
                timed_shell, f"cat '{data}' | zstd -3 -q -c > '{compressed}'")),
            ("put", lambda: put_from_cat(store, data, "bench/data")),
        ]
        for what, step in steps if turn % 2 == 0 else steps[::-1]:
            times[what].append(await step())
        steps = [
            ("base get", lambda: asyncio.to_thread(
                timed_shell, f"zstd -d -q -c < '{compressed}' > '{restored}'")),
            ("get", lambda: get_to_file(store, "bench/data", restored)),
        ]
        for what, step in steps if turn % 2 == 0 else steps[::-1]:
            times[what].append(await step())
            same_file(data, restored)
    stored = (await store.head("bench/data")).size
    print(f"{name}: {size / MB:.0f} MB stored as {stored / MB:.1f} MB "
          f"(zstd alone: {compressed.stat().st_size / MB:.1f} MB)")
    await store.delete("bench/data")
    return [("put", median(times["base put"]), median(times["put"])),
            ("get", median(times["base get"]), median(times["get"]))]


def report(name: str, figures: list[tuple[str, float, float]], size: int) -> None:
    for what, base, mine in figures:
        print(f"  {what}: zstd alone {base:6.2f} s ({size / MB / base:6.1f} MB/s)   "
              f"{name} {mine:6.2f} s ({size / MB / mine:6.1f} MB/s)   ratio {mine / base:.2f}")


async def main(arguments: argparse.Namespace) -> None:
    size = arguments.mb * MB
    work = Path(tempfile.mkdtemp(prefix="cq-bench-backup-", dir=arguments.dir))
    key = BackupKey.generate()
    server = None
    try:
        data = work / "data"
        make_data(data, size)
        print(f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}; {shutil.which('zstd')}")
        file_store = FileStore(work / "store", key)
        sizes = sorted({min(100 * MB, size), size, 4 * size})
        await memory("file store", file_store, sizes)
        report("file store", await rounds("file store", file_store, data, work,
                                          arguments.repeat, size), size)
        if arguments.s3:
            server = S3Server()
            s3 = server.store(key)
            await memory("S3 store", s3, sizes[:2])
            report("S3 store", await rounds("S3 store (moto)", s3, data, work,
                                            arguments.repeat, size), size)
            await s3.close()
    finally:
        if server is not None:
            server.close()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=500, help="MB of data (default 500)")
    parser.add_argument("--repeat", type=int, default=3, help="rounds (default 3)")
    parser.add_argument("--s3", action="store_true", help="also through moto's S3 server")
    parser.add_argument("--dir", default=None, help="where the files go (default /tmp)")
    asyncio.run(main(parser.parse_args()))
