"""``conpaassql manager|agent``: the daemons' command line."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import click

from conpaassql.errors import ConfigError


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
