"""The root of kdns's exceptions.

Every module declares its own exceptions at its top, subclassing KdnsError; the class
docstring is the default message, so `raise SomeError()` still says something useful.
"""


class KdnsError(Exception):
    """kdns failed."""

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or (self.__doc__ or "").strip())
