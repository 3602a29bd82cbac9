"""Results that are byte streams (a dump) rather than JSON.

A streamed result starts as HTTP 200 with the bytes as they come. If the source
fails part-way, the reply cannot turn into an error any more: a last line names
the failure and the connection is closed before the body's end, so that every
HTTP client sees a transfer cut short rather than a complete file.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping

from starlette.responses import StreamingResponse
from starlette.types import Send

from conpaassql.errors import ConpaasSQLError

log = logging.getLogger(__name__)

Cleanup = Callable[[], Awaitable[None]]


class ByteStreamResponse(StreamingResponse):
    """Streams ``chunks``; on a failure, marks the body and breaks the transfer off.

    ``cleanup`` runs at the end whatever happened (done, failed, client gone);
    ``ended``, a plain function, runs first, before anything that may be cancelled
    (a client gone cancels the stream, and with it every later wait).
    """

    def __init__(self, chunks: AsyncIterator[bytes], *, media_type: str,
                 headers: Mapping[str, str] | None = None,
                 cleanup: Cleanup | None = None,
                 failure_line: Callable[[str], bytes] | None = None,
                 ended: Callable[[], None] | None = None) -> None:
        super().__init__(chunks, headers=headers, media_type=media_type)
        self.chunks = chunks
        self.cleanup = cleanup
        self.failure_line = failure_line
        self.ended = ended

    async def stream_response(self, send: Send) -> None:
        try:
            await send({"type": "http.response.start", "status": self.status_code,
                        "headers": self.raw_headers})
            async for chunk in self.chunks:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
        except ConpaasSQLError as exc:
            log.error("streamed result broken off: %s", exc)
            if self.failure_line is not None:
                await send({"type": "http.response.body", "body": self.failure_line(str(exc)),
                            "more_body": True})
            return  # no final message: the client sees an incomplete body
        finally:
            if self.ended is not None:
                self.ended()
            closing = getattr(self.chunks, "aclose", None)
            if closing is not None:
                await closing()
            if self.cleanup is not None:
                await self.cleanup()
        await send({"type": "http.response.body", "body": b"", "more_body": False})


def sql_failure_line(message: str) -> bytes:
    """An SQL comment that ends a dump that could not be finished."""
    text = " ".join(message.split())[:500]
    return f"\n-- conpaassql: THE DUMP FAILED AND IS INCOMPLETE: {text}\n".encode()
