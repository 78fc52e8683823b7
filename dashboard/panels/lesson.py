"""The lesson card: title, the paragraph, the question for the class, and the verdict on the run.

Pure rendering: the verdict comes from the lesson's check (``resnet_core.lessons``), a function
of the run's own tables, so it says only what the run on screen shows. The caller decides when
to redraw it (inside a refreshing fragment while training).
"""
from __future__ import annotations

import streamlit as st

from resnet_core.lessons import LESSONS, Verdict

from dashboard.text import code

# A Material icon for the hourglass: the emoji is missing from many Linux fonts (a box in Chromium).
HEADINGS = {"shown": "✓ Shown on this run", "not yet": ":material/hourglass_top: Not yet",
            "not shown": "✗ Not shown on this run"}
# Green when the claim showed, amber when it did not (a finding about the run, not an app error);
# while waiting, plain text in a frame, so that the question above stays the one highlighted box.
# The two boxes are live regions (Streamlit gives a success box role="status", a warning role="alert"),
# so a screen reader announces the verdict when it comes, and not each step of "not yet" before it.
BOXES = {"shown": st.success, "not shown": st.warning}


def render_lesson_panel(lesson_name: str, record) -> None:
    """``record`` is the run on screen (live or replayed), or None before the first Train."""
    lesson = LESSONS.get(lesson_name)
    if lesson is None:
        st.warning(f"There is no lesson called {code(lesson_name)}; pick one in the sidebar.")
        return
    with st.container(border=True):
        st.markdown(f"### {lesson.title}")
        st.markdown(lesson.text)
        st.info(f"**Question for the class.** {lesson.question}", icon=":material/forum:")
        render_verdict(lesson.judge(record))


def render_verdict(verdict: Verdict) -> None:
    text = f"**{HEADINGS.get(verdict.state, verdict.state)}.** {verdict.summary}"
    box = BOXES.get(verdict.state)
    if box is None:
        st.container(border=True).markdown(text)
    else:
        box(text)
    if verdict.details:
        st.markdown("\n".join(f"- {line}" for line in verdict.details))
