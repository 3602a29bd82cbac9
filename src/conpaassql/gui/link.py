"""The front-end's way to its manager: ``RpcClient``s over the manager's public API.

One client serves every browser with the configured credential (``TOKEN_FILE``,
re-read when the file changes, or none); when users log in with tokens of their
own, each token gets a client of its own (the most recently used few are kept).

A request holds its client for as long as it uses it (``async with
link.client(...)``). A client replaced meanwhile (the token file changed, or a
session's client was pushed out by newer ones) is closed when its last request
leaves it, never under a request still using it. Picking or replacing a client
does not await, so two requests cannot both rebuild one.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import ssl
from collections import OrderedDict
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from conpaassql.errors import ConfigError
from conpaassql.gui.config import GuiConfig
from conpaassql.rpc.client import RpcClient
from conpaassql.rpc.endpoint import check_token

#: Calls that are not transfers nor long actions wait this long for the manager.
CALL_TIMEOUT = 30.0
MAX_SESSION_CLIENTS = 32


@dataclass(eq=False)
class Held:
    """A client, how many requests use it now, and whether it has been replaced."""

    client: RpcClient
    users: int = 0
    replaced: bool = False


class ManagerLink:
    """RPC clients of one manager."""

    def __init__(self, config: GuiConfig) -> None:
        self.config = config
        self.url = config.manager_url
        self._shared: Held | None = None
        self._shared_key: tuple[int, int] | None = None
        self._sessions: OrderedDict[str, Held] = OrderedDict()
        self._leaving: set[Held] = set()  # replaced, still in use
        self._tls: ssl.SSLContext | None = None

    def _verify(self) -> ssl.SSLContext | bool:
        """The TLS context checking the manager (CA_FILE, else the system's CAs)."""
        if not self.config.manager_https:
            return False
        if self._tls is None:
            try:
                context = ssl.create_default_context(
                    cafile=None if self.config.ca_file is None else str(self.config.ca_file))
                if self.config.cert_file is not None and self.config.key_file is not None:
                    context.load_cert_chain(str(self.config.cert_file),
                                            str(self.config.key_file))
            except (OSError, ssl.SSLError) as exc:
                raise ConfigError("CA_FILE, CERT_FILE, KEY_FILE",
                                  detail=f"cannot load them: {exc}") from None
            self._tls = context
        return self._tls

    def _token_file_key(self) -> tuple[int, int] | None:
        path = self.config.token_file
        if path is None:
            return None
        try:
            seen = os.stat(path)
        except OSError as exc:
            raise ConfigError("TOKEN_FILE", detail=f"cannot read {path}: "
                              f"{exc.strerror or exc}") from None
        return seen.st_ino, seen.st_mtime_ns

    def _read_token_file(self, path: Path) -> str:
        try:
            text = path.read_text(encoding="utf-8")
            return check_token(text, f"the token file {path}")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError("TOKEN_FILE", detail=f"cannot read {path}: {exc}") from None
        except ValueError as exc:
            raise ConfigError("TOKEN_FILE", detail=str(exc)) from None

    def _new(self, token: str | None) -> RpcClient:
        return RpcClient(self.url, token=token, timeout=CALL_TIMEOUT, verify=self._verify())

    @contextlib.asynccontextmanager
    async def client(self, token: str | None = None) -> AsyncIterator[RpcClient]:
        """The client for a browser's own ``token``, or the configured one, held by
        the caller for the block."""
        held, replaced = self._pick(token)
        held.users += 1
        try:
            await self._retire(replaced)
            yield held.client
        finally:
            held.users -= 1
            if held.replaced and held.users == 0:
                self._leaving.discard(held)
                await held.client.aclose()

    def _pick(self, token: str | None) -> tuple[Held, list[Held]]:
        """The client to use and the ones it replaces (no await in here)."""
        if token is not None:
            return self._session(token)
        key = self._token_file_key()
        if self._shared is not None and key == self._shared_key:
            return self._shared, []
        fresh = Held(self._new(None if self.config.token_file is None
                               else self._read_token_file(self.config.token_file)))
        old, self._shared, self._shared_key = self._shared, fresh, key
        return fresh, [] if old is None else [old]

    def _session(self, token: str) -> tuple[Held, list[Held]]:
        digest = hashlib.sha256(token.encode()).hexdigest()
        found = self._sessions.get(digest)
        if found is not None:
            self._sessions.move_to_end(digest)
            return found, []
        made = self._sessions[digest] = Held(self._new(token))
        evicted = []
        while len(self._sessions) > MAX_SESSION_CLIENTS:
            evicted.append(self._sessions.popitem(last=False)[1])
        return made, evicted

    async def _retire(self, replaced: list[Held]) -> None:
        """Close the replaced clients no request uses; the others are closed by
        their last request."""
        for held in replaced:
            held.replaced = True
            if held.users == 0:
                await held.client.aclose()
            else:
                self._leaving.add(held)

    async def check(self, token: str) -> Any:
        """``get_service_info`` with ``token`` (a user logging in): the manager's
        error if it does not take the token."""
        async with self._new(token) as client:
            return await client.get("get_service_info")

    async def aclose(self) -> None:
        """Close every client (the front-end is stopping)."""
        held = [*self._sessions.values(), *self._leaving]
        if self._shared is not None:
            held.append(self._shared)
        self._sessions.clear()
        self._leaving.clear()
        self._shared = None
        for one in held:
            await one.client.aclose()
