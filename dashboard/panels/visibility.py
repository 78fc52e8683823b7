"""Whether the student can see the page: a hidden tab (another tab in front, the window minimised)
refreshes nothing.

Streamlit's browser code reruns each live fragment on a timer whether the page is seen or not
(Chromium slows a hidden tab's timers to once a second, which is the live pace already). So a tiny
component (``st.components.v2``: inline JavaScript, no iframe, nothing fetched) reports
``document.visibilityState`` to the server when it changes; the page then runs again in full,
without the fragments' timers while hidden, and with them (one full rerun: everything up to date)
when the student comes back.
"""
from __future__ import annotations

import streamlit as st

# Sends only a change: a page seen since it opened sends nothing at all. Once per page, whatever
# the reruns: the last value sent is kept on the page's window.
JS = """
export default function(component) {
  const { setStateValue } = component;
  const report = () => {
    const visible = document.visibilityState === "visible";
    if (window.__residualLabVisible !== visible) {
      window.__residualLabVisible = visible;
      setStateValue("visible", visible);
    }
  };
  if (window.__residualLabVisible === undefined) window.__residualLabVisible = true;
  document.addEventListener("visibilitychange", report);
  report();
  return () => document.removeEventListener("visibilitychange", report);
}
"""

_watcher = st.components.v2.component("residual_lab.page_visibility", js=JS)
KEY = "page_visibility"


def page_visible() -> bool:
    """True unless the browser says this page is hidden now (mounts the watcher, in the sidebar:
    an empty element, out of the main page's layout)."""
    with st.sidebar:
        state = _watcher(key=KEY, default={"visible": True}, on_visible_change=lambda: None)
    return bool(getattr(state, "visible", True))
