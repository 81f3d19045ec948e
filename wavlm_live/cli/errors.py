"""User-facing errors of the command line and its exit statuses (no imports)."""

from __future__ import annotations

EXIT_OK = 0
"""Success."""
EXIT_FAILURE = 1
"""The command could not do its work: an input that cannot be read or decoded, a model
that cannot be loaded, results that exist already (without ``--force``) or cannot be
written, a failed connection, no input device found, an unexpected error."""
EXIT_USAGE = 2
"""The command line is wrong: an unknown option, a bad value, options that contradict
each other (argparse's own status for its errors)."""
EXIT_INTERRUPTED = 130
"""Interrupted by Ctrl-C (SIGINT), as shells report a process ended by it."""
EXIT_BROKEN_PIPE = 141
"""Standard output was closed before everything was written (``wavlm-live listen | head``):
the status of a process ended by SIGPIPE, as ``yes | head`` leaves it."""


class CliError(Exception):
    """A user-facing error: printed as one line; exit status :data:`EXIT_FAILURE`."""

    code = EXIT_FAILURE


class UsageError(CliError):
    """The command line itself is wrong (a bad option value or combination): printed as
    one line; exit status :data:`EXIT_USAGE`, like argparse's own errors."""

    code = EXIT_USAGE
