"""undertaker: find, explain, clean up, prevent and monitor zombie processes on Linux.

The package root stays light (standard library only, nothing heavy at import)
because ``undertaker run`` starts as a container's PID 1.
"""

from undertaker._errors import AccessDenied, NoSuchProcess, ProcUnavailable, UndertakerError
from undertaker.wait import WaitStatus, signal_name

__version__ = "0.1.0"

__all__ = [
    "AccessDenied",
    "NoSuchProcess",
    "ProcUnavailable",
    "UndertakerError",
    "WaitStatus",
    "__version__",
    "signal_name",
]
