"""Websocket publisher of wavlm-live events (installed as ``wavlm_live.server``)."""
