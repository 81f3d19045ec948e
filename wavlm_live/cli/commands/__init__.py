"""The subcommands, one module per group, and :func:`dispatch`."""

from __future__ import annotations

import argparse

from .files import cmd_bench, cmd_convert, cmd_devices, cmd_eval, cmd_transcribe
from .serving import cmd_listen, cmd_run, cmd_send, cmd_serve, cmd_tui


def dispatch(args: argparse.Namespace) -> int:
    """Run the subcommand chosen on the command line; returns the exit status.

    Raises:
        CliError: any user-facing failure (printed by :func:`wavlm_live.cli.main`).
    """
    command = args.command
    if command == "run":
        return cmd_run(args)
    if command == "demo":
        return cmd_run(args, demo=True)
    handlers = {
        "serve": cmd_serve,
        "tui": cmd_tui,
        "listen": cmd_listen,
        "send": cmd_send,
        "devices": cmd_devices,
        "transcribe": cmd_transcribe,
        "convert": cmd_convert,
        "bench": cmd_bench,
        "eval": cmd_eval,
    }
    return handlers[command](args)
