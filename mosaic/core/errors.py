"""The one exception type that means "the user gave us something we cannot use".

Anything raised as :class:`MosaicError` is reported by the command line as a single line
on stderr with a non-zero exit and no traceback; everything else is a bug and keeps its
traceback.
"""

from __future__ import annotations


class MosaicError(Exception):
    """A user error: bad path, malformed dataset, incompatible file, impossible setting.

    The message should name the problem and the fix in one line, e.g.
    ``"no query/ folder in /data/market: point ROOT at the Market-1501-v15.09.15 folder"``.
    """

    exit_code = 2
