"""``conpaassql-client HOST PORT METHOD [ARGS...]``: call a manager from a shell.

The click wiring of the commands in ``commands.COMMANDS`` plus ``call`` (any
other method). The shared options (``--table``, ``--timeout``, ``--https``,
``--token-file``) are accepted before HOST and after METHOD alike.

Uploads stream their file and downloads their result; both show a progress bar
and a summary line on stderr when it is a terminal, nothing otherwise. A
password not given on the command line comes from ``$CONPAASSQL_PASSWORD`` or a
hidden prompt; it is never echoed nor shown in a message.

Exit codes: 0 success, 1 the manager answered with an error or a transfer failed
(the reason on stderr), 2 a bad command line (nothing sent), 3 the manager could
not be reached.
"""

from __future__ import annotations

import asyncio
import contextlib
import difflib
import os
import ssl
import sys
from collections.abc import Callable, Coroutine
from contextlib import AbstractContextManager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, BinaryIO, NoReturn, TextIO, TypeVar

import click
from rich.console import Console

from conpaassql.client import certificates, native_dump, waiting
from conpaassql.client.arguments import (
    ArgumentError,
    Command,
    Opt,
    RpcCall,
    UploadFile,
    Verb,
    generic_call,
)
from conpaassql.client.commands import COMMANDS
from conpaassql.client.render import LOG_METHODS, format_json, log_text, tables_for
from conpaassql.client.transfer import Meter, PartialFile, size_of
from conpaassql.errors import RemoteError, UnreachableError
from conpaassql.rpc import endpoint, transfer
from conpaassql.rpc.client import ClientVerb, RpcClient, read_chunks
from conpaassql.rpc.endpoint import base_url

T = TypeVar("T")

PROG_NAME = "conpaassql-client"
TOKEN_ENV = endpoint.TOKEN_ENV
CA_ENV = "CONPAASSQL_CA_FILE"
CERT_ENV = "CONPAASSQL_CERT_FILE"
KEY_ENV = "CONPAASSQL_KEY_FILE"
PASSWORD_ENV = "CONPAASSQL_PASSWORD"
DEFAULT_TIMEOUT = 30.0
EXIT_REMOTE = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3
SHARED = ("table", "timeout", "https", "token_file")


@dataclass(frozen=True)
class Settings:
    """Where and how to send: the group's options, refined by the command's."""

    host: str
    port: int
    table: bool = False
    timeout: float | None = None
    """``--timeout`` if given: ordinary calls wait 30 s without it, transfers as long
    as the data takes."""
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
    def call_timeout(self) -> float:
        """How long an ordinary call may take."""
        return DEFAULT_TIMEOUT if self.timeout is None else self.timeout

    @property
    def url(self) -> str:
        return base_url(self.host, self.port, https=self.https)


def check_host(host: str) -> str:
    """A host name or address fit for a URL; ``click.BadParameter`` otherwise."""
    try:
        return endpoint.check_host(host)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="HOST") from None


def read_token(settings: Settings) -> str | None:
    """The bearer token: from ``--token-file``, else from ``$CONPAASSQL_TOKEN``."""
    try:
        return endpoint.load_token(settings.token_file)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None


def _is_terminal(stream: TextIO | None) -> bool:
    try:
        return stream is not None and stream.isatty()
    except ValueError:  # closed
        return False


def stdin_is_terminal() -> bool:
    """Whether a password may be asked for."""
    return _is_terminal(sys.stdin)


def stderr_is_terminal() -> bool:
    """Whether progress is shown."""
    return _is_terminal(sys.stderr)


def stdout_is_terminal() -> bool:
    return _is_terminal(sys.stdout)


def obtain_password() -> str:
    """A password the command line did not give: ``$CONPAASSQL_PASSWORD``, else typed
    twice (hidden) on a terminal; ``ArgumentError`` when there is no way to get it."""
    given = os.environ.get(PASSWORD_ENV)
    if given:
        return given
    if not stdin_is_terminal():
        raise ArgumentError(f"no password: give PASSWORD, set ${PASSWORD_ENV} (not empty), "
                            "or run on a terminal to be asked for it")
    try:
        typed: str = click.prompt("Password", hide_input=True, confirmation_prompt=True,
                                  err=True)
    except click.Abort:
        raise ArgumentError("no password typed") from None
    return typed


def progress_console(*, beside_stdout: bool = False) -> Console | None:
    """Where progress goes: stderr when it is a terminal (and, when the data itself
    goes to stdout, stdout is not the same screen); ``None`` for silence."""
    if not stderr_is_terminal() or (beside_stdout and stdout_is_terminal()):
        return None
    return Console(stderr=True, force_terminal=True, highlight=False)


def _verb(verb: Verb) -> ClientVerb:
    return "GET" if verb == "GET" else "POST"


def _client(settings: Settings, token: str | None) -> RpcClient:
    return RpcClient(settings.url, token=token, timeout=settings.call_timeout,
                     verify=_verify())


def _verify() -> Any:
    """How an https manager is checked, and what the client shows it: the CA from
    ``$CONPAASSQL_CA_FILE`` (the service's own, ``<state dir>/pki/ca.crt``; else the
    system's), and the client certificate and key from ``$CONPAASSQL_CERT_FILE`` and
    ``$CONPAASSQL_KEY_FILE`` when the manager asks for one (``api_client_ca``)."""
    ca_file = os.environ.get(CA_ENV, "").strip()
    cert_file = os.environ.get(CERT_ENV, "").strip()
    key_file = os.environ.get(KEY_ENV, "").strip() or None
    if not ca_file and not cert_file:
        return True
    try:
        context = ssl.create_default_context(cafile=ca_file or None)
        if cert_file:
            context.load_cert_chain(cert_file, key_file)
    except (OSError, ssl.SSLError) as exc:
        raise click.UsageError(f"cannot read the TLS files (${CA_ENV}, ${CERT_ENV}, "
                               f"${KEY_ENV}): {exc}") from None
    return context


async def send(settings: Settings, call: RpcCall, token: str | None) -> Any:
    """Send ``call`` to the manager; its result, or ``RemoteError``/``UnreachableError``."""
    async with _client(settings, token) as client:
        return await client.call(call.method, call.params, verb=_verb(call.verb))


async def send_upload(settings: Settings, call: RpcCall, upload: UploadFile, file: BinaryIO,
                      token: str | None, meter: Meter) -> Any:
    """Upload ``file`` with the call's params, counting what is read into ``meter``."""
    async with _client(settings, token) as client:
        size = size_of(file)
        return await transfer.upload(client, call.method, call.params, upload.field,
                                     upload.filename, read_chunks(file, meter.advance),
                                     timeout=settings.timeout,
                                     size=None if size is None else size - file.tell())


async def receive(settings: Settings, call: RpcCall, token: str | None, out: BinaryIO,
                  meter: Meter) -> None:
    """Write the streamed result of ``call`` into ``out``; ``RemoteError`` if it is cut
    short."""
    async with _client(settings, token) as client:
        if call.method == "sqldump" and await native_dump.dump_into(
                client, call.params, out, meter.advance, lambda: meter.start(None)) is not None:
            return  # made by mariadb-dump here
        async with transfer.stream(client, call.method, call.params, verb=_verb(call.verb),
                                   timeout=settings.timeout) as stream:
            meter.start(stream.length)
            async for chunk in stream.chunks():
                out.write(chunk)
                meter.advance(len(chunk))
            if stream.length is not None and meter.done != stream.length:
                raise RemoteError(f"the stream ended after {meter.done} of "
                                  f"{stream.length} bytes")
    out.flush()


def show(method: str, result: Any, *, table: bool) -> None:
    """Print the result: the raw text of a log, tables if asked and fitting, else JSON."""
    if method in LOG_METHODS:
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


def _outcome(settings: Settings, call: RpcCall,
             work: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run ``work``; the manager's error exits 1, an unreachable manager 3."""
    try:
        return asyncio.run(work())
    except RemoteError as exc:
        _fail(call.redact(str(exc)), EXIT_REMOTE)
    except UnreachableError as exc:
        _fail(call.redact(f"Cannot reach the manager at {settings.url}: {exc.detail}"),
              EXIT_UNREACHABLE)


def open_upload(upload: UploadFile) -> AbstractContextManager[BinaryIO]:
    """The file to upload, opened; a usage error if it cannot be (nothing is sent)."""
    if upload.path is None:
        return contextlib.nullcontext(sys.stdin.buffer)
    try:
        return upload.path.open("rb")
    except OSError as exc:
        raise click.UsageError(f"cannot read FILE {str(upload.path)!r}: {exc.strerror}",
                               click.get_current_context()) from None


def run_upload(settings: Settings, call: RpcCall, upload: UploadFile,
               token: str | None) -> Any:
    """Send an upload call, its file streamed, with progress on a terminal."""
    with open_upload(upload) as file, Meter(upload.filename, progress_console()) as meter:
        meter.start(size_of(file))
        try:
            result = _outcome(settings, call, lambda: send_upload(
                settings, call, upload, file, token, meter))
        except OSError as exc:
            _fail(f"Cannot read {upload.filename}: {exc.strerror or exc}", EXIT_REMOTE)
        meter.finish("Sent")
    return result


def run_download(settings: Settings, call: RpcCall, token: str | None) -> None:
    """Receive a streamed result into ``call.output`` (complete or not at all) or stdout."""
    if call.output is None:
        out = sys.stdout.buffer
        with Meter(call.method, progress_console(beside_stdout=True)) as meter:
            _receive_into(settings, call, token, out, meter, "standard output")
        meter.finish("Received")
        return
    try:
        partial = PartialFile(call.output)
    except OSError as exc:
        raise click.UsageError(f"cannot write {str(call.output)!r}: {exc.strerror}",
                               click.get_current_context()) from None
    with partial, Meter(call.output.name, progress_console()) as meter:
        _receive_into(settings, call, token, partial.file, meter, str(call.output))
        try:
            partial.commit()
        except OSError as exc:
            _fail(f"Cannot write {call.output}: {exc.strerror or exc}", EXIT_REMOTE)
    meter.finish("Received")


def _receive_into(settings: Settings, call: RpcCall, token: str | None, out: BinaryIO,
                  meter: Meter, where: str) -> None:
    try:
        _outcome(settings, call, lambda: receive(settings, call, token, out, meter))
    except BrokenPipeError:
        meter.stop()
        _fail(f"{where} was closed before the dump was complete", EXIT_REMOTE)
    except OSError as exc:
        meter.stop()
        _fail(f"Cannot write {where}: {exc.strerror or exc}", EXIT_REMOTE)


def run(build: Callable[[dict[str, Any]], RpcCall], values: dict[str, Any]) -> None:
    """The body of every command: build the call, send it, show the result."""
    ctx = click.get_current_context()
    settings = ctx.find_object(Settings)
    assert settings is not None, "the group stores the settings"
    settings = settings.refined(values)
    try:
        call = build(values)
        token = read_token(settings)
        if call.secret_missing:
            call = call.with_secret(obtain_password())
    except ArgumentError as exc:
        raise click.UsageError(str(exc), ctx) from None
    if call.download:
        run_download(settings, call, token)
        return
    if call.upload is not None:
        result = run_upload(settings, call, call.upload, token)
    else:
        result = _outcome(settings, call, lambda: send(settings, call, token))
    if values.get("wait"):
        result = run_wait(settings, call, result, token)
    show(call.method, result, table=settings.table)


async def _follow(settings: Settings, token: str | None, look: waiting.Look,
                  display: waiting.Display) -> waiting.Seen:
    async with _client(settings, token) as client:
        return await waiting.follow(client, look, display)


def run_wait(settings: Settings, call: RpcCall, started: Any, token: str | None) -> Any:
    """``--wait``: follow what ``call`` started until it is over, a spinner on a
    terminal, plain lines on stderr otherwise; its last record (printed, then exit 1
    when it failed)."""
    found = waiting.look_for(call.method, started)
    if found is None:
        return started
    label, look = found
    console = progress_console()
    with waiting.Display(label, console, None if console else sys.stderr) as display:
        seen = _outcome(settings, call, lambda: _follow(settings, token, look, display))
    if not seen.ok:
        if seen.record is not None:
            show(call.method, seen.record, table=False)
        raise click.exceptions.Exit(EXIT_REMOTE)
    return seen.record if seen.record is not None else started


def shared_options(*, on_command: bool) -> list[click.Parameter]:
    """The options every command takes; after METHOD they default to the group's."""
    return [
        click.Option(["--table"], is_flag=True, default=False,
                     help="Show the result as tables instead of JSON."),
        click.Option(["--timeout"], type=click.FloatRange(min=0, min_open=True),
                     default=None, metavar="SECONDS",
                     help=f"Give up waiting for the manager after SECONDS (default: "
                          f"{DEFAULT_TIMEOUT:g}; uploads and dumps: as long as the data "
                          f"takes)."),
        click.Option(["--https"], is_flag=True, default=False,
                     help="Talk to the manager over https://."),
        click.Option(["--token-file"], default=None, metavar="PATH",
                     type=click.Path(exists=True, dir_okay=False, path_type=Path),
                     help=f"Send the bearer token read from PATH (default: ${TOKEN_ENV})."),
    ]


def _option(opt: Opt) -> click.Option:
    flags = [f"--{opt.name.replace('_', '-')}", *([f"-{opt.short}"] if opt.short else [])]
    return click.Option([*flags, opt.name], metavar=opt.metavar, help=opt.help,
                        is_flag=opt.flag, default=False if opt.flag else None)


def fixed_command(spec: Command) -> click.Command:
    """The click command of one entry of the table."""
    params: list[click.Parameter] = [
        click.Argument([arg.name], required=arg.required, metavar=arg.metavar,
                       nargs=-1 if arg.many else 1)
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


def certificate_command() -> click.Command:
    """``client_certificate [DIR] [--label NAME]``: a client key and its certificate."""

    def callback(directory: str, label: str, **shared: Any) -> None:
        ctx = click.get_current_context()
        settings = ctx.find_object(Settings)
        assert settings is not None, "the group stores the settings"
        settings = settings.refined(shared)
        request = certificates.new_key_request(label)
        call = RpcCall("issue_client_certificate", "POST",
                       {"csr": request.csr_pem, "label": label})
        try:
            token = read_token(settings)
        except ArgumentError as exc:
            raise click.UsageError(str(exc), ctx) from None
        result = _outcome(settings, call, lambda: send(settings, call, token))
        try:
            written = certificates.write_files(Path(directory), request.key_pem,
                                               result["certificate"], result["ca"])
        except OSError as exc:
            _fail(f"Cannot write the files in {directory}: {exc.strerror or exc}",
                  EXIT_REMOTE)
        show(call.method, {"files": [str(path) for path in written],
                           "subject": result.get("subject"),
                           "not_after": result.get("not_after")}, table=settings.table)

    summary = "Make a MySQL client key and get it a certificate of the service."
    return click.Command(
        "client_certificate", callback=callback, short_help=summary,
        params=[click.Argument(["directory"], required=False, default=".", metavar="[DIR]"),
                click.Option(["--label"], default="client", metavar="NAME",
                             help="Named mysql-client-NAME in the certificate."),
                *shared_options(on_command=True)],
        help=f"{summary}\n\nWrites client-key.pem (0600, made here, never sent), "
             "client-cert.pem and cacert.pem into DIR (default: here), the names sysbench "
             "--mysql-ssl=on looks for. The servers check a certificate a client "
             "presents against the service's CA, so a client that presents one needs "
             "one of these; its account's password is still asked for."
             "\n\nCalls the manager method issue_client_certificate [POST].")


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
             "\b\nExample:\n  call set_up_replica_master '{\"id\": 2}'",
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


def _group_callback(*, host: str, port: int, table: bool, timeout: float | None,
                    https: bool, token_file: Path | None) -> None:
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
             "  conpaassql-client --table 10.30.1.1 50000 get_service_info\n"
             "  conpaassql-client 10.30.1.1 50000 configure_user all alice "
             "--database shop\n"
             "  conpaassql-client 10.30.1.1 50000 load_dump shop.sql.gz --database shop\n"
             "  conpaassql-client 10.30.1.1 50000 sqldump shop -o shop.sql\n\n"
             f"Passwords not given on the command line are read from ${PASSWORD_ENV}, "
             "else asked for on a terminal.\n\n"
             "Exit codes: 0 done, 1 the manager answered with an error or a transfer "
             "failed, 2 bad command line (nothing sent), 3 manager unreachable.",
    )
    for spec in COMMANDS:
        group.add_command(fixed_command(spec))
    group.add_command(certificate_command())
    group.add_command(call_command())
    return group


cli = build_cli()


def main() -> None:
    """The ``conpaassql-client`` entry point."""
    cli(prog_name=PROG_NAME)
