"""The exception type raised by :mod:`infodistill.data` for unusable data, and its case for an
option a data set does not take."""

from ..errors import InfodistillError


class DataError(InfodistillError, ValueError):
    """A data set is missing, truncated, malformed or otherwise unusable.

    The message is a single line that names the file or directory at fault and the problem, and,
    where the data is missing, how to obtain it. Subclassing :class:`ValueError` lets callers that
    only know about built-in exceptions still catch it.
    """


class DataOptionError(DataError):
    """An option (keyword argument) that the named data set's loader does not take; the message
    names the data set's options. A caller that reads the options from a config key (``data.kwargs``)
    can name that key in its own message."""
