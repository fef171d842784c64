"""Errors shared by every layer. Bad input (never retried) is kept apart from transient failures."""


class BatchscoreError(Exception):
    """Base class of every error batchscore raises on purpose."""


class ConfigError(BatchscoreError):
    """The deployment file or a command-line setting is wrong; the message names the file and the setting."""


class BadInputError(BatchscoreError):
    """An input object cannot be read as what it claims to be; retrying will not help."""


class TransientError(BatchscoreError):
    """A call to AWS (or the emulator) failed in a way that may succeed when tried again."""
