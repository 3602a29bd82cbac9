"""``conpaassql manager|agent|gui``: the daemons' command line."""

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
