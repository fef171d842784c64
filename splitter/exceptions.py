"""Errors of the splitter. CorruptInputError is bad input (never retried); the message names the file."""


class SplitError(Exception):
    """Splitting failed; no half-written shard is left behind."""


class CorruptInputError(SplitError):
    """The file is not what its format says (corrupt gzip or Parquet, an unterminated quote, ...)."""
