"""The one kind of error a user can fix, and how any error becomes the one line they are shown.

``SettingsError``, ``DataError``, ``RecordError`` and the CLI's usage errors are all ``UserError``s:
the message says what is wrong and what to change, and is shown as it is (CLI: exit 2; the page:
``st.error``). Anything else is a fault of ours, shown with its type, since the type is then part
of the story. Across a worker process's JSON protocol an error travels as ``describe(exc)`` plus
``is_user_error(exc)``, never as a traceback to be parsed.
"""
from __future__ import annotations

import re

# Characters that str.splitlines() treats as line breaks: a message must stay one line even when
# it quotes a user's path or value, so the UI and the CLI can print it as is.
_LINE_BREAKS = re.compile("[\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029]+")


def one_line(text: object) -> str:
    return _LINE_BREAKS.sub(" ", str(text)).strip()


class UserError(ValueError):
    """A mistake the user can fix; the message is one line: what is wrong and what to do."""

    def __init__(self, message: object) -> None:
        super().__init__(one_line(message))


def is_user_error(exc: BaseException) -> bool:
    return isinstance(exc, UserError)


def describe(exc: BaseException) -> str:
    """The line a user is shown for ``exc``: a UserError's message alone, anything else with its type."""
    text = one_line(exc)
    return text if is_user_error(exc) and text else f"{type(exc).__name__}: {text}" if text else type(exc).__name__
