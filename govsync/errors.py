"""The one failure every operator command may end with.

Each layer names its own failures as subclasses (``StackError`` from the embedded stack,
``ReplayError``, ``NotApplied``, …); the CLI turns any of them into one clear line and
exit code 1 instead of a traceback.
"""

from __future__ import annotations


class OperationFailed(RuntimeError):
    """A command could not do what it was asked; the message says why."""
