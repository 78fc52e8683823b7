"""Residual Lab's core: plain and residual networks, trained in lockstep and measured layer by layer.

Imports no Streamlit and no plotly: usable from a notebook, the CLI or the dashboard alike.
"""
from resnet_core.settings import Settings, SettingsError, parse_model_name

__all__ = ["Settings", "SettingsError", "parse_model_name"]
