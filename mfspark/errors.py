"""The base class of mfspark's errors about bad parameters, settings and input.

MLlib's ALS reports a bad parameter as pyspark's ``IllegalArgumentException``; Python code
expects a ``ValueError``.  :class:`MfsparkValueError` is both, so that code written for
either catches mfspark's errors unchanged (``except ValueError`` and
``except IllegalArgumentException`` alike).  ``str(err)`` is the plain message.
"""

from __future__ import annotations

from typing import Any

from pyspark.errors import IllegalArgumentException


class MfsparkValueError(ValueError, IllegalArgumentException):
    """A parameter, setting or input is invalid; the message names it, the value found and
    what is expected.

    ``ValueError`` comes first in the method order, so ``args``, ``str`` and pickling are a
    plain ``ValueError``'s; the ``PySparkException`` state is initialised too (no error
    class: ``getCondition()`` is None and ``getMessage()`` is the message).
    """

    def __init__(self, message: str = "", *args: Any) -> None:
        ValueError.__init__(self, message, *args)
        IllegalArgumentException.__init__(self, message=str(message))

    def __str__(self) -> str:
        return ValueError.__str__(self)

    def getMessage(self) -> str:
        """The message, as ``str(err)`` (``PySparkException`` would prefix its error
        class, which these errors do not have)."""
        return str(self)
