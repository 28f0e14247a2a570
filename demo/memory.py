"""Giving freed memory back to the system, so that a long-running app's footprint follows its live users.

A parse of a large photo or forty users' sessions free hundreds of MB when they end (sessions
expire after ``--session-minutes``), but glibc's allocator keeps freed blocks in its per-thread
arenas, and Gradio runs handlers on many threads: the app's resident memory then only grows.
:func:`start_trimmer` asks the allocator every half minute to return what is free
(``malloc_trim``). Elsewhere than glibc it does nothing.

Gradio keeps the state of a *closed* session (the tab closed, the API client gone) for an
hour, whatever the states' own ``time_to_live``: forty API clients that each parsed a photo
and left held about 10 MB each for that hour. :func:`expire_closed_sessions` makes a closed
session's state expire after the app's own idle time when that is shorter.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import threading
from typing import Any

import gradio as gr

logger = logging.getLogger(__name__)

_started = threading.Event()


def _malloc_trim():
    """glibc's ``malloc_trim``, or None where the C library has none."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return libc.malloc_trim
    except (OSError, AttributeError):
        return None


def release_free_memory() -> bool:
    """Return the allocator's free memory to the system now; False where that cannot be done."""
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True


def start_trimmer(interval_s: float = 30.0) -> bool:
    """Start (once per process) a daemon thread that calls :func:`release_free_memory` every ``interval_s``.

    Returns:
        Whether a trimmer runs (False where the C library cannot trim).
    """
    trim = _malloc_trim()
    if trim is None:
        return False
    if _started.is_set():
        return True
    _started.set()

    def run() -> None:
        stop = threading.Event()
        while not stop.wait(interval_s):
            trim(0)

    threading.Thread(target=run, name="ssfnet-malloc-trim", daemon=True).start()
    logger.debug("returning freed memory to the system every %.0f s", interval_s)
    return True


def expire_closed_sessions(demo: Any, seconds: float) -> None:
    """Forget a closed session's state after ``seconds`` (Gradio's own limit: an hour), if shorter.

    Registers a ``demo.unload`` handler (inside ``demo``'s ``with`` block): when a session
    closes, the time-to-live Gradio gives its states from then on is capped at ``seconds``.
    Where Gradio keeps its sessions elsewhere than this code knows, it says so once and
    changes nothing (states then live Gradio's hour).
    """
    warned = threading.Event()

    def unload(request: gr.Request) -> None:
        holder = getattr(demo, "state_holder", None)
        state = getattr(holder, "session_data", {}).get(request.session_hash)
        limit = getattr(state, "STATE_TTL_WHEN_CLOSED", None)
        if not isinstance(limit, (int, float)):
            if state is not None and not warned.is_set():
                warned.set()
                logger.warning("closed sessions keep their state for Gradio's hour (its session store changed)")
            return
        state.STATE_TTL_WHEN_CLOSED = min(limit, seconds)

    demo.unload(unload)
