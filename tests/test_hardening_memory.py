"""Memory follows the working size, not the upload's: reduced decoding, bounded saves, thumbnails and editor layers.

The figures of the whole app under hostile uploads come from ``experiments/probe_memory.py`` (peak
resident memory, in docs/reliability.md); these tests pin down each mechanism,
measuring numpy's allocations with ``tracemalloc`` where a full-resolution copy would show.
"""

from __future__ import annotations

import io
import tracemalloc
from pathlib import Path

import gradio as gr
import numpy as np
import pytest
from gradio.data_classes import FileData
from PIL import Image

from demo.context import Thumbnails
from demo.session import Session, read_upload
from demo.settings import Settings, parse_args
from demo.widgets import bound_layers, check_layer_size, editor_max_pixels
from ssfnet.data.corrections import load_correction, save_correction
from ssfnet.geometry import long_side_size, resize_image
from ssfnet.io import image_size, overlay, read_image
from ssfnet.labels import get_label_set

LIP = get_label_set("lip-20")


def gradient(h: int, w: int) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w]
    return np.stack([xx * 255 // (w - 1), yy * 255 // (h - 1), (xx // 7 + yy // 5) % 256], -1).astype(np.uint8)


def traced_peak_mb(fn):
    """``fn()`` and the peak of what numpy allocated meanwhile, in MB."""
    tracemalloc.start()
    try:
        result = fn()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return result, peak / 1e6


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_reduced_decode_gives_the_working_size_and_the_same_picture(tmp_path, fmt):
    full = gradient(1500, 2000)
    path = tmp_path / f"photo.{fmt.lower()}"
    Image.fromarray(full).save(path, format=fmt, **({"quality": 95} if fmt == "JPEG" else {}))
    small = read_image(path, max_side=300)
    assert small.shape == (*long_side_size(1500, 2000, 300), 3) == (225, 300, 3)
    assert small.flags.writeable
    reference = resize_image(read_image(path), small.shape[:2])
    assert np.abs(small.astype(int) - reference.astype(int)).mean() < 2.0
    # Never enlarged, and identical to the plain decode when no reduction is needed.
    np.testing.assert_array_equal(read_image(path, max_side=4000), read_image(path))


def test_reduced_decode_turns_exif_rotated_photos_upright(tmp_path):
    full = gradient(300, 800)
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways: shown turned a quarter
    path = tmp_path / "sideways.jpg"
    Image.fromarray(full).save(path, quality=95, exif=exif)
    assert image_size(path) == (800, 300)
    small = read_image(path, max_side=200)
    assert small.shape == (200, 75, 3)
    reference = resize_image(read_image(path), (200, 75))
    assert np.abs(small.astype(int) - reference.astype(int)).mean() < 3.0


def test_a_large_flat_png_is_never_held_at_full_resolution(tmp_path):
    # 6000 x 6000 of one colour: 150 KB on disk, 108 MB as an RGB array.
    path = tmp_path / "flat.png"
    Image.new("RGB", (6000, 6000), (200, 100, 50)).save(path)
    assert path.stat().st_size < 1_000_000
    (image, source), peak = traced_peak_mb(lambda: read_upload(path, max_side=1600))
    assert image.shape == (1600, 1600, 3) and source.size == (6000, 6000)
    assert (image == (200, 100, 50)).all()
    assert peak < 30, f"numpy held {peak:.0f} MB decoding a 6000 x 6000 upload at 1600 px"


def test_full_decode_holds_one_copy_of_the_pixels(tmp_path):
    path = tmp_path / "flat.png"
    Image.new("RGB", (4000, 3000), (1, 2, 3)).save(path)
    image, peak = traced_peak_mb(lambda: read_image(path))
    assert image.shape == (3000, 4000, 3) and image.flags.writeable
    # The array plus a 4 MB strip in transit (np.asarray(img).copy() held two full copies).
    assert peak < image.nbytes / 1e6 + 10, f"numpy held {peak:.0f} MB for a {image.nbytes / 1e6:.0f} MB image"


def large_session(tmp_path: Path, side: int = 6000) -> tuple[Session, Path]:
    path = tmp_path / "big.png"
    Image.new("RGB", (side, side), (90, 90, 90)).save(path)
    image, source = read_upload(path, max_side=1600)
    proposal = np.zeros(image.shape[:2], np.uint8)
    session = Session.start(image, source, proposal, LIP, model="tiny")
    edited = proposal.copy()
    edited[400:1200, 500:1100] = LIP.id_of("upper-clothes")
    session.edit(edited, "test")
    return session, path


def test_saving_a_large_photo_stores_its_bytes_without_decoding_them(tmp_path, monkeypatch):
    session, path = large_session(tmp_path)
    monkeypatch.setattr(type(session.source), "full_image", lambda self: pytest.fail("decoded the full photo"))
    record, peak = traced_peak_mb(lambda: session.save(tmp_path / "corr"))
    # The labels at full size (36 MB) and their PNG encoding; no image array at all.
    assert peak < 100, f"numpy held {peak:.0f} MB saving a 6000 x 6000 photo"
    assert (tmp_path / "corr" / "images" / f"{record}.png").read_bytes() == path.read_bytes()
    image, labels, _ = load_correction(tmp_path / "corr", record)
    assert labels.shape == image.shape[:2] == (6000, 6000)
    assert (labels[1600:4400, 2000:4000] == LIP.id_of("upper-clothes")).all()


def test_save_correction_without_an_image_checks_the_bytes_size(tmp_path):
    data = io.BytesIO()
    Image.new("RGB", (40, 30)).save(data, format="PNG")
    labels = np.zeros((30, 40), np.uint8)
    record = save_correction(tmp_path, None, labels, LIP, image_bytes=data.getvalue())
    assert load_correction(tmp_path, record)[0].shape == (30, 40, 3)
    with pytest.raises(ValueError, match="decode to 40x30 but the labels are 41x30"):
        save_correction(tmp_path, None, np.zeros((30, 41), np.uint8), LIP, image_bytes=data.getvalue())
    with pytest.raises(ValueError, match="needs the image or its image_bytes"):
        save_correction(tmp_path, None, labels, LIP)


def test_thumbnails_and_reduced_records_are_made_from_a_small_copy(tmp_path, monkeypatch):
    session, _ = large_session(tmp_path)
    record = session.save(tmp_path / "corr")
    (image, labels, _), peak = traced_peak_mb(lambda: load_correction(tmp_path / "corr", record, max_side=256))
    assert image.shape == (256, 256, 3) and labels.shape == (256, 256)
    assert (labels[70:185, 85:170] == LIP.id_of("upper-clothes")).all()
    # The stored label map is read whole (36 MB, uint8); never the image nor a float copy.
    assert peak < 80, f"numpy held {peak:.0f} MB for a 256 px view of a 6000 x 6000 record"
    thumbs = Thumbnails(size=256)
    meta = {"id": record, "label_set": "lip-20"}
    tile = Image.open(thumbs.get(tmp_path / "corr", meta))
    assert tile.size == (256, 256)


def test_overlay_in_8_bit_matches_the_float_blend_and_hides(tmp_path):
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)
    labels = rng.integers(0, LIP.num_classes, (40, 50), dtype=np.uint8)
    out = overlay(image, labels, LIP, alpha=0.3, hidden=frozenset({0}))
    expected = np.clip(0.7 * image + 0.3 * LIP.colourise(labels).astype(float) + 0.5, 0, 255).astype(np.uint8)
    expected[labels == 0] = image[labels == 0]
    assert out.dtype == np.uint8 and np.abs(out.astype(int) - expected.astype(int)).max() <= 1
    np.testing.assert_array_equal(out[labels == 0], image[labels == 0])


def layer_file(tmp_path: Path, w: int, h: int) -> FileData:
    path = tmp_path / f"layer-{w}x{h}.png"
    Image.new("RGBA", (w, h), (0, 0, 0, 0)).save(path)
    return FileData(path=str(path), orig_name=path.name)


def test_editor_layers_beyond_the_limit_are_refused_from_their_header(tmp_path, monkeypatch):
    editor = bound_layers(gr.ImageEditor(type="numpy", image_mode="RGBA", elem_id="probe"), editor_max_pixels(100))
    assert editor.get_block_name() == "imageeditor"
    # Gradio rebuilds an updated component from its constructor arguments: the limit holds for it too.
    editor = type(editor)(**editor.constructor_args)
    ok = editor.convert_and_format_image(layer_file(tmp_path, 150, 120))
    assert isinstance(ok, np.ndarray) and ok.shape == (120, 150, 4)
    huge = layer_file(tmp_path, 13000, 13000)
    monkeypatch.setattr(Image.Image, "load", lambda self: pytest.fail("decoded the layer"))
    with pytest.raises(gr.Error, match="13000x13000 layer"):
        editor.convert_and_format_image(huge)
    with pytest.raises(gr.Error, match="not a readable image"):
        check_layer_size(b"not an image", 10)


def test_sessions_expire_and_the_queue_is_bounded(tmp_path):
    from helpers import app_settings

    from demo.ui import build_demo

    settings = parse_args(["--session-minutes", "5", "--queue-size", "7"], env={})
    assert (settings.session_minutes, settings.queue_size) == (5, 7)
    assert Settings().session_minutes == 120
    demo = build_demo(app_settings(tmp_path, session_minutes=5, queue_size=7))
    states = [b for b in demo.blocks.values() if isinstance(b, gr.State)]
    # Every per-user value (the open photo, its zoom, the gallery's ids, the queue position) expires.
    assert len(states) >= 3 and all(s.time_to_live == 300 for s in states)
    assert demo._queue.max_size == 7


def test_a_huge_layer_is_refused_through_the_api_after_a_photo_was_opened(tmp_path):
    from gradio_client import Client, handle_file
    from gradio_client.exceptions import AppError
    from helpers import app_settings, launched_app

    photo = Path(__file__).resolve().parents[1] / "assets" / "examples" / "ccp_0046.jpg"
    layer = tmp_path / "layer.png"
    Image.new("RGBA", (5000, 5000), (0, 0, 0, 0)).save(layer)
    settings = app_settings(tmp_path, max_side=800)
    with launched_app(settings):
        client = Client(f"http://127.0.0.1:{settings.port}/", verbose=False, analytics_enabled=False)
        # Opening a photo makes Gradio rebuild the editor (new background and brush).
        client.predict(handle_file(str(photo)), None, False, False, 0.5, ["0"], api_name="/parse")
        editor = {"background": handle_file(str(photo)), "layers": [handle_file(str(layer))], "composite": None}
        with pytest.raises(AppError, match="5000x5000 layer"):
            client.predict(editor, 0.5, ["0"], api_name="/apply_strokes")


class _Held:
    """A stand-in for a user's open photo, whose lifetime a weak reference can watch."""


def _closed_session_outlives(expire: bool, wait_s: float) -> bool:
    """Whether the state of an API client that set it and left is still held ``wait_s`` after it left."""
    import time
    import weakref

    from gradio_client import Client
    from helpers import free_port

    from demo.memory import expire_closed_sessions

    held: list[weakref.ref] = []

    def open_photo(_state):
        obj = _Held()
        held.append(weakref.ref(obj))
        return obj, "opened"

    with gr.Blocks() as demo:
        state = gr.State(None, time_to_live=4)
        out = gr.Textbox()
        gr.Button().click(open_photo, state, [state, out], api_name="open")
        if expire:
            expire_closed_sessions(demo, 4)
    port = free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    try:
        client = Client(f"http://127.0.0.1:{port}/", verbose=False, analytics_enabled=False)
        assert client.predict(api_name="/open") == "opened"
        client.close()  # the heartbeat ends: Gradio marks the session closed
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline and held[0]() is not None:
            time.sleep(0.2)
        return held[0]() is not None
    finally:
        demo.close()


def test_a_closed_session_forgets_its_state_after_the_apps_idle_time_not_gradios_hour(tmp_path, monkeypatch):
    from helpers import app_settings

    from demo.ui import build_demo

    monkeypatch.setenv("GRADIO_ANALYTICS_ENABLED", "False")
    monkeypatch.setenv("GRADIO_HEARTBEAT_INTERVAL", "0.5")  # a client's leaving is noticed within a second
    # Without the cap Gradio keeps a closed session's state for an hour, whatever its time-to-live
    # (forty API clients that parsed a photo each held about 400 MB after they left).
    assert _closed_session_outlives(expire=False, wait_s=8)
    assert not _closed_session_outlives(expire=True, wait_s=20)
    # The app registers the cap.
    demo = build_demo(app_settings(tmp_path))
    assert any(t[1] == "unload" for dep in demo.fns.values() for t in dep.targets)


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) / 1024 for line in f if line.startswith("VmRSS:"))


def test_freed_memory_goes_back_to_the_system():
    from demo.memory import release_free_memory, start_trimmer

    if not Path("/proc/self/status").exists() or not release_free_memory():
        pytest.skip("needs Linux with glibc's malloc_trim")
    # 160 MB in 4 KB blocks (the C allocator's, not Python's small-object one); every 64th is kept,
    # which pins the freed memory between them in the heap.
    blocks = [bytearray(4096) for _ in range(40_000)]
    kept = blocks[::64]
    del blocks
    before = _rss_mb()
    assert release_free_memory()
    assert _rss_mb() < before - 80, "malloc_trim returned less than half of 160 MB freed"
    assert start_trimmer() and start_trimmer()  # idempotent: one thread per process
    import threading

    assert sum(t.name == "ssfnet-malloc-trim" for t in threading.enumerate()) == 1
    del kept


def test_model_runs_happen_on_the_models_own_threads_and_directly_after_a_fork():
    import os
    import threading

    from demo.models import in_model_thread, set_model_threads

    set_model_threads(2)
    names = {in_model_thread(lambda: threading.current_thread().name) for _ in range(6)}
    assert names and all(name.startswith("ssfnet-model") for name in names) and len(names) <= 2
    pid = os.fork()
    if pid == 0:  # a forked copy of the pool has no threads: the call must not wait for one
        os._exit(0 if in_model_thread(lambda: 41 + 1) == 42 else 1)
    import signal
    import time

    deadline = time.monotonic() + 30
    while (done := os.waitpid(pid, os.WNOHANG))[0] == 0:
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            pytest.fail("the forked process waited for a model thread that does not exist")
        time.sleep(0.05)
    assert os.waitstatus_to_exitcode(done[1]) == 0


def png_with_late_exif(full: np.ndarray, orientation: int) -> bytes:
    """A PNG of ``full`` whose EXIF orientation sits in an ``eXIf`` chunk after the pixels (the PNG spec allows it)."""
    import struct
    import zlib

    buffer = io.BytesIO()
    Image.fromarray(full).save(buffer, format="PNG")
    data = buffer.getvalue()
    exif = Image.Exif()
    exif[0x0112] = orientation
    payload = exif.tobytes()[len(b"Exif\x00\x00") :] if exif.tobytes().startswith(b"Exif") else exif.tobytes()
    chunk = struct.pack(">I", len(payload)) + b"eXIf" + payload + struct.pack(">I", zlib.crc32(b"eXIf" + payload))
    end = data.rindex(b"IEND") - 4
    return data[:end] + chunk + data[end:]


def count_decodes(monkeypatch) -> list:
    """Every full decode of a PNG from now on appends to the returned list."""
    from PIL import PngImagePlugin

    calls, load = [], PngImagePlugin.PngImageFile.load

    def counted(self):
        if self._im is None:
            calls.append(self.size)
        return load(self)

    monkeypatch.setattr(PngImagePlugin.PngImageFile, "load", counted)
    return calls


def test_an_upload_is_decoded_once_and_its_header_size_decodes_nothing(tmp_path, monkeypatch):
    path = tmp_path / "big.png"
    Image.fromarray(gradient(1200, 2000)).save(path)
    calls = count_decodes(monkeypatch)
    assert image_size(path) == (1200, 2000) and calls == []
    image, source = read_upload(path, max_side=500)
    assert calls == [(2000, 1200)], "the upload was decoded more than once"
    assert image.shape == (300, 500, 3) and source.size == (1200, 2000)


@pytest.mark.parametrize("max_side", [None, 300])
def test_a_png_with_its_orientation_after_the_pixels_is_turned_and_sized_alike(tmp_path, max_side):
    path = tmp_path / "late.png"
    path.write_bytes(png_with_late_exif(gradient(300, 800), orientation=6))
    with Image.open(path) as im:
        assert "exif" not in im.info  # not in the header: only a decode finds it
    image, source = read_upload(path, max_side=max_side)
    assert source.size == (800, 300), "the full size must be the upright one, as the picture is"
    assert image.shape[:2] == ((800, 300) if max_side is None else (300, 112))
    np.testing.assert_array_equal(read_image(path), np.rot90(gradient(300, 800), -1))
