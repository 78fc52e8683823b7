"""The server's log: a browser that leaves while the server writes to it is one line, not a traceback
(Streamlit 1.67's socket loop lets Starlette's ``WebSocketDisconnected`` out to uvicorn, which logs
it as an error); every other exception keeps its traceback."""
from __future__ import annotations

import logging

from starlette.websockets import WebSocketDisconnected

import dashboard.server_log as server_log


def _log_error(error: BaseException, caplog) -> logging.LogRecord:
    caplog.clear()
    try:
        raise error
    except BaseException:
        logging.getLogger(server_log.LOGGER).exception("Exception in ASGI application\n")
    (record,) = caplog.records
    return record


def test_a_browser_leaving_mid_message_is_one_info_line(caplog):
    caplog.set_level(logging.DEBUG, logger=server_log.LOGGER)
    record = _log_error(WebSocketDisconnected('Cannot call "send" once a close message has been sent.'), caplog)
    assert record.levelno == logging.INFO
    assert record.getMessage() == server_log.LEFT
    assert "Traceback" not in caplog.text


def test_any_other_error_keeps_its_traceback(caplog):
    caplog.set_level(logging.DEBUG, logger=server_log.LOGGER)
    record = _log_error(RuntimeError("a real fault in the app"), caplog)
    assert record.levelno == logging.ERROR
    assert "Traceback" in caplog.text and "a real fault in the app" in caplog.text


def test_installing_twice_adds_one_filter():
    server_log.install()
    server_log.install()
    logger = logging.getLogger(server_log.LOGGER)
    assert sum(isinstance(f, server_log.BrowserLeft) for f in logger.filters) == 1
