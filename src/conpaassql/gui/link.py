"""The front-end's way to its manager: ``RpcClient``s over the manager's public API.

One client serves every browser with the configured credential (``TOKEN_FILE``,
re-read when the file changes, or none); when users log in with tokens of their
own, each token gets a client of its own (the most recently used few are kept).
"""

from __future__ import annotations

import hashlib
import os
import ssl
from collections import OrderedDict
from pathlib import Path
from typing import Any

from conpaassql.errors import ConfigError
from conpaassql.gui.config import GuiConfig
from conpaassql.rpc.client import RpcClient
from conpaassql.rpc.endpoint import check_token

#: Calls that are not transfers nor long actions wait this long for the manager.
CALL_TIMEOUT = 30.0
MAX_SESSION_CLIENTS = 32


class ManagerLink:
    """RPC clients of one manager."""

    def __init__(self, config: GuiConfig) -> None:
        self.config = config
        self.url = config.manager_url
        self._shared: RpcClient | None = None
        self._shared_key: tuple[int, int] | None = None
        self._sessions: OrderedDict[str, RpcClient] = OrderedDict()
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

    async def client(self, token: str | None = None) -> RpcClient:
        """The client for a browser's own ``token``, or the configured one."""
        if token is not None:
            return await self._session_client(token)
        key = self._token_file_key()
        if self._shared is None or key != self._shared_key:
            fresh = self._new(None if self.config.token_file is None
                              else self._read_token_file(self.config.token_file))
            if self._shared is not None:
                await self._shared.aclose()
            self._shared, self._shared_key = fresh, key
        return self._shared

    async def _session_client(self, token: str) -> RpcClient:
        digest = hashlib.sha256(token.encode()).hexdigest()
        found = self._sessions.get(digest)
        if found is not None:
            self._sessions.move_to_end(digest)
            return found
        made = self._sessions[digest] = self._new(token)
        while len(self._sessions) > MAX_SESSION_CLIENTS:
            _, oldest = self._sessions.popitem(last=False)
            await oldest.aclose()
        return made

    async def check(self, token: str) -> Any:
        """``get_service_info`` with ``token`` (a user logging in): the manager's
        error if it does not take the token."""
        async with self._new(token) as client:
            return await client.get("get_service_info")

    async def aclose(self) -> None:
        clients = list(self._sessions.values())
        if self._shared is not None:
            clients.append(self._shared)
        self._sessions.clear()
        self._shared = None
        for client in clients:
            await client.aclose()
