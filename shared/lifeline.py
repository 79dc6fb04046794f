"""Child processes that never outlive the process that started them.

A launcher may die without running its clean-up (SIGKILL, a crash, an OOM kill); its
children must then stop on their own instead of holding the suite's ports. On Linux the
kernel does it: ``PR_SET_PDEATHSIG`` asks for a signal when the parent goes. It is set in the
child between fork and exec (after any change of user, which would clear it).
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
from collections.abc import Callable

_PR_SET_PDEATHSIG = 1


def die_with_parent(sig: int = signal.SIGTERM) -> Callable[[], None]:
    """A ``preexec_fn`` for :class:`subprocess.Popen`: the child gets ``sig`` when this
    process dies (and exits at once if this process is already gone)."""
    parent = os.getpid()

    def arm() -> None:
        if sys.platform.startswith("linux"):
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, sig)
        if os.getppid() != parent:
            # The parent died between the fork and the prctl: nobody would signal us.
            os._exit(1)

    return arm
