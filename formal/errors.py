"""The one family of errors that mean "the input is malformed or outside what the model
covers".  The command line maps every `InputError` to exit status 3 in one place
(formal.cli.main); any other exception is a bug in flushproof, never reported as bad input.
This module imports nothing, so every layer may raise these."""

from __future__ import annotations


class InputError(Exception):
    """The input cannot be checked; the message names the file, event or field."""


class Malformed(InputError):
    """An input file, command-line value or policy file is not well formed."""


class NotModeled(InputError):
    """The input is well formed but reaches a situation the model does not cover (an event
    KVM blocks or the project does not model, a register value beyond the model's limits)."""
