"""User text on the page, shown as text: never as a link, an image, markup or a formula.

Streamlit renders the body of ``st.error``, ``st.warning``, ``st.info``, ``st.markdown`` and a
metric's label as Markdown, so a value typed into a link (``?preset=[Your session expired](https://…)``)
would otherwise come out as a clickable link inside our own warning box. Two ways to quote it:

    code(value)    a value the user gave, as an inline code span: `[Your session expired](https://…)`
    literal(text)  a whole message that may contain user text (an error from the core), every
                   Markdown character escaped, so it reads exactly as written
"""
from __future__ import annotations

import re

MAX_SHOWN = 80  # characters of a user's value quoted in a message (a link can carry half a megabyte)
_SPECIAL = re.compile(r"([\\`*_{}\[\]()<>#+\-.!|~:$&=\"'/@^%])")


def code(value: object, limit: int = MAX_SHOWN) -> str:
    """``value`` as an inline code span: shown verbatim, nothing in it interpreted. Control
    characters are written as escapes, backticks (which could close the span) as ', and anything
    past ``limit`` characters as an ellipsis."""
    text = repr(str(value))[1:-1]  # \n, \t and other control characters as visible escapes
    if len(text) > limit:
        text = text[:limit] + "…"
    text = text.replace("`", "'")
    return f"`{text}`" if text.strip() else "`(empty)`"


def literal(text: object) -> str:
    """``text`` with every character Markdown (or Streamlit's :colour[...] and :icon: directives,
    or a $formula$) could act on backslash-escaped, on one line."""
    one_line = " ".join(str(text).split())
    return _SPECIAL.sub(r"\\\1", one_line)


def shown(markdown: str) -> str:
    """What ``literal`` text reads as once rendered (for tests and logs): the escapes removed."""
    return re.sub(r"\\(.)", r"\1", markdown)
