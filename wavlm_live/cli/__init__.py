"""The ``wavlm-live`` command line (``main``), its parser and errors, and the assembly of
models, engine, sources, server and dashboard that its commands (:mod:`.commands`) run.

Layout: :mod:`.defaults` and :mod:`.errors` (leaves), :mod:`.parser` (options),
:mod:`.app` (assembly), :mod:`.evaluate` (``eval``), :mod:`.commands` (one module per
group of subcommands), :mod:`.main` (the console script). Imports go one way, from
``main`` down to the leaves.
"""

from .defaults import DEFAULT_MODELS, TOKEN_ENV
from .errors import (EXIT_BROKEN_PIPE, EXIT_FAILURE, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, CliError,
                     UsageError)
from .main import main
from .parser import build_parser

__all__ = ["DEFAULT_MODELS", "EXIT_BROKEN_PIPE", "EXIT_FAILURE", "EXIT_INTERRUPTED", "EXIT_OK", "EXIT_USAGE",
           "TOKEN_ENV", "CliError", "UsageError", "build_parser", "main"]
