"""The one exception type of ``training/``: a problem the user can fix, said in one line.

Bad config files or overrides, missing or malformed data, a checkpoint that does not match the
config, a run that cannot go on (out of memory, a non-finite loss), a ship that fails its checks:
all raise ``TrainingError``, which ``python -m training`` prints as ``error: <message>`` with exit
status 2. It is a ``CompsearchError``, so code that drives both the library and the recipe catches
one type. Programming errors (an unknown objective passed by code, not by a config) stay built-in
exceptions with tracebacks.
"""

from __future__ import annotations

from compsearch.errors import CompsearchError


class TrainingError(CompsearchError):
    """Training cannot go on; the message says what to change."""
