"""The error tree of conpaassql.

Every failure the project raises on purpose is a ``ConpaasSQLError``. At the RPC
boundary each one becomes a ConPaaS error reply whose text is ``str(error)``:
the original service's wording (``Missing argument: serviceNodeId``), followed by
``' DETAIL:...'`` when there is more to say.
"""

from __future__ import annotations

from collections.abc import Iterable


class ConpaasSQLError(Exception):
    """Root of every error raised on purpose by conpaassql."""

    #: JSON-RPC 2.0 error code used when this error answers a 2.0 request.
    code: int = -32000
    template: str = "Unknown error."

    def __init__(self, *args: object, detail: str | None = None) -> None:
        self.args_ = args
        self.detail = detail
        message = self.template % args if args else self.template
        if detail:
            message = f"{message} DETAIL:{detail}"
        super().__init__(message)

    @property
    def message(self) -> str:
        return str(self)


class ConfigError(ConpaasSQLError):
    """A configuration file is missing, unreadable or holds a wrong value."""

    code = -32010
    template = "Configuration error: %s"


class BadRequestError(ConpaasSQLError):
    """The caller sent something we cannot act on."""

    code = -32602


class MissingArgumentError(BadRequestError):
    template = "Missing argument: %s"


class UnexpectedArgumentsError(BadRequestError):
    template = "Unexpected arguments %s"

    def __init__(self, names: Iterable[str], detail: str | None = None) -> None:
        super().__init__(sorted(names), detail=detail)


class InvalidArgumentError(BadRequestError):
    template = "Invalid argument: %s"


class WrongStateError(ConpaasSQLError):
    """The service (or a node) is not in a state that allows the request."""

    code = -32001
    template = "Service in wrong state"


class BusyError(WrongStateError):
    """A conflicting long operation is already running."""

    code = -32002


class IllegalMoveError(WrongStateError):
    """A node was to move to a state it may not go to from the one it is in."""

    template = "Node in wrong state"


class NotFoundError(ConpaasSQLError):
    """A named object (a node, a user...) does not exist."""

    code = -32004
    template = "Invalid argument: %s"


class AuthError(ConpaasSQLError):
    """No valid credential (HTTP 401)."""

    code = -32003
    template = "Not authorized"
    status = 401


class ForbiddenError(AuthError):
    """A valid credential that may not do this (HTTP 403)."""

    template = "Forbidden"
    status = 403


class CloudError(ConpaasSQLError):
    """The cloud driver failed to create, list or destroy nodes."""

    code = -32020
    template = "Cloud error: %s"


class UnreachableError(ConpaasSQLError):
    """An RPC peer could not be reached or did not answer in time."""

    code = -32031
    template = "Cannot reach %s"


class AgentError(ConpaasSQLError):
    """An agent could not be reached, timed out, or answered with an error."""

    code = -32030
    template = "Agent error: %s"


class MySQLError(ConpaasSQLError):
    """MySQL/MariaDB answered with an error; ``errno`` is the server's code."""

    code = -32040
    template = "MySQL reported an error: %s"

    def __init__(self, text: str, errno: int | None = None, detail: str | None = None) -> None:
        super().__init__(text, detail=detail)
        self.errno = errno


class RemoteError(ConpaasSQLError):
    """An RPC peer answered with an error reply; the text is the peer's own."""

    template = "%s"

    def __init__(self, text: str, code: int | None = None, http_status: int = 200) -> None:
        super().__init__(text)
        if code is not None:
            self.code = code
        self.http_status = http_status
