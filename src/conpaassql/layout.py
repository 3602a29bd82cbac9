"""The layout of a node's directory (its context's ``data_dir``), declared once.

The agent keeps its files there and the server's under ``mysql/``
(``mysql.paths.ServerPaths``); the local cloud reads the pid files to stop a
node's processes; tests and benchmarks find the server's socket there. Paths
named ``*_FILE`` are relative to the node's directory.
"""

from __future__ import annotations

AGENT_PID_FILE = "agent.pid"
AGENT_LOG_FILE = "agent.log"
SERVER_DIR = "mysql"
TLS_DIR = "tls"

# Inside the server's directory (``ServerPaths.base``).
SERVER_RUN_DIR = "run"
SERVER_PID_NAME = "mysqld.pid"
SERVER_SOCKET_NAME = "mysqld.sock"
OVERRIDES_NAME = "overrides.json"
SERVICE_OPTIONS_NAME = "service-options.json"  # the service's server configuration

MYSQLD_PID_FILE = f"{SERVER_DIR}/{SERVER_RUN_DIR}/{SERVER_PID_NAME}"
MYSQLD_SOCKET_FILE = f"{SERVER_DIR}/{SERVER_RUN_DIR}/{SERVER_SOCKET_NAME}"

#: ``sun_path`` is 108 bytes on Linux, including the terminating NUL.
MAX_SOCKET_PATH = 107
