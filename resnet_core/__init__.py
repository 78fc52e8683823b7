"""Residual Lab's core: plain and residual networks, trained in lockstep and measured layer by layer.

Imports no Streamlit and no plotly: usable from a notebook, the CLI or the dashboard alike.
"""
from resnet_core.settings import Settings, SettingsError, parse_model_name

__version__ = "0.9.0"  # the same as pyproject.toml's; part of every run-cache key

__all__ = ["Settings", "SettingsError", "__version__", "parse_model_name"]
