"""``conpaassql manager|agent|gui|router``: the daemons' command line."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from conpaassql.errors import ConfigError

if TYPE_CHECKING:
    from conpaassql.manager.tokens import TokenStore


@click.group()
def main() -> None:
    """conpaassql: a MySQL service for clouds."""


@main.command()
@click.option("-c", "--config", "config_file", type=click.Path(dir_okay=False),
              help="Manager configuration (INI, seed format).")
@click.option("-b", "--bind", default="127.0.0.1", show_default=True,
              help="Address to listen on.")
@click.option("-p", "--port", default=50000, show_default=True, type=click.IntRange(1, 65535))
@click.option("--state-dir", default="var", show_default=True, type=click.Path(file_okay=False),
              help="Where the manager keeps its state, secrets, logs and local nodes.")
def manager(config_file: str | None, bind: str, port: int, state_dir: str) -> None:
    """Run the manager of one service (foreground)."""
    from conpaassql.config import ManagerConfig
    from conpaassql.manager.app import serve

    try:
        config = ManagerConfig.load(config_file)
        asyncio.run(serve(config, Path(state_dir).absolute(), bind, port))
    except ConfigError as exc:
        click.echo(f"conpaassql manager: {exc}", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        pass


@main.command()
@click.option("-c", "--config", "config_file", type=click.Path(dir_okay=False),
              help="Agent configuration (INI, seed format).")
@click.option("--context", "context_file", type=click.Path(dir_okay=False),
              help="The node's context as its cloud delivered it.")
@click.option("--prepare-template", "template", type=click.Path(file_okay=False),
              help="Only build a pre-initialised datadir at this path, then exit.")
def agent(config_file: str | None, context_file: str | None, template: str | None) -> None:
    """Run the agent of one node (foreground)."""
    if template:
        from conpaassql.mysql.datadir import prepare_template

        asyncio.run(prepare_template(Path(template)))
        return
    from conpaassql.agent.app import serve
    from conpaassql.agent.settings import AgentSettings

    try:
        settings = AgentSettings.load(Path(context_file) if context_file else None,
                                      Path(config_file) if config_file else None)
        asyncio.run(serve(settings))
    except ConfigError as exc:
        click.echo(f"conpaassql agent: {exc}", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        pass


@main.command()
@click.option("-c", "--config", "config_file", type=click.Path(dir_okay=False),
              help="Front-end configuration (KEY = value lines; default "
                   "/etc/conpaassql/manager-gui.conf if present).")
@click.option("-b", "--bind", default="127.0.0.1", show_default=True,
              help="Address to listen on (beyond loopback, users log in with an API token).")
@click.option("-p", "--port", default=5000, show_default=True, type=click.IntRange(1, 65535))
@click.option("--insecure-http", is_flag=True,
              help="Serve plain HTTP beyond loopback (without GUI_CERT/GUI_KEY).")
def gui(config_file: str | None, bind: str, port: int, insecure_http: bool) -> None:
    """Run the web front-end of a manager (foreground)."""
    import logging

    from conpaassql.gui import config
    from conpaassql.gui.app import serve

    logging.basicConfig(level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for chatty in ("httpx", "httpcore"):  # a line per call to the manager
        logging.getLogger(chatty).setLevel(logging.WARNING)
    try:
        serve(config.load(config_file), bind, port, insecure_http=insecure_http)
    except ConfigError as exc:
        click.echo(f"conpaassql gui: {exc}", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        pass


@main.command()
@click.option("--manager", default="127.0.0.1:50000", show_default=True,
              help="The manager's address, HOST:PORT.")
@click.option("--https", is_flag=True, help="Talk to the manager over TLS (needed beyond "
              "loopback; the CA from --ca-file or $CONPAASSQL_CA_FILE).")
@click.option("--token-file", type=click.Path(dir_okay=False),
              help="The manager's API token (else $CONPAASSQL_TOKEN; a read-only one "
                   "routes but cannot register).")
@click.option("--ca-file", type=click.Path(dir_okay=False),
              help="The CA of the manager's certificate (the service's pki/ca.crt).")
@click.option("--writer", default="127.0.0.1:3306", show_default=True,
              help="Where the writer listens: connections go to the master.")
@click.option("--readers", default="127.0.0.1:3307", show_default=True,
              help="Where the readers listen: connections go to the slaves.")
@click.option("--name", help="The router's name at the manager (default: this host's name).")
@click.option("--host", "hosts", multiple=True,
              help="A name or address applications reach the router by (repeatable).")
@click.option("--state-dir", default="var/router", show_default=True,
              type=click.Path(file_okay=False),
              help="Where HAProxy's configuration, sockets and log and the last known "
                   "nodes are kept.")
@click.option("--max-lag", default=10.0, show_default=True, type=click.FloatRange(0),
              help="Seconds a slave may be behind and still take readers.")
@click.option("--max-lag-tx", type=click.IntRange(0),
              help="Transactions a slave may have received but not applied and still take "
                   "readers (default: no limit).")
@click.option("--no-reader-fallback", is_flag=True,
              help="Refuse readers when no slave qualifies (default: send them to the master).")
@click.option("--check-interval", default=300, show_default=True,
              type=click.IntRange(50, 60000), help="Milliseconds between health checks.")
@click.option("--fall", default=2, show_default=True, type=click.IntRange(1, 100),
              help="Failed checks before a node stops taking connections.")
@click.option("--rise", default=2, show_default=True, type=click.IntRange(1, 100),
              help="Passed checks before a node takes connections again.")
@click.option("--poll-interval", default=1.0, show_default=True,
              type=click.FloatRange(0.1, 3600), help="Seconds between two asks for the nodes.")
@click.option("--slots", default=32, show_default=True, type=click.IntRange(1, 1000),
              help="Nodes HAProxy has room for at start (it is reloaded with twice as "
                   "many when more come).")
@click.option("--haproxy", "haproxy_binary", default="haproxy", show_default=True,
              help="The HAProxy program.")
@click.option("--haproxy-threads", default=1, show_default=True, type=click.IntRange(0, 64),
              help="HAProxy's threads (0: one per CPU).")
def router(manager: str, https: bool, token_file: str | None, ca_file: str | None,
           writer: str, readers: str, name: str | None, hosts: tuple[str, ...],
           state_dir: str, max_lag: float, max_lag_tx: int | None,
           no_reader_fallback: bool, check_interval: int, fall: int, rise: int,
           poll_interval: float, slots: int, haproxy_binary: str,
           haproxy_threads: int) -> None:
    """Run a router (foreground): HAProxy on a writer and a readers address, following
    the service's master and slaves."""
    import logging
    import socket

    from conpaassql.router import options
    from conpaassql.router.app import run
    from conpaassql.router.settings import Checks, RouterSettings

    logging.basicConfig(level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for chatty in ("httpx", "httpcore"):
        logging.getLogger(chatty).setLevel(logging.WARNING)
    try:
        settings = RouterSettings(
            name=name or socket.gethostname(),
            manager=options.address(manager, "--manager"),
            writer=options.address(writer, "--writer"),
            readers=options.address(readers, "--readers"),
            state_dir=Path(state_dir).absolute(),
            https=https,
            token=options.token(token_file),
            verify=options.verify(ca_file),
            checks=Checks(check_interval, fall, rise, max_lag, max_lag_tx),
            reader_fallback=not no_reader_fallback,
            poll_interval=poll_interval,
            slots=slots,
            haproxy=haproxy_binary,
            threads=haproxy_threads,
            hosts=hosts,
        )
        run(settings)
    except ConfigError as exc:
        click.echo(f"conpaassql router: {exc}", err=True)
        sys.exit(2 if isinstance(exc, options.OptionError) else 1)
    except KeyboardInterrupt:
        pass


@main.group()
def token() -> None:
    """The user API's tokens (needed once the manager listens beyond loopback)."""


_STATE_DIR = click.option("--state-dir", default="var", show_default=True,
                          type=click.Path(file_okay=False),
                          help="The manager's state directory.")


def _tokens(state_dir: str) -> TokenStore:
    from conpaassql.manager.tokens import TokenStore

    return TokenStore(Path(state_dir).absolute() / "secrets")


@token.command("new")
@_STATE_DIR
@click.option("--read-only", is_flag=True, help="May call the GET methods only.")
@click.option("--label", default="", help="A note of whom it is for.")
def token_new(state_dir: str, read_only: bool, label: str) -> None:
    """Make a token and print it (it is shown this once: only its digest is kept)."""
    record, value = _tokens(state_dir).create("read" if read_only else "admin", label)
    click.echo(f"token {record.id} ({record.access}) made; it is not shown again:", err=True)
    click.echo(value)


@token.command("list")
@_STATE_DIR
def token_list(state_dir: str) -> None:
    """The tokens: id, access, when made, label (never the tokens themselves)."""
    import time

    for record in _tokens(state_dir).records():
        made = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(record.created))
        click.echo(f"{record.id}\t{record.access}\t{made} UTC\t{record.label}")


@token.command("revoke")
@_STATE_DIR
@click.argument("token_id")
def token_revoke(state_dir: str, token_id: str) -> None:
    """Revoke the token TOKEN_ID: it is refused from the next call on."""
    if not _tokens(state_dir).revoke(token_id):
        click.echo(f"conpaassql token: no token {token_id!r}", err=True)
        sys.exit(1)
    click.echo(f"token {token_id} revoked", err=True)


@token.command("rotate")
@_STATE_DIR
def token_rotate(state_dir: str) -> None:
    """Revoke every admin token and write a new one to the owner's token file."""
    store = _tokens(state_dir)
    record = store.rotate_owner_token()
    click.echo(f"admin tokens revoked; the new one ({record.id}) is in {store.owner_file}",
               err=True)
