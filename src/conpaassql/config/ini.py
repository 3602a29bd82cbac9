"""The seed's INI format: files, sections and typed values.

Keys are case-insensitive (``OPENNEBULA_URL`` and ``opennebula_url`` alike).
``$NAME`` and ``${NAME}`` in a value are filled from the environment or from
another key of the same section; in strict sections an unknown reference is an
error naming the file, section and key. Sections that are templates for the
cloud (``[onevm_agent_template]``) keep unknown references for the cloud to fill.
"""

from __future__ import annotations

import configparser
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from conpaassql.errors import ConfigError

_REFERENCE = re.compile(r"\$(\{([A-Za-z_][A-Za-z0-9_]*)\}|([A-Za-z_][A-Za-z0-9_]*))")
#: Sections that are templates for the cloud: unknown references are the cloud's.
TEMPLATE_SECTION = "onevm_agent_template"
TRUE_WORDS = frozenset({"1", "true", "yes", "on"})
FALSE_WORDS = frozenset({"0", "false", "no", "off"})


def _join_continued_lines(text: str) -> str:
    """Lines ending with a backslash go on on the next line (the seed's CONTEXT does)."""
    return re.sub(r"\\[ \t]*\r?\n[ \t]*", "", text)


def _expand_section(raw: dict[str, str], env: Mapping[str, str], strict: bool,
                    where: str) -> dict[str, str]:
    """Fill references from the section's other keys (which may refer further)
    and from the environment; what is filled in is not scanned again."""
    resolved: dict[str, str] = {}

    def resolve(key: str, chain: tuple[str, ...]) -> str:
        if key in resolved:
            return resolved[key]
        if key in chain:
            raise ConfigError(f"{where} {key}", detail="references form a cycle: "
                              + " -> ".join((*chain, key)))

        def fill(match: re.Match[str]) -> str:
            name = match.group(2) or match.group(3)
            if name in raw and name != key:
                return resolve(name, (*chain, key))
            if name in env:
                return env[name]
            if strict:
                raise ConfigError(f"{where} {key}",
                                  detail=f"${name} is not set in the environment")
            return match.group(0)

        resolved[key] = _REFERENCE.sub(fill, raw[key])
        return resolved[key]

    return {key: resolve(key, ()) for key in raw}


class IniFile:
    """A parsed INI file whose values have their references filled."""

    def __init__(self, sections: dict[str, dict[str, str]], path: str) -> None:
        self.sections = sections
        self.path = path

    @classmethod
    def read(cls, path: str | Path, env: Mapping[str, str] | None = None) -> IniFile:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(str(path), detail=exc.strerror or str(exc)) from None
        except UnicodeDecodeError:
            raise ConfigError(str(path), detail="not UTF-8 text") from None
        return cls.from_text(text, env, str(path))

    @classmethod
    def from_text(cls, text: str, env: Mapping[str, str] | None = None,
                  name: str = "<text>") -> IniFile:
        parser = configparser.ConfigParser(interpolation=None, strict=False)
        parser.optionxform = str.upper  # type: ignore[assignment,method-assign]
        try:
            parser.read_string(_join_continued_lines(text), source=name)
        except configparser.Error as exc:
            raise ConfigError(name, detail=str(exc).splitlines()[0]) from None
        return cls.from_parser(parser, name, os.environ if env is None else env)

    @classmethod
    def from_parser(cls, parser: configparser.ConfigParser, path: str,
                    env: Mapping[str, str]) -> IniFile:
        sections: dict[str, dict[str, str]] = {}
        for section in parser.sections():
            raw = dict(parser.items(section))
            strict = not section.lower().startswith(TEMPLATE_SECTION)
            sections[section.lower()] = _expand_section(raw, env, strict, f"{path} [{section}]")
        return cls(sections, path)

    def section(self, name: str) -> Section:
        return Section(self, name.lower(), self.sections.get(name.lower(), {}))


@dataclass
class Section:
    ini: IniFile
    name: str
    values: dict[str, str]

    def where(self, key: str) -> str:
        return f"{self.ini.path} [{self.name}] {key.upper()}"

    def get(self, key: str, default: str | None = None) -> str | None:
        value = self.values.get(key.upper())
        if value is None or value.strip() == "":
            return default
        return value.strip()

    def require(self, key: str) -> str:
        value = self.get(key)
        if value is None:
            raise ConfigError(self.where(key), detail="missing")
        return value

    def integer(self, key: str, default: int, minimum: int = 0,
                maximum: int = 2**31 - 1) -> int:
        text = self.get(key)
        if text is None:
            return default
        try:
            value = int(text)
        except ValueError:
            raise ConfigError(self.where(key), detail=f"{text!r} is not an integer") from None
        if not minimum <= value <= maximum:
            raise ConfigError(self.where(key), detail=f"must be between {minimum} and {maximum}")
        return value

    def number(self, key: str, default: float, minimum: float = 0.0) -> float:
        text = self.get(key)
        if text is None:
            return default
        try:
            value = float(text)
        except ValueError:
            raise ConfigError(self.where(key), detail=f"{text!r} is not a number") from None
        if not math.isfinite(value) or value < minimum:
            raise ConfigError(self.where(key), detail=f"must be a number of at least {minimum}")
        return value

    def boolean(self, key: str, default: bool) -> bool:
        text = self.get(key)
        if text is None:
            return default
        if text.lower() in TRUE_WORDS:
            return True
        if text.lower() in FALSE_WORDS:
            return False
        raise ConfigError(self.where(key), detail=f"{text!r} is not true or false")



def relative_path(text: str, path: str | None) -> Path:
    """A file named in the configuration, relative to the configuration file."""
    file = Path(text)
    if not file.is_absolute() and path:
        file = Path(path).parent / file
    return file
