"""Placeholder until lesson mode lands (issue 7)."""
import streamlit as st


def render_lesson_panel(lesson_name, record) -> None:
    st.info("Lesson mode is being built.")
