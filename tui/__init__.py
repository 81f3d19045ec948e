"""Textual dashboard for wavlm-live (installed as ``wavlm_live.tui``)."""
