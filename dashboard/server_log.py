"""One line, not a traceback, when a browser leaves while the server is writing to it.

Streamlit 1.67's web socket loop does not expect the socket to close under it: when a tab closes
while a message is on its way (a class closing its laptops while the runs train), the send fails,
Starlette marks the socket disconnected, the loop's next read raises ``WebSocketDisconnected``, its
handler tries to close the socket again, and uvicorn logs the second ``WebSocketDisconnected`` as
"Exception in ASGI application" with some fifty lines of traceback. Nothing is lost: the browser is
gone and its session ends as any other. The teacher's terminal (and the tests, which read the
server's log for tracebacks) should not take it for an error, so this filter turns exactly that
record into one line; any other exception keeps its traceback.

Importing this module installs the filter, once per process.
"""
from __future__ import annotations

import logging

LOGGER = "uvicorn.error"  # where uvicorn logs an exception the app's ASGI handler let out
LEFT = "a browser left while the server was writing to it (its session ends as usual)"


def _socket_already_closed(error: BaseException | None) -> bool:
    try:
        from starlette.websockets import WebSocketDisconnected
    except ImportError:  # an older Starlette, without the class: nothing to recognise
        return False
    return isinstance(error, WebSocketDisconnected)


class BrowserLeft(logging.Filter):
    """Rewrites uvicorn's record of a ``WebSocketDisconnected`` as one INFO line."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and _socket_already_closed(record.exc_info[1]):
            record.msg, record.args = LEFT, ()
            record.exc_info, record.exc_text = None, None
            record.levelno, record.levelname = logging.INFO, "INFO"
        return True


def install() -> None:
    logger = logging.getLogger(LOGGER)
    if not any(isinstance(f, BrowserLeft) for f in logger.filters):
        logger.addFilter(BrowserLeft())


install()
