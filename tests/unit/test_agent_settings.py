"""The agent's settings: its context first, the seed-format INI file on top."""

from __future__ import annotations

from pathlib import Path

import pytest

from conpaassql.agent.settings import AgentSettings
from conpaassql.context import NodeContext
from conpaassql.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]


def _context(tmp_path: Path) -> Path:
    context = NodeContext(manager_url="http://127.0.0.1:50000/", service_id="s1", node_id=4,
                          secret="sec", root_password="pw", ip="127.0.0.14",
                          data_dir=str(tmp_path / "node"),
                          mysql_options={"max_connections": "50"})
    path = tmp_path / "context"
    path.write_text(context.render(), encoding="utf-8")
    return path


def test_settings_come_from_the_context(tmp_path: Path) -> None:
    settings = AgentSettings.load(_context(tmp_path), None)
    assert settings.node_id == 4
    assert settings.bind == "127.0.0.14"
    assert (settings.agent_port, settings.mysql_port) == (60000, 3306)
    assert settings.paths.base == tmp_path / "node" / "mysql"
    server = settings.server_settings()
    assert server.server_id == 4 and server.bind_address == "127.0.0.14"
    assert dict(server.options) == {"max-connections": "50"}


def test_ini_file_overrides_and_overrides_file_wins(tmp_path: Path) -> None:
    ini = tmp_path / "agent.cnf"
    ini.write_text(f"[agent]\ncontext_file = {_context(tmp_path)}\nport = 61000\n"
                   "[MySQL_configuration]\nport = 3307\n", encoding="utf-8")
    settings = AgentSettings.load(None, ini)
    assert (settings.agent_port, settings.mysql_port) == (61000, 3307)
    settings.overrides_file.parent.mkdir(parents=True)
    settings.save_overrides({"max_connections": "77"})
    assert dict(settings.server_settings().options) == {"max-connections": "77"}


def test_shipped_example_is_read(tmp_path: Path) -> None:
    example = (REPO / "etc" / "agent.cnf").read_text(encoding="utf-8")
    assert AgentSettings.load(_context(tmp_path), REPO / "etc" / "agent.cnf").agent_port == 60000
    # Its settings are live: changing them in a copy changes what the agent uses.
    edited = tmp_path / "agent.cnf"
    edited.write_text(example.replace("port = 60000", "port = 60001")
                      .replace("port = 3306", "port = 3307"), encoding="utf-8")
    settings = AgentSettings.load(_context(tmp_path), edited)
    assert (settings.agent_port, settings.mysql_port) == (60001, 3307)


def test_no_context_is_a_clear_error() -> None:
    with pytest.raises(ConfigError, match="no context"):
        AgentSettings.load(None, None)
