"""The front-end's configuration file (``conpaassql.gui.config``) and its command line."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from conpaassql.cli import main
from conpaassql.errors import ConfigError
from conpaassql.gui import config
from conpaassql.gui.config import GuiConfig


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "manager-gui.conf"
    path.write_text(text, encoding="utf-8")
    return path


def test_the_seeds_file_as_written(tmp_path: Path) -> None:
    loaded = config.load(write(tmp_path, "MANAGER_HOST = 'localhost'\n"))
    assert loaded.manager_host == "localhost"
    assert loaded.manager_url == "http://localhost:50000/"


def test_every_key_with_a_section_comments_and_quotes(tmp_path: Path) -> None:
    loaded = config.load(write(tmp_path, """\
# the manager of the shop's service
[gui]
MANAGER_HOST = "db-manager.example.org"   # its API
MANAGER_PORT = 50443
manager_https = yes
TOKEN_FILE = secrets/api_token
CA_FILE = '/etc/conpaassql/ca.crt'
CERT_FILE = client.crt
KEY_FILE = client.key
GUI_CERT = /etc/ssl/gui.crt
GUI_KEY = /etc/ssl/gui.key
SESSION_IDLE_HOURS = 0.5
; an INI-style comment too
"""))
    assert loaded == GuiConfig(
        manager_host="db-manager.example.org", manager_port=50443, manager_https=True,
        token_file=tmp_path / "secrets/api_token", ca_file=Path("/etc/conpaassql/ca.crt"),
        cert_file=tmp_path / "client.crt", key_file=tmp_path / "client.key",
        gui_cert=Path("/etc/ssl/gui.crt"), gui_key=Path("/etc/ssl/gui.key"),
        session_idle_hours=0.5, path=tmp_path / "manager-gui.conf")
    assert loaded.manager_url == "https://db-manager.example.org:50443/"


def test_an_ipv6_manager_is_bracketed(tmp_path: Path) -> None:
    loaded = config.load(write(tmp_path, "MANAGER_HOST = ::1\nMANAGER_PORT = 6000\n"))
    assert loaded.manager_url == "http://[::1]:6000/"


def test_the_missing_default_file_means_the_defaults(monkeypatch: pytest.MonkeyPatch,
                                                     tmp_path: Path) -> None:
    monkeypatch.setattr(config, "DEFAULT_FILE", tmp_path / "absent.conf")
    assert config.load() == GuiConfig()
    assert GuiConfig().session_idle_hours == 8
    assert config.load().manager_url == "http://localhost:50000/"


@pytest.mark.parametrize(("text", "where", "detail"), [
    ("MANAGER_PROT = 5\n", "MANAGER_PROT", "unknown key"),
    ("MANAGER_PORT = 0\n", "MANAGER_PORT", "must be a port number (1-65535), not '0'"),
    ("MANAGER_PORT = fifty\n", "MANAGER_PORT", "must be a port number"),
    ("MANAGER_HTTPS = maybe\n", "MANAGER_HTTPS", "must be true or false, not 'maybe'"),
    ("MANAGER_HOST = 'a b'\n", "MANAGER_HOST", "is not a host name or address"),
    ("MANAGER_HOST = \n", "MANAGER_HOST", "is not a host name or address"),
    ("MANAGER_HOST = 'localhost\n", "MANAGER_HOST", "the quote is not closed"),
    ("MANAGER_HOST = 'a' b\n", "MANAGER_HOST", "unexpected text after the quoted value"),
    ("MANAGER_HOST = a\nMANAGER_HOST = b\n", "MANAGER_HOST", "given twice"),
    ("CERT_FILE = c.crt\n", "CERT_FILE, KEY_FILE", "give both or neither"),
    ("GUI_KEY = k.key\n", "GUI_CERT, GUI_KEY", "give both or neither"),
    ("[manager]\n", "line 1", "unknown section [manager]"),
    ("SESSION_IDLE_HOURS = 0\n", "SESSION_IDLE_HOURS",
     "must be a number of hours, more than 0 and at most 720, not '0'"),
    ("SESSION_IDLE_HOURS = 721\n", "SESSION_IDLE_HOURS", "at most 720"),
    ("SESSION_IDLE_HOURS = -1\n", "SESSION_IDLE_HOURS", "must be a number of hours"),
    ("SESSION_IDLE_HOURS = inf\n", "SESSION_IDLE_HOURS", "must be a number of hours"),
    ("SESSION_IDLE_HOURS = 1e3\n", "SESSION_IDLE_HOURS", "must be a number of hours"),
    ("SESSION_IDLE_HOURS = \u00b2\n", "SESSION_IDLE_HOURS", "must be a number of hours"),
    ("# fine\nMANAGER_HOST\n", "line 2", "expected KEY = value"),
])
def test_a_wrong_line_names_the_file_and_the_key(tmp_path: Path, text: str, where: str,
                                                 detail: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as raised:
        config.load(path)
    message = str(raised.value)
    assert message.startswith(f"Configuration error: {path}")
    assert where in message and detail in message


def test_a_missing_given_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file"):
        config.load(tmp_path / "absent.conf")


def test_the_command_exits_2_on_a_wrong_file(tmp_path: Path) -> None:
    path = write(tmp_path, "MANAGER_PORT = 99999\n")
    result = CliRunner().invoke(main, ["gui", "-c", str(path)])
    assert result.exit_code == 2
    assert f"conpaassql gui: Configuration error: {path}: MANAGER_PORT" in result.output


def test_beyond_loopback_it_wants_tls_or_insecure_http(tmp_path: Path) -> None:
    path = write(tmp_path, "MANAGER_HOST = 'localhost'\n")
    result = CliRunner().invoke(main, ["gui", "-c", str(path), "-b", "0.0.0.0"])
    assert result.exit_code == 2
    assert "GUI_CERT, GUI_KEY" in result.output and "--insecure-http" in result.output
    missing = write(tmp_path, "GUI_CERT = gui.crt\nGUI_KEY = gui.key\n")
    result = CliRunner().invoke(main, ["gui", "-c", str(missing), "-b", "0.0.0.0"])
    assert result.exit_code == 2 and "no such file" in result.output


def test_the_example_file_loads() -> None:
    example = Path(__file__).resolve().parents[2] / "etc" / "manager-gui.conf"
    assert config.load(example).manager_url == "http://localhost:50000/"
