"""The package version (a leaf module: every part may import it)."""

__version__ = "0.1.0"
