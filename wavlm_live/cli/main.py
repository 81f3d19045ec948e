"""The ``wavlm-live`` console script: parse, read the environment (the one place that
does), run the subcommand, turn failures into one line and an exit status."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

from .defaults import CONTROL_TOKEN_ENV, TOKEN_ENV
from .errors import EXIT_BROKEN_PIPE, EXIT_FAILURE, EXIT_INTERRUPTED, CliError, UsageError
from .parser import build_parser


def _configure_logging(verbose: int) -> None:
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``wavlm-live`` console script; returns the exit status:
    :data:`EXIT_OK` (0), :data:`EXIT_FAILURE` (1), :data:`EXIT_USAGE` (2),
    :data:`EXIT_INTERRUPTED` (130) or :data:`EXIT_BROKEN_PIPE` (141)."""
    try:
        status = _main(argv)
        sys.stdout.flush()  # a closed pipe shows here, not at interpreter exit
        return status
    except BrokenPipeError:
        # The reader of stdout went away (`| head`): stop quietly, as a process that
        # SIGPIPE ends would, and keep Python from complaining when it flushes stdout at
        # exit (the recipe in the Python docs' "Note on SIGPIPE", signal module).
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        except (OSError, ValueError):
            pass
        return EXIT_BROKEN_PIPE


def _tokens_from_env(args: argparse.Namespace) -> None:
    """Fill ``--token``/``--control-token`` from the environment when not given.

    Raises:
        UsageError: a token option or variable that is set but empty (or blank): it
            would otherwise read as "no token" and silently turn authentication off.
    """
    for attr, env, option in (("token", TOKEN_ENV, "--token"), ("control_token", CONTROL_TOKEN_ENV, "--control-token")):
        if not hasattr(args, attr):
            continue
        value = getattr(args, attr)
        if value is not None:
            if not value.strip():
                raise UsageError(f"{option} is empty; give a token, or leave the option out for none")
            continue
        text = os.environ.get(env)
        if text is not None:
            if not text.strip():
                raise UsageError(f"{env} is set but empty; unset it for no token, or give one")
            setattr(args, attr, text)


def _main(argv: Sequence[str] | None) -> int:
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0].startswith("-") and argv[0] not in ("-h", "--help", "--version", "-v", "-vv", "--verbose"):
        argv = ["run", *argv]
    args = parser.parse_args(argv)
    if args.command is None:
        args = parser.parse_args(["run", *argv])
    _configure_logging(args.verbose)
    from .commands import dispatch  # noqa: PLC0415 - keeps --help fast (no torch before a command runs)

    try:
        _tokens_from_env(args)
        return dispatch(args)
    except CliError as exc:
        print(f"wavlm-live: {exc}", file=sys.stderr)
        return exc.code
    except KeyboardInterrupt:
        print("wavlm-live: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        raise  # handled by main()
    except Exception as exc:  # noqa: BLE001 - the last line of defence: one line, no traceback
        logging.getLogger("wavlm_live").debug("unexpected error", exc_info=True)
        hint = "" if args.verbose >= 2 else " (run with -vv for the traceback)"
        print(f"wavlm-live: unexpected error: {type(exc).__name__}: {exc}{hint}", file=sys.stderr)
        return EXIT_FAILURE


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
