"""Placeholder until this panel lands (issue 6)."""
import streamlit as st


def render_shattered_panel(settings) -> None:
    st.info("This panel is being built.")
