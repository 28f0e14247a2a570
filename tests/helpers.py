"""Shared test helpers (the tests folder is on sys.path under pytest)."""

import contextlib

# Narrow widths keep the paper's structure but make CPU tests quick.
TINY = {
    "ppm_bin_channels": 8,
    "ppm_channels": 16,
    "top_channels": 16,
    "mid_channels": 8,
    "high_channels": 8,
    "aux_channels": 8,
}


def free_port() -> int:
    """A TCP port on localhost that nothing listens on right now."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def launched_app(settings):
    """The app of ``settings`` served on localhost in this process (analytics off); yields the Blocks."""
    import pytest

    from demo.ui import build_demo

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GRADIO_ANALYTICS_ENABLED", "False")
        demo = build_demo(settings)
        demo.launch(server_name="127.0.0.1", server_port=settings.port, prevent_thread_lock=True, quiet=True)
        try:
            yield demo
        finally:
            demo.close()
