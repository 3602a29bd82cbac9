"""The commands of ``conpaassql-client`` and the manager calls they make.

``COMMANDS`` is the table: each command names a manager method, the verb it is
sent with and how its command-line values become the call's params. The
conversions live here, free of click, so that a bad argument is refused (as an
``ArgumentError``) before anything is sent. ``generic_call`` builds the call of
the ``call`` command, for methods the table does not know.

Three kinds of calls: ordinary ones (GET or POST, a JSON result), uploads (the
params and one file as a multipart form, ``UploadFile``) and downloads (a result
streamed as bytes, written to ``RpcCall.output`` or standard output). A command
with a ``secret`` sends a password; when the command line does not give it, the
call says so (``RpcCall.secret_missing``) and the CLI obtains it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from conpaassql.client.arguments import (
    DEFAULT_LOG_LINES,
    LOG_KINDS,
    Arg,
    ArgumentError,
    Command,
    Opt,
    Values,
    parse_choice,
    parse_count,
    parse_list,
    parse_name,
    parse_node_id,
    parse_node_target,
    parse_positive,
)


def _no_params(values: Values) -> dict[str, Any]:
    return {}


def _with_cloud(params: dict[str, Any], values: Values) -> dict[str, Any]:
    cloud = values.get("cloud")
    if cloud is not None:
        if not cloud.strip():
            raise ArgumentError("--cloud must name a cloud")
        params["cloud"] = cloud
    return params


def _add_function(values: Values) -> dict[str, Any]:
    function = str(values["function"]).strip()
    if not function:
        raise ArgumentError("FUNCTION must not be empty (the seed's form is: add_node agent)")
    return _with_cloud({"function": function}, values)


def _add_count(values: Values) -> dict[str, Any]:
    count = values.get("count")
    return _with_cloud({"count": parse_count(count) if count is not None else 1}, values)


def _remove(values: Values) -> dict[str, Any]:
    node_id = values.get("node_id")
    count = values.get("count")
    if node_id is not None and count is not None:
        raise ArgumentError("give either a node ID or --count N, not both")
    if node_id is not None:
        return {"serviceNodeId": parse_node_id(node_id)}
    if count is not None:
        return {"count": parse_count(count)}
    raise ArgumentError("give the node ID to remove, or --count N")


def _node(values: Values) -> dict[str, Any]:
    return {"serviceNodeId": parse_node_id(str(values["node_id"]))}


def _replica(values: Values) -> dict[str, Any]:
    return {"id": parse_node_id(str(values["node_id"]))}


def _history(values: Values) -> dict[str, Any]:
    params: dict[str, Any] = {}
    node = values.get("node")
    if node is not None:
        params["serviceNodeId"] = parse_node_id(node)
    limit = values.get("limit")
    if limit is not None:
        params["limit"] = parse_positive(limit, "--limit")
    return params


def _optional(params: dict[str, Any], values: Values, names: Mapping[str, str]) -> dict[str, Any]:
    """``params`` with each given option ``name`` (not empty) sent as ``names[name]``."""
    for name, param in names.items():
        value = values.get(name)
        if value is not None:
            params[param] = parse_name(value, f"--{name.replace('_', '-')}")
    return params


def _optional_node(values: Values) -> dict[str, Any]:
    node_id = values.get("node_id")
    return {} if node_id is None else {"serviceNodeId": parse_node_id(node_id)}


def _configure_user(values: Values) -> dict[str, Any]:
    params: dict[str, Any] = {
        "serviceNodeId": parse_node_target(str(values["node_id"])),
        "username": parse_name(str(values["username"]), "USER"),
    }
    _optional(params, values, {"host": "host", "database": "database"})
    privileges = values.get("privileges")
    if privileges is not None:
        params["privileges"] = parse_list(privileges, "--privileges")
    return params


def _delete_user(values: Values) -> dict[str, Any]:
    params: dict[str, Any] = {
        "serviceNodeId": parse_node_target(str(values["node_id"])),
        "username": parse_name(str(values["username"]), "USER"),
    }
    return _optional(params, values, {"host": "host"})


def _set_password(values: Values) -> dict[str, Any]:
    params: dict[str, Any] = {"user": parse_name(str(values["username"]), "USER")}
    return _optional(params, values, {"host": "host"})


def _create_database(values: Values) -> dict[str, Any]:
    params: dict[str, Any] = {"database": parse_name(str(values["database"]), "NAME")}
    return _optional(params, values,
                     {"character_set": "character_set", "collation": "collation"})


def _drop_database(values: Values) -> dict[str, Any]:
    return {"database": parse_name(str(values["database"]), "NAME")}


def _agent_log(values: Values) -> dict[str, Any]:
    log = values.get("log")
    lines = values.get("lines")
    return {
        "serviceNodeId": parse_node_id(str(values["node_id"])),
        "log": LOG_KINDS[0] if log is None else parse_choice(log, LOG_KINDS, "--log"),
        "lines": DEFAULT_LOG_LINES if lines is None else parse_positive(lines, "--lines"),
    }


def _send_mysqldump(values: Values) -> dict[str, Any]:
    params: dict[str, Any] = {"serviceNodeId": parse_node_target(str(values["node_id"]))}
    return _optional(params, values, {"database": "database"})


def _load_dump(values: Values) -> dict[str, Any]:
    return _optional({}, values, {"database": "database"})


def _sqldump(values: Values) -> dict[str, Any]:
    params: dict[str, Any] = {}
    database = values.get("database")
    if database is not None:
        params["database"] = parse_name(database, "DB")
    node = values.get("node")
    if node is not None:
        params["serviceNodeId"] = parse_node_id(node)
    return params


def _option_pair(text: str) -> tuple[str, str]:
    name, equals, value = text.partition("=")
    if not equals or not name.strip():
        raise ArgumentError(f"options are given as NAME=VALUE, not {text!r}")
    return name.strip(), value


def _set_configuration(values: Values) -> dict[str, Any]:
    words = values.get("options") or ()
    if not words:
        raise ArgumentError("give at least one NAME=VALUE")
    options = dict(_option_pair(word) for word in words)
    params: dict[str, Any] = {"options": options}
    if values.get("next_restart"):
        params["apply"] = "next-restart"
    return params


def _reset_configuration(values: Values) -> dict[str, Any]:
    names = [parse_name(word, "NAME") for word in values.get("names") or ()]
    if not names:
        raise ArgumentError("give at least one option NAME")
    params: dict[str, Any] = {"options": names}
    if values.get("next_restart"):
        params["apply"] = "next-restart"
    return params


BACKUP_KINDS = ("full", "incremental")


def _backup(values: Values) -> dict[str, Any]:
    kind = values.get("kind")
    return {} if kind is None else {"kind": parse_choice(kind, BACKUP_KINDS, "--kind")}


def _delete_backup(values: Values) -> dict[str, Any]:
    params: dict[str, Any] = {"id": parse_name(values["backup_id"], "ID")}
    if values.get("with_incrementals"):
        params["with_incrementals"] = True
    return params


def _verify_backup(values: Values) -> dict[str, Any]:
    return {"id": parse_name(values["backup_id"], "ID")}


def _restore_node(values: Values) -> dict[str, Any]:
    backup, when = values.get("backup"), values.get("time")
    if (backup is None) == (when is None):
        raise ArgumentError("give --backup ID (list_backups shows them) or --time TIME")
    params: dict[str, Any] = {}
    return _optional(params, values, {"backup": "backup", "time": "time", "cloud": "cloud"})


_CLOUD = Opt("cloud", "NAME", "Create the node(s) in this cloud (as the manager names it).")
_REMOVE_ARGS = (Arg("node_id", "[ID]", required=False),)
_REMOVE_OPTS = (Opt("count", "N", "Remove N nodes of the manager's choosing instead."),)
_REMOVE_DETAILS = "Remove the node ID (sent as serviceNodeId), or N nodes with --count N."

_HOST = Opt("host", "HOST", "The account's host part (default: '%', any host).")
_DATABASE = Opt("database", "DB", "Load into this database (default: as the dump says).")
_PASSWORD_DETAILS = (
    "Without PASSWORD, it is read from $CONPAASSQL_PASSWORD, else asked for (twice, "
    "hidden) when standard input is a terminal. A PASSWORD on the command line is "
    "visible to other local users; prefer the variable or the prompt.")
_UPLOAD_DETAILS = (
    "FILE is plain SQL or gzip-compressed SQL (sent as it is), or - for standard "
    "input; it is streamed, never read whole. A progress bar is shown on a terminal.")
_NODE_ARG = (Arg("node_id", "[ID]", required=False),)
_TARGET_ARG = Arg("node_id", "NODE")
_USER_ARG = Arg("username", "USER")
_PASSWORD_ARG = Arg("password", "[PASSWORD]", required=False)
_FILE_ARG = Arg("file", "FILE")
_NEXT_RESTART = Opt("next_restart", "", "Options that need a restart wait for the next "
                    "one (restart_nodes) instead of a rolling restart now.", flag=True)
_RESTART_DETAILS = (
    "Options that SET GLOBAL can change apply at once, with no restart; the others by a "
    "rolling restart: the slaves one at a time, then a switchover to a slave, then the "
    "old master (writes are blocked for the switchover only). Every node checks the "
    "options first: a wrong one changes nothing anywhere.")

COMMANDS: tuple[Command, ...] = (
    Command("list_nodes", "list_nodes", "GET", "List the ids of the service's nodes.",
            _no_params),
    Command("add_node", "add_nodes", "POST",
            "Add a node: add_node agent (seed form).",
            _add_function, (Arg("function", "FUNCTION"),), (_CLOUD,),
            details="Sends add_nodes with {\"function\": FUNCTION}; the seed's form is "
                    "'add_node agent'."),
    Command("add_nodes", "add_nodes", "POST", "Add N agent nodes (default 1).",
            _add_count, (Arg("count", "[N]", required=False),), (_CLOUD,),
            details="Sends add_nodes with {\"count\": N}."),
    Command("remove_nodes", "remove_nodes", "POST", "Remove node ID, or --count N nodes.",
            _remove, _REMOVE_ARGS, _REMOVE_OPTS, details=_REMOVE_DETAILS),
    Command("delete_nodes", "remove_nodes", "POST",
            "Remove node ID (seed form of remove_nodes).",
            _remove, _REMOVE_ARGS, _REMOVE_OPTS, details=_REMOVE_DETAILS),
    Command("get_node_info", "get_node_info", "GET", "Show the details of node ID.",
            _node, (Arg("node_id", "ID"),)),
    Command("get_service_info", "get_service_info", "GET",
            "Show the service's state (and its transitions).", _no_params),
    Command("get_service_performance", "get_service_performance", "GET",
            "Show the service's performance figures.", _no_params),
    Command("get_service_history", "get_service_history", "GET",
            "Show the service's transitions and events.",
            _history, (),
            (Opt("node", "ID", "Only those of node ID."),
             Opt("limit", "N", "The last N entries (default: 100).")),
            details="Oldest first; with --table, one row per entry."),
    Command("set_up_replica_master", "set_up_replica_master", "POST",
            "Switch the master over to slave ID.",
            _replica, (Arg("node_id", "ID"),),
            details="The master goes read-only, node ID applies everything it received, "
                    "then takes the writes; the others follow it. Writes are blocked "
                    "for the switchover only (the reply says how long)."),
    Command("set_up_replica_slave", "set_up_replica_slave", "POST",
            "Copy the master into node ID anew.",
            _replica, (Arg("node_id", "ID"),),
            details="Node ID's data is replaced by a copy of the master's; it then "
                    "replicates from the master."),
    Command("getLog", "getLog", "GET", "Print the manager's log.", _no_params),
    Command("shutdown", "shutdown", "POST", "Shut the service down.", _no_params),
    Command("configure_user", "configure_user", "POST",
            "Create or update a MySQL user on NODE or all.",
            _configure_user, (_TARGET_ARG, _USER_ARG, _PASSWORD_ARG),
            (_HOST, Opt("database", "DB", "Grant on this database only."),
             Opt("privileges", "LIST", "Comma-separated privileges (SELECT,INSERT,...).")),
            details="NODE is a node id or 'all'. " + _PASSWORD_DETAILS,
            secret="password"),
    Command("delete_user", "delete_user", "POST", "Delete a MySQL user on NODE or all.",
            _delete_user, (_TARGET_ARG, _USER_ARG), (_HOST,),
            details="NODE is a node id or 'all'."),
    Command("get_users", "get_users", "GET", "List the MySQL users (of node ID).",
            _optional_node, _NODE_ARG),
    Command("set_password", "set_password", "POST", "Set the password of a MySQL user.",
            _set_password, (_USER_ARG, _PASSWORD_ARG), (_HOST,),
            details=_PASSWORD_DETAILS, secret="password"),
    Command("get_password", "get_password", "GET", "Show the MySQL root password.",
            _no_params),
    Command("create_database", "create_database", "POST", "Create database NAME.",
            _create_database, (Arg("database", "NAME"),),
            (Opt("character_set", "CS", "Its character set (utf8mb4, ...)."),
             Opt("collation", "C", "Its collation (utf8mb4_unicode_ci, ...)."))),
    Command("drop_database", "drop_database", "POST", "Drop database NAME and its data.",
            _drop_database, (Arg("database", "NAME"),)),
    Command("list_databases", "list_databases", "GET", "List the databases (of node ID).",
            _optional_node, _NODE_ARG),
    Command("get_agent_log", "get_agent_log", "GET", "Print a log of node ID.",
            _agent_log, (Arg("node_id", "ID"),),
            (Opt("log", "agent|error|slow", "Which log (default: agent)."),
             Opt("lines", "N", f"The last N lines (default: {DEFAULT_LOG_LINES}).")),
            details="The agent's own log, or the error or slow query log of its mysqld."),
    Command("send_mysqldump", "send_mysqldump", "UPLOAD", "Load a dump FILE into NODE or all.",
            _send_mysqldump, (_TARGET_ARG, _FILE_ARG), (_DATABASE,),
            details="NODE is a node id or 'all'. " + _UPLOAD_DETAILS, upload="mysqldump"),
    Command("load_dump", "load_dump", "UPLOAD", "Load a dump FILE into the service.",
            _load_dump, (_FILE_ARG,), (_DATABASE,),
            details=_UPLOAD_DETAILS, upload="mysqldump_file"),
    Command("sqldump", "sqldump", "GET", "Dump database DB (default: all) as SQL.",
            _sqldump, (Arg("database", "[DB]", required=False),),
            (Opt("node", "ID", "Dump from this node (default: the manager's choice)."),
             Opt("output", "FILE", "Write to FILE (complete or not at all), not stdout.",
                 short="o")),
            details="The dump is written as it comes, to standard output unless -o FILE "
                    "is given; FILE is written under a temporary name (mode 0600) and "
                    "renamed when the dump is complete. A progress bar is shown on a "
                    "terminal.",
            download=True),
    Command("set_server_configuration", "set_server_configuration", "POST",
            "Set server options NAME=VALUE...",
            _set_configuration, (Arg("options", "NAME=VALUE...", many=True),),
            (_NEXT_RESTART,),
            details="For example: set_server_configuration max_connections=500 "
                    "long_query_time=0.5. " + _RESTART_DETAILS),
    Command("get_server_configuration", "get_server_configuration", "GET",
            "Show the server options per node.", _no_params,
            details="With --table, one row per node and option: the value in effect, "
                    "and whether a restart is pending."),
    Command("reset_server_configuration", "reset_server_configuration", "POST",
            "Drop server options NAME...",
            _reset_configuration, (Arg("names", "NAME...", many=True),), (_NEXT_RESTART,),
            details=_RESTART_DETAILS),
    Command("backup", "backup", "POST", "Start a backup of the service (--kind).",
            _backup, (), (Opt("kind", "KIND", "full (the default) or incremental (the "
                              "pages changed since the last backup)."),
                          Opt("wait", "", "Wait until the backup is done or failed.",
                              flag=True)),
            details="Taken by a slave's agent (the master's when there is no slave) and "
                    "streamed into the backup store; the answer comes at once with the "
                    "backup's id, list_backups follows it. With --wait, the client "
                    "follows it (a spinner on a terminal, a line per state on stderr "
                    "otherwise) and prints its list_backups entry; exit 1 if it failed."),
    Command("list_backups", "list_backups", "GET", "List the backups and the restorable "
            "window.", _no_params,
            details="With --table, one row per backup: kind, state, times, GTID position, "
                    "bytes, node, parent and its last verification."),
    Command("verify_backup", "verify_backup", "POST",
            "Restore backup ID aside and check its tables.",
            _verify_backup, (Arg("backup_id", "ID"),),
            details="A slave's agent (the master's when there is no slave) fetches the "
                    "backup (and the incrementals before it) into a scratch directory, "
                    "prepares it, starts a server of its own on it and runs CHECK TABLE "
                    "on every user table; the answer comes at once, list_backups shows the "
                    "result (verified)."),
    Command("delete_backup", "delete_backup", "POST", "Delete backup ID from the store.",
            _delete_backup, (Arg("backup_id", "ID"),),
            (Opt("with_incrementals", "", "Delete the incrementals built on it too.",
                 flag=True),),
            details="A backup an incremental still needs is refused unless "
                    "--with-incrementals deletes them with it."),
    Command("restore_node", "restore_node", "POST",
            "Add a node holding a backup's data, or TIME's.",
            _restore_node, (), (Opt("backup", "ID", "The backup to restore (its incrementals' "
                                    "full backup first)."),
                                Opt("time", "TIME", "The second to restore: ISO 8601 "
                                    "('2026-12-07 10:00:00' is UTC; or with a zone, "
                                    "'2026-12-07T10:00:00+01:00') or epoch seconds."),
                                _CLOUD,
                                Opt("wait", "", "Wait until the node holds the data "
                                    "(RUNNING, restored) or failed.", flag=True)),
            details="With --time, the latest backup at or before TIME is restored, then the "
                    "archived binlogs replayed up to that second; list_backups shows the "
                    "restorable window. The new node (role restored) stands apart from "
                    "replication, read-only: read or dump what was lost, then remove it. "
                    "With --wait, the client follows the restore (a spinner on a "
                    "terminal, a line per state on stderr otherwise) and prints the "
                    "node's get_node_info record; exit 1 if it failed."),
    Command("restart_nodes", "restart_nodes", "POST",
            "Restart the nodes (or node ID), rolling.",
            _optional_node, _NODE_ARG,
            details="Slaves one at a time, each back and replicating before the next, "
                    "then a switchover and the old master. Progress shows in "
                    "get_service_history and get_server_configuration."),
)
"""Every fixed command, in the order ``--help`` lists them."""

BY_NAME: dict[str, Command] = {command.name: command for command in COMMANDS}
