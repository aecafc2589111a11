"""The one exception type raised by :mod:`infodistill.data` for unusable data."""

from ..errors import InfodistillError


class DataError(InfodistillError, ValueError):
    """A data set is missing, truncated, malformed or otherwise unusable.

    The message is a single line that names the file or directory at fault and the problem, and,
    where the data is missing, how to obtain it. Subclassing :class:`ValueError` lets callers that
    only know about built-in exceptions still catch it.
    """
