"""Everything about running one MariaDB server: files, options, datadir, process, SQL, status.

The modules are small and independent of the agent: ``paths`` (where files go),
``binaries`` (finding the programs), ``config`` (``my.cnf``/``client.cnf``),
``datadir`` (first-boot initialisation, templates), ``connection`` (PyMySQL
off the event loop), ``process`` (start/adopt/stop mariadbd) and ``status``
(counters and rates). No password ever appears on a command line or in a log.
"""

from conpaassql.mysql.binaries import find_binary
from conpaassql.mysql.config import (
    PROTECTED_OPTIONS,
    ServerSettings,
    is_protected,
    normalise_option,
    render_client_cnf,
    render_my_cnf,
    validate_option_value,
)
from conpaassql.mysql.connection import ConnectInfo, execute, ping
from conpaassql.mysql.datadir import (
    initialise_datadir,
    is_initialised,
    mysql_native_password_hash,
    prepare_template,
)
from conpaassql.mysql.paths import ServerPaths
from conpaassql.mysql.process import MariaDBProcess
from conpaassql.mysql.status import STATUS_KEYS, MetricsSampler, read_status, read_variables

__all__ = [
    "PROTECTED_OPTIONS",
    "STATUS_KEYS",
    "ConnectInfo",
    "MariaDBProcess",
    "MetricsSampler",
    "ServerPaths",
    "ServerSettings",
    "execute",
    "find_binary",
    "initialise_datadir",
    "is_initialised",
    "is_protected",
    "mysql_native_password_hash",
    "normalise_option",
    "ping",
    "prepare_template",
    "read_status",
    "read_variables",
    "render_client_cnf",
    "render_my_cnf",
    "validate_option_value",
]
