"""Errors every command shares, below the command-line modules that raise them and the one that prints them."""

from __future__ import annotations


class CommandError(Exception):
    """A runtime failure the user can act on: printed as one line on stderr, exit code 1."""

    exit_code = 1
