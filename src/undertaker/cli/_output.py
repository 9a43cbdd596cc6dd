"""Standard output that says when writing fails, for the front ends' exit status.

``print`` to a full disk (``> /dev/full``) or a closed pipe (``| head -1``)
raises ``OSError`` from deep inside a formatter, where it is hard to tell
from a failed read of ``/proc``. Writes go through :class:`TaggedOutput`,
which turns their failures into :class:`OutputFailed`, so ``main`` can end
with one line and the right status.
"""

from __future__ import annotations

import os
from typing import TextIO


class OutputFailed(Exception):
    """Writing to standard output failed; ``error`` is the ``OSError``."""

    def __init__(self, error: OSError) -> None:
        """Keep the original error."""
        super().__init__(error.strerror or str(error))
        self.error = error


class TaggedOutput:
    """A proxy for a text stream whose write errors become :class:`OutputFailed`."""

    def __init__(self, stream: TextIO) -> None:
        """Wrap *stream* (normally ``sys.stdout``)."""
        self.stream = stream

    def write(self, text: str) -> int:
        """Write *text*, tagging a failure."""
        try:
            return self.stream.write(text)
        except OSError as err:
            raise OutputFailed(err) from None

    def flush(self) -> None:
        """Flush, tagging a failure."""
        try:
            self.stream.flush()
        except OSError as err:
            raise OutputFailed(err) from None

    def __getattr__(self, name: str) -> object:
        """Everything else (``isatty``, ``encoding``, ``fileno``) is the stream's."""
        return getattr(self.stream, name)


def discard_output(stream: TextIO) -> None:
    """Point *stream*'s descriptor at /dev/null: the flush at exit must not fail again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, stream.fileno())
    finally:
        os.close(devnull)
