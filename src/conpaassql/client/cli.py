"""``conpaassql-client HOST PORT METHOD [ARGS...]``: call a manager from a shell.

The click wiring of the commands in ``commands.COMMANDS`` plus ``call`` (any
other method). The shared options (``--table``, ``--timeout``, ``--https``,
``--token-file``) are accepted before HOST and after METHOD alike.

Exit codes: 0 success, 1 the manager answered with an error (its text on
stderr), 2 a bad command line (nothing sent), 3 the manager could not be reached.
"""

from __future__ import annotations

import asyncio
import difflib
import os
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, NoReturn

import click
from rich.console import Console

from conpaassql.client.commands import (
    COMMANDS,
    ArgumentError,
    Command,
    Opt,
    RpcCall,
    generic_call,
)
from conpaassql.client.render import format_json, log_text, tables_for
from conpaassql.errors import RemoteError, UnreachableError
from conpaassql.rpc.client import RpcClient

PROG_NAME = "conpaassql-client"
TOKEN_ENV = "CONPAASSQL_TOKEN"
DEFAULT_TIMEOUT = 30.0
EXIT_REMOTE = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3
SHARED = ("table", "timeout", "https", "token_file")
_HOST_FORBIDDEN = set(" \t\r\n/\\?#@")


@dataclass(frozen=True)
class Settings:
    """Where and how to send: the group's options, refined by the command's."""

    host: str
    port: int
    table: bool = False
    timeout: float = DEFAULT_TIMEOUT
    https: bool = False
    token_file: Path | None = None

    def refined(self, values: dict[str, Any]) -> Settings:
        """These settings with the shared options given after METHOD (popped from
        ``values``) taking precedence."""
        table, timeout, https, token_file = (values.pop(name, None) for name in SHARED)
        return replace(
            self,
            table=self.table or bool(table),
            https=self.https or bool(https),
            timeout=self.timeout if timeout is None else timeout,
            token_file=self.token_file if token_file is None else token_file,
        )

    @property
    def url(self) -> str:
        host = self.host
        if ":" in host and not host.startswith("["):
            host = f"[{host}]"
        scheme = "https" if self.https else "http"
        return f"{scheme}://{host}:{self.port}/"


def check_host(host: str) -> str:
    """A host name or address fit for a URL; ``click.BadParameter`` otherwise."""
    if not host or _HOST_FORBIDDEN & set(host) or not host.isprintable():
        raise click.BadParameter(f"{host!r} is not a host name or address", param_hint="HOST")
    return host


def read_token(settings: Settings) -> str | None:
    """The bearer token: from ``--token-file``, else from ``$CONPAASSQL_TOKEN``."""
    if settings.token_file is not None:
        try:
            token = settings.token_file.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise click.UsageError(f"cannot read the token file: {exc}") from None
        origin = f"the token file {settings.token_file}"
    else:
        token = os.environ.get(TOKEN_ENV, "").strip()
        origin = f"${TOKEN_ENV}"
        if not token:
            return None
    if not token:
        raise click.UsageError(f"{origin} is empty")
    if not token.isascii() or not token.isprintable() or any(c.isspace() for c in token):
        raise click.UsageError(f"{origin} holds spaces or control characters, not a token")
    return token


async def send(settings: Settings, call: RpcCall, token: str | None) -> Any:
    """Send ``call`` to the manager; its result, or ``RemoteError``/``UnreachableError``."""
    async with RpcClient(settings.url, token=token, timeout=settings.timeout) as client:
        return await client.call(call.method, call.params, verb=call.verb)


def show(method: str, result: Any, *, table: bool) -> None:
    """Print the result: the raw text of a log, tables if asked and fitting, else JSON."""
    if method == "getLog":
        text = log_text(result)
        if text is not None:
            click.echo(text, nl=not text.endswith("\n"))
            return
    if table:
        tables = tables_for(method, result)
        if tables:
            console = Console(highlight=False)
            for item in tables:
                console.print(item)
            return
    click.echo(format_json(result))


def _fail(message: str, code: int) -> NoReturn:
    click.echo(message, err=True)
    raise click.exceptions.Exit(code)


def run(build: Callable[[dict[str, Any]], RpcCall], values: dict[str, Any]) -> None:
    """The body of every command: build the call, send it, show the result."""
    ctx = click.get_current_context()
    settings = ctx.find_object(Settings)
    assert settings is not None, "the group stores the settings"
    settings = settings.refined(values)
    try:
        call = build(values)
    except ArgumentError as exc:
        raise click.UsageError(str(exc), ctx) from None
    token = read_token(settings)
    try:
        result = asyncio.run(send(settings, call, token))
    except RemoteError as exc:
        _fail(str(exc), EXIT_REMOTE)
    except UnreachableError as exc:
        _fail(f"Cannot reach the manager at {settings.url}: {exc.detail}", EXIT_UNREACHABLE)
    show(call.method, result, table=settings.table)


def shared_options(*, on_command: bool) -> list[click.Parameter]:
    """The options every command takes; after METHOD they default to the group's."""
    return [
        click.Option(["--table"], is_flag=True, default=False,
                     help="Show the result as tables instead of JSON."),
        click.Option(["--timeout"], type=click.FloatRange(min=0, min_open=True),
                     default=None if on_command else DEFAULT_TIMEOUT,
                     show_default=not on_command, metavar="SECONDS",
                     help="Give up waiting for the manager after SECONDS."),
        click.Option(["--https"], is_flag=True, default=False,
                     help="Talk to the manager over https://."),
        click.Option(["--token-file"], default=None, metavar="PATH",
                     type=click.Path(exists=True, dir_okay=False, path_type=Path),
                     help=f"Send the bearer token read from PATH (default: ${TOKEN_ENV})."),
    ]


def _option(opt: Opt) -> click.Option:
    return click.Option([f"--{opt.name.replace('_', '-')}", opt.name], metavar=opt.metavar,
                        help=opt.help, is_flag=opt.flag, default=False if opt.flag else None)


def fixed_command(spec: Command) -> click.Command:
    """The click command of one entry of the table."""
    params: list[click.Parameter] = [
        click.Argument([arg.name], required=arg.required, metavar=arg.metavar)
        for arg in spec.arguments
    ]
    params += [_option(opt) for opt in spec.options]
    params += shared_options(on_command=True)
    text = spec.summary
    if spec.details:
        text += f"\n\n{spec.details}"
    text += f"\n\nCalls the manager method {spec.method} [{spec.verb}]."

    def callback(**values: Any) -> None:
        run(spec.rpc, values)

    return click.Command(spec.name, params=params, callback=callback, help=text,
                         short_help=spec.summary)


def call_command() -> click.Command:
    """``call METHOD [JSON_PARAMS] [--get]``: any method the table does not know."""
    params: list[click.Parameter] = [
        click.Argument(["method_name"], metavar="METHOD"),
        click.Argument(["json_params"], required=False, metavar="[JSON_PARAMS]"),
        click.Option(["--get"], is_flag=True, default=False,
                     help="Send as HTTP GET (for methods the manager serves under GET)."),
        *shared_options(on_command=True),
    ]

    def build(values: dict[str, Any]) -> RpcCall:
        return generic_call(values["method_name"], values["json_params"], get=values["get"])

    def callback(**values: Any) -> None:
        run(build, values)

    return click.Command(
        "call", params=params, callback=callback,
        short_help="Call any other method with JSON params.",
        help="Call any other manager METHOD with JSON_PARAMS, a JSON object "
             "(default {}), sent as POST or, with --get, as GET.\n\n"
             "\b\nExample:\n  call configure_user "
             "'{\"serviceNodeId\": \"all\", \"username\": \"u\", \"password\": \"p\"}'",
    )


class ClientGroup(click.Group):
    """Lists the commands in table order; an unknown one is pointed to ``call``."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(self.commands)

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        name = args[0] if args else ""
        if name and not name.startswith("-") and self.get_command(ctx, name) is None:
            close = difflib.get_close_matches(name, list(self.commands), n=3)
            hint = f" Did you mean {', '.join(close)}?" if close else ""
            raise click.UsageError(
                f"No such command {name!r}.{hint} To call another manager method: "
                f"call {name} [JSON_PARAMS] [--get]", ctx)
        return super().resolve_command(ctx, args)


def _group_callback(*, host: str, port: int, table: bool, timeout: float, https: bool,
                    token_file: Path | None) -> None:
    ctx = click.get_current_context()
    ctx.obj = Settings(check_host(host), port, table, timeout, https, token_file)


def build_cli() -> click.Group:
    """The whole command line: HOST PORT, then one command."""
    group = ClientGroup(
        PROG_NAME,
        params=[
            click.Argument(["host"], metavar="HOST"),
            click.Argument(["port"], metavar="PORT", type=click.IntRange(1, 65535)),
            *shared_options(on_command=False),
        ],
        callback=_group_callback,
        subcommand_metavar="METHOD [ARGS]...",
        help="Call a method of the conpaassql manager at HOST:PORT and print its "
             "result as JSON (or, with --table, as tables).\n\n"
             "\b\nExamples:\n  conpaassql-client 10.30.1.1 50000 list_nodes\n"
             "  conpaassql-client 10.30.1.1 50000 add_node agent\n"
             "  conpaassql-client --table 10.30.1.1 50000 get_service_info\n\n"
             "Exit codes: 0 done, 1 the manager answered with an error, "
             "2 bad command line (nothing sent), 3 manager unreachable.",
    )
    for spec in COMMANDS:
        group.add_command(fixed_command(spec))
    group.add_command(call_command())
    return group


cli = build_cli()


def main() -> None:
    """The ``conpaassql-client`` entry point."""
    cli(prog_name=PROG_NAME)
