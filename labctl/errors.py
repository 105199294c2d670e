"""Errors that end a command with a one-line message instead of a traceback."""

from __future__ import annotations


class UsageError(Exception):
    """Bad input (unknown lab, invalid count, malformed option): exit code 2, nothing started."""

    exit_code = 2
