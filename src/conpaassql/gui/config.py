"""The front-end's configuration: ``KEY = value`` lines, as in the seed's
``/etc/conpaassql/manager-gui.conf`` (``MANAGER_HOST = 'localhost'``).

Values may be quoted with ``'`` or ``"``; ``#`` starts a comment; a ``[gui]``
section header is tolerated. Relative paths are taken from the file's directory.
A missing default file means the defaults (a manager on ``localhost:50000``); a
wrong key or value is a ``ConfigError`` naming the file and the key.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from conpaassql.errors import ConfigError
from conpaassql.gui.sessions import DEFAULT_IDLE_HOURS
from conpaassql.rpc.endpoint import base_url, check_host

DEFAULT_FILE = Path("/etc/conpaassql/manager-gui.conf")
SECTION = "gui"
#: A logged-in browser unused this long logs in again (30 days at the most).
MAX_IDLE_HOURS = 720
_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}


@dataclass(frozen=True)
class GuiConfig:
    """Where the manager is and how to reach it; the front-end's own TLS files."""

    manager_host: str = "localhost"
    manager_port: int = 50000
    manager_https: bool = False
    token_file: Path | None = None
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    gui_cert: Path | None = None
    gui_key: Path | None = None
    session_idle_hours: float = DEFAULT_IDLE_HOURS
    path: Path | None = None

    @property
    def manager_url(self) -> str:
        return base_url(self.manager_host, self.manager_port, https=self.manager_https)

    @property
    def gui_tls(self) -> bool:
        return self.gui_cert is not None


def _port(value: str) -> int:
    if not (value.isascii() and value.isdigit()) or not 1 <= int(value) <= 65535:
        raise ValueError(f"must be a port number (1-65535), not {value!r}")
    return int(value)


def _flag(value: str) -> bool:
    lowered = value.lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ValueError(f"must be true or false, not {value!r}")


def _hours(value: str) -> float:
    if not re.fullmatch(r"[0-9]+(\.[0-9]+)?", value) or \
            not 0 < float(value) <= MAX_IDLE_HOURS:
        raise ValueError(f"must be a number of hours, more than 0 and at most "
                         f"{MAX_IDLE_HOURS}, not {value!r}")
    return float(value)


def _path(value: str) -> str:
    if not value or "\x00" in value:
        raise ValueError("must be a file's path")
    return value


#: key -> (dataclass field, parser)
KEYS: dict[str, tuple[str, Callable[[str], Any]]] = {
    "MANAGER_HOST": ("manager_host", check_host),
    "MANAGER_PORT": ("manager_port", _port),
    "MANAGER_HTTPS": ("manager_https", _flag),
    "TOKEN_FILE": ("token_file", _path),
    "CA_FILE": ("ca_file", _path),
    "CERT_FILE": ("cert_file", _path),
    "KEY_FILE": ("key_file", _path),
    "GUI_CERT": ("gui_cert", _path),
    "GUI_KEY": ("gui_key", _path),
    "SESSION_IDLE_HOURS": ("session_idle_hours", _hours),
}
_PATHS = {"token_file", "ca_file", "cert_file", "key_file", "gui_cert", "gui_key"}


def _unquote(raw: str) -> str:
    """The value of ``raw``: quoted (a comment may follow), or bare (up to `` #``)."""
    text = raw.strip()
    if text[:1] in ("'", '"'):
        end = text.find(text[0], 1)
        if end < 0:
            raise ValueError("the quote is not closed")
        rest = text[end + 1:].strip()
        if rest and not rest.startswith("#"):
            raise ValueError(f"unexpected text after the quoted value: {rest!r}")
        return text[1:end]
    if text.startswith("#"):
        return ""
    return text.split(" #", 1)[0].split("\t#", 1)[0].strip()


def parse(text: str, where: str) -> dict[str, str]:
    """The ``KEY: value`` pairs of a file's ``text`` (``where`` names it in errors)."""
    found: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if not stripped or stripped.startswith(("#", ";")):
            continue
        if stripped.startswith("["):
            if stripped.lower() != f"[{SECTION}]":
                raise ConfigError(f"{where} line {number}",
                                  detail=f"unknown section {stripped}; only [{SECTION}] "
                                  "(or none) is allowed")
            continue
        key, sep, raw = stripped.partition("=")
        key = key.strip().upper()
        if not sep or not key:
            raise ConfigError(f"{where} line {number}", detail="expected KEY = value")
        if key not in KEYS:
            raise ConfigError(f"{where}: {key}",
                              detail=f"unknown key; known: {', '.join(KEYS)}")
        if key in found:
            raise ConfigError(f"{where}: {key}", detail="given twice")
        try:
            found[key] = _unquote(raw)
        except ValueError as exc:
            raise ConfigError(f"{where}: {key}", detail=str(exc)) from None
    return found


def from_pairs(pairs: dict[str, str], where: str, base: Path | None) -> GuiConfig:
    """A checked ``GuiConfig`` from parsed pairs; relative paths taken from ``base``."""
    values: dict[str, Any] = {}
    for key, raw in pairs.items():
        name, check = KEYS[key]
        try:
            value = check(raw)
        except ValueError as exc:
            raise ConfigError(f"{where}: {key}", detail=str(exc)) from None
        if name in _PATHS:
            value = Path(os.path.expanduser(value))
            if base is not None and not value.is_absolute():
                value = base / value
        values[name] = value
    for first, second in (("CERT_FILE", "KEY_FILE"), ("GUI_CERT", "GUI_KEY")):
        if (first in pairs) != (second in pairs):
            raise ConfigError(f"{where}: {first}, {second}", detail="give both or neither")
    return GuiConfig(**values)


def load(path: str | Path | None = None) -> GuiConfig:
    """The configuration in ``path``, or in the default file (defaults if it is absent)."""
    given = path is not None
    file = Path(path) if path is not None else DEFAULT_FILE
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        if given:
            raise ConfigError(str(file), detail="no such file") from None
        return GuiConfig()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(str(file), detail=f"cannot read it: {exc}") from None
    config = from_pairs(parse(text, str(file)), str(file), file.absolute().parent)
    return replace(config, path=file)
