"""Placeholder until the unrolled-paths panel lands (issue 4)."""
import streamlit as st


def render_paths_panel(record, settings, request=None) -> None:
    st.info("The unrolled-paths panel is being built.")
