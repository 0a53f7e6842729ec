"""Errors that carry a message meant for the user: what is wrong, where, and how to fix it."""


class LegatoError(ValueError):
    """Base class: the CLI prints these as one line and exits non-zero."""


class DataError(LegatoError):
    """A data file or frame is unusable (names the file, frame and problem)."""


class ConfigError(LegatoError):
    """An option or configuration key is invalid (names the key and the valid choices)."""
