"""The defaults every server gets (``conpaassql.mysql.config``), and the agent's sizing."""

from __future__ import annotations

from pathlib import Path

import pytest

from conpaassql.agent.settings import AgentSettings
from conpaassql.context import NodeContext
from conpaassql.mysql.config import (
    APPLICATION_DEFAULTS,
    GIB,
    ServerSettings,
    memory_defaults,
    node_memory,
    render_my_cnf,
)
from conpaassql.mysql.paths import ServerPaths

PATHS = ServerPaths(Path("/tmp/cq-d/n1/mysql"))
TLS = (Path("/tmp/ca.crt"), Path("/tmp/node.crt"), Path("/tmp/node.key"))


def server_options(settings: ServerSettings) -> list[str]:
    text = render_my_cnf(PATHS, settings)
    return text[text.index("[mariadbd]"):text.index("[client]")].splitlines()[1:]


@pytest.mark.parametrize(("memory", "pool", "connections"), [
    (512 << 20, "128M", "151"),    # below the floor: MariaDB's own pool
    (1 * GIB, "128M", "151"),      # 3/4 would leave the OS 256 MiB: the floor
    (2 * GIB, "1024M", "170"),     # 1 GiB kept for the rest
    (4 * GIB, "3072M", "341"),     # from here on 3/4, RDS's rule
    (16 * GIB, "12288M", "1365"),
    (64 * GIB, "49152M", "5000"),  # connections capped
    (3 * GIB + (100 << 20), "2048M", "264"),  # in 128 MiB steps
])
def test_memory_sizing(memory: int, pool: str, connections: str) -> None:
    assert memory_defaults(memory) == {"innodb-buffer-pool-size": pool,
                                       "max-connections": connections}


def test_defaults_are_rendered_once_and_options_win() -> None:
    lines = server_options(ServerSettings(bind_address="10.0.0.5", memory=4 * GIB, tls=TLS))
    for name, value in APPLICATION_DEFAULTS.items():
        assert f"{name}={value}" in lines
    assert "character-set-server=utf8mb4" in lines
    assert "collation-server=utf8mb4_unicode_520_ci" in lines
    assert "innodb-buffer-pool-size=3072M" in lines and "max-connections=341" in lines
    assert "require-secure-transport=ON" in lines

    chosen = {"Max_Connections": "500", "collation_server": "utf8mb4_general_ci",
              "require_secure_transport": "OFF", "slow_query_log": "OFF"}
    lines = server_options(ServerSettings(bind_address="10.0.0.5", memory=4 * GIB, tls=TLS,
                                          options=chosen))
    names = [line.partition("=")[0] for line in lines]
    assert len(names) == len(set(names)), lines
    for expected in ("max-connections=500", "collation-server=utf8mb4_general_ci",
                     "require-secure-transport=OFF", "slow-query-log=OFF",
                     "innodb-buffer-pool-size=3072M", "ssl-ca=/tmp/ca.crt"):
        assert expected in lines, expected


def test_without_memory_or_tls_mariadb_keeps_its_sizes() -> None:
    names = [line.partition("=")[0] for line in server_options(
        ServerSettings(bind_address="127.0.0.5"))]
    assert "character-set-server" in names
    for absent in ("innodb-buffer-pool-size", "max-connections", "require-secure-transport"):
        assert absent not in names


def _agent(tmp_path: Path, ip: str) -> AgentSettings:
    context = NodeContext(manager_url="https://10.0.0.1:50000/", service_id="s1", node_id=2,
                          secret="sec", root_password="pw", ip=ip,
                          data_dir=str(tmp_path / ip))
    path = tmp_path / f"context-{ip}"
    path.write_text(context.render(), encoding="utf-8")
    return AgentSettings.load(path, None)


def test_the_local_cloud_keeps_small_sizes_a_vm_follows_its_memory(tmp_path: Path) -> None:
    local = _agent(tmp_path, "127.0.5.10")
    assert local.shares_machine and local.server_settings().memory is None
    vm = _agent(tmp_path, "10.1.0.20")
    assert not vm.shares_machine
    assert vm.server_settings().memory == node_memory() > 0
