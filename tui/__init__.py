"""Textual dashboard for wavlm-live (installed as ``wavlm_live.tui``).

A websocket client only: it never imports torch or the engine. Start it with
:func:`run_dashboard` or embed :class:`DashboardApp`; see ``docs/dashboard.md``.
"""

from .app import DashboardApp, Link, run_dashboard
from .state import DashboardConfig, DashboardState

__all__ = ["DashboardApp", "DashboardConfig", "DashboardState", "Link", "run_dashboard"]
