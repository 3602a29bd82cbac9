"""The copy socket's handshake, over real TCP connections on loopback."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import subprocess
import sys

import pytest

from conpaassql.errors import MySQLError
from conpaassql.mysql.socket_copy import Receiver, follow, io_counter


def test_only_a_connection_with_the_ticket_is_taken() -> None:
    async def scenario() -> bytes:
        receiver = Receiver("127.0.0.1")
        try:
            accepting = asyncio.create_task(receiver.accept())
            address = ("127.0.0.1", receiver.port)
            strangers = []
            for opening in (b"", b"x" * 64, bytes.fromhex(receiver.ticket)[:-1] + b"\0"):
                stranger = socket.create_connection(address)
                stranger.sendall(opening)
                if not opening:
                    stranger.shutdown(socket.SHUT_WR)
                strangers.append(stranger)
            await asyncio.sleep(0.3)
            assert not accepting.done()
            for stranger in strangers:  # each was closed by the receiver
                stranger.settimeout(5)
                with contextlib.suppress(ConnectionResetError):  # closed, input unread
                    assert stranger.recv(1) == b""
                stranger.close()
            sender = socket.create_connection(address)
            sender.sendall(bytes.fromhex(receiver.ticket) + b"XBSTCK01rest")
            connection = await asyncio.wait_for(accepting, 5)
            connection.setblocking(True)
            data = connection.recv(100)
            sender.close()
            connection.close()
            return data
        finally:
            receiver.close()

    assert asyncio.run(scenario()) == b"XBSTCK01rest"  # nothing of the ticket is left


@pytest.mark.parametrize(("payload", "error"), [
    (b"", "the copy is empty"),
    (b"not an xbstream at all", "the copy is not an xbstream"),
])
def test_what_is_not_a_copy_is_refused_before_mbstream(payload: bytes, error: str,
                                                       tmp_path: object) -> None:
    async def scenario() -> None:
        receiver = Receiver("127.0.0.1")
        try:
            sender = socket.create_connection(("127.0.0.1", receiver.port))
            sender.sendall(bytes.fromhex(receiver.ticket) + payload)
            sender.shutdown(socket.SHUT_WR)
            connection = await asyncio.wait_for(receiver.accept(), 5)
            with pytest.raises(MySQLError, match=error):
                await receiver.receive(tmp_path, connection, 5.0)  # type: ignore[arg-type]
            sender.close()
        finally:
            receiver.close()

    asyncio.run(scenario())


def test_a_stalled_process_is_killed_and_a_busy_one_is_not() -> None:
    async def run(code: str, stall: float) -> tuple[bool, int | None, int | None]:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-c", code, stdout=subprocess.DEVNULL)
        stalled, count = await follow(process, "wchar", stall)
        return stalled, count, process.returncode

    stalled, _, status = asyncio.run(run("import time; time.sleep(60)", 1.5))
    assert stalled and status is not None and status < 0
    busy = ("import sys, time\n"
            "for _ in range(25):\n"
            "    sys.stdout.write('x' * 1000); sys.stdout.flush(); time.sleep(0.1)\n")
    stalled, count, status = asyncio.run(run(busy, 1.5))
    assert not stalled and status == 0
    assert count is None or count >= 20_000
    assert io_counter(2**22 + 7, "rchar") is None  # no such process
