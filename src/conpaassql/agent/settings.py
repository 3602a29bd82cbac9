"""The agent's settings: from its context (as a VM gets it) and an INI file.

The context names the manager, the node and its secrets; the optional INI file
(seed format: ``[MySQL_root_connection]``, ``[MySQL_configuration]``, ``[agent]``)
may set where data lives and which ports to use.
"""

from __future__ import annotations

import json
import os
import socket
from dataclasses import dataclass, field
from pathlib import Path

from conpaassql.config import IniFile
from conpaassql.context import NodeContext
from conpaassql.errors import ConfigError
from conpaassql.files import write_private
from conpaassql.layout import AGENT_LOG_FILE, AGENT_PID_FILE, OVERRIDES_NAME, SERVER_DIR, TLS_DIR
from conpaassql.mysql.config import ServerSettings
from conpaassql.mysql.connection import ConnectInfo
from conpaassql.mysql.paths import ServerPaths
from conpaassql.rpc.tls import TlsFiles

DEFAULT_DATA_DIR = "/var/lib/conpaassql"
#: Beside the node's certificate when one was installed since boot (``install_certificate``):
#: the context's older one is not written over it.
INSTALLED_MARK = "node.installed"
#: The health port is the agent's port plus this, unless the context or INI names one.
HEALTH_PORT_OFFSET = 8
#: Seconds behind its master a slave may be for ``GET /replica`` without ``max_lag``.
DEFAULT_HEALTH_MAX_LAG = 30.0


@dataclass(frozen=True)
class AgentSettings:
    context: NodeContext
    data_dir: Path
    bind: str
    agent_port: int
    mysql_port: int
    template_dir: Path | None
    mysql_options: dict[str, str] = field(default_factory=dict)
    health_port: int = 60000 + HEALTH_PORT_OFFSET  # plain HTTP: the node's role only
    health_max_lag: float = DEFAULT_HEALTH_MAX_LAG

    @property
    def node_id(self) -> int:
        return self.context.node_id

    @property
    def paths(self) -> ServerPaths:
        return ServerPaths(self.data_dir / SERVER_DIR)

    @property
    def pid_file(self) -> Path:
        return self.data_dir / AGENT_PID_FILE

    @property
    def log_file(self) -> Path:
        return self.data_dir / AGENT_LOG_FILE

    @property
    def tls_files(self) -> TlsFiles:
        """The node's certificate, key (mode 0600) and the service CA, from its context."""
        directory = self.data_dir / TLS_DIR
        return TlsFiles(cert=directory / "node.crt", key=directory / "node.key",
                        ca=directory / "ca.crt")

    def write_tls_files(self) -> TlsFiles:
        """Write the TLS material of the context where the servers and clients read it."""
        context, files = self.context, self.tls_files
        if not (context.ca_cert and context.tls_cert and context.tls_key):
            raise ConfigError("context", detail="no TLS certificate: the agent serves only "
                              "TLS, with the certificate its manager issued")
        files.cert.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(files.cert.parent, 0o700)
        written = [(files.ca, context.ca_cert)]
        if not (files.cert.parent / INSTALLED_MARK).is_file():  # not one issued since
            written += [(files.cert, context.tls_cert), (files.key, context.tls_key)]
        for path, text in written:
            write_private(path, text)
        return files

    @property
    def overrides_file(self) -> Path:
        return self.paths.base / OVERRIDES_NAME

    def connect_info(self) -> ConnectInfo:
        return ConnectInfo(socket=self.paths.socket, user="root",
                           password=self.context.root_password)

    def server_settings(self) -> ServerSettings:
        options = {**self.mysql_options, **self.overrides()}
        return ServerSettings(
            bind_address=self.bind,
            port=self.mysql_port,
            server_id=self.node_id,
            run_as="root" if os.geteuid() == 0 else None,
            options=options,
            tls=(files.ca, files.cert, files.key) if (files := self.tls_files).key.is_file()
            else None,
        )

    def overrides(self) -> dict[str, str]:
        """Options set through ``set_server_configuration``, kept across restarts."""
        try:
            data = json.loads(self.overrides_file.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except ValueError:
            raise ConfigError(str(self.overrides_file), detail="not valid JSON") from None
        return {str(k): str(v) for k, v in data.items()}

    def save_overrides(self, options: dict[str, str]) -> None:
        temporary = self.overrides_file.with_suffix(".tmp")
        temporary.write_text(json.dumps(options, indent=1), encoding="utf-8")
        os.replace(temporary, self.overrides_file)

    @classmethod
    def load(cls, context_file: Path | None, config_file: Path | None) -> AgentSettings:
        ini = IniFile.read(config_file) if config_file else IniFile.from_text("")
        agent = ini.section("agent")
        mysql = ini.section("MySQL_configuration")
        path = context_file or _path_or_none(agent.get("context_file"))
        if path is None:
            raise ConfigError("agent", detail="no context: give --context FILE or "
                              "[agent] context_file")
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(str(path), detail=exc.strerror or str(exc)) from None
        context = NodeContext.parse(text, str(path))
        data_dir = Path(agent.get("data_dir") or context.data_dir or DEFAULT_DATA_DIR)
        template = agent.get("template_dir") or context.template_dir
        agent_port = agent.integer("port", context.agent_port, 1, 65535)
        return cls(
            context=context,
            data_dir=data_dir,
            bind=agent.get("bind") or context.ip or _own_address(),
            agent_port=agent_port,
            health_port=agent.integer("health_port", context.health_port
                                      or default_health_port(agent_port), 1, 65535),
            health_max_lag=agent.number("health_max_lag", DEFAULT_HEALTH_MAX_LAG, 0.0),
            mysql_port=mysql.integer("port", context.mysql_port, 1, 65535),
            template_dir=Path(template) if template else None,
            mysql_options=dict(context.mysql_options),
        )


def default_health_port(agent_port: int) -> int:
    port = agent_port + HEALTH_PORT_OFFSET
    return port if port <= 65535 else agent_port - HEALTH_PORT_OFFSET


def _path_or_none(text: str | None) -> Path | None:
    return Path(text) if text else None


def _own_address() -> str:
    """This machine's address by its host name (a VM with no IP in its context)."""
    try:
        return socket.gethostbyname(socket.gethostname())
    except OSError:
        return "0.0.0.0"
