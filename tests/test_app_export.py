"""The app's export button (issue 36): the corrections store as a zip in each format, on the handler alone."""

from __future__ import annotations

import errno
import json
import zipfile
from pathlib import Path
from types import SimpleNamespace

import gradio as gr
import numpy as np
import pytest

from demo import panel_gallery
from demo.panel_gallery import EXPORT_FORMATS, GalleryHandlers
from demo.render import Scratch
from ssfnet.data.corrections import list_corrections, save_correction
from ssfnet.labels import get_label_set

LIP = get_label_set("lip-20")


@pytest.fixture
def warned(monkeypatch):
    said = []
    monkeypatch.setattr(gr, "Warning", lambda message, *a, **k: said.append(message))
    return said


def gallery(root: Path) -> GalleryHandlers:
    settings = SimpleNamespace(
        corrections_dir=root, runs_dir=root / "runs", checkpoints_dir=root / "ckpt", checkpoint=None
    )
    ui = SimpleNamespace(export_file="file", message="message")
    app = SimpleNamespace(ui=ui, settings=settings, corrections_dir=root, scratch=Scratch())
    return GalleryHandlers(app)


def a_store(root: Path) -> list[str]:
    labels = np.zeros((12, 16), np.uint8)
    labels[2:10, 3:7] = LIP.id_of("coat")
    labels[2:10, 9:13] = LIP.id_of("coat")
    image = np.full((12, 16, 3), 90, np.uint8)
    first = save_correction(root, image, labels, LIP)
    persons = np.where(labels > 0, 1, 0).astype(np.uint8)
    persons[:, 8:] *= 2
    second = save_correction(root, image, labels, LIP, persons=persons, parent=first)
    return [first, second]


def files_before(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("choice", list(EXPORT_FORMATS))
def test_each_format_gives_a_zip_and_leaves_the_store_alone(tmp_path, choice):
    root = tmp_path / "store"
    first, second = a_store(root)
    before = files_before(root)
    handlers = gallery(root)  # the scratch folder lives as long as the app (here: the handlers)
    out = handlers.export_as(choice)
    path = Path(out["file"])
    names = zipfile.ZipFile(path).namelist()
    fmt = EXPORT_FORMATS[choice]
    expected = {
        "store": f"persons/{second}.png",
        "coco": "instances.json",
        "cvat": "labelmap.txt",
        "labelstudio": "tasks.json",
        "cihp": f"Training/Human_ids/{second}.png",
    }[fmt]
    assert expected in names and path.name.startswith(f"corrections-{fmt}-")
    assert not [n for n in path.parent.iterdir() if n.name.startswith(".")]  # no temporaries left
    assert ("Exported 2 records" if fmt == "store" else "Exported 1 record ") in out["message"]
    if fmt == "coco":
        document = json.loads(zipfile.ZipFile(path).read("instances.json"))
        assert {a.get("person_id") for a in document["annotations"]} == {None, 1, 2}
        assert f"images/{second}.png" in names
    assert files_before(root) == before
    # Every version when superseded ones are shown (the format's value is taken too).
    if fmt != "store":
        assert "Exported 2 records" in handlers.export_as(fmt, True)["message"]


def test_an_empty_store_says_so(tmp_path, warned):
    out = gallery(tmp_path / "empty").export_as("cihp")
    assert out["file"] == gr.skip() and "Nothing to export" in out["message"]
    assert "No saved corrections" in warned[0]
    with pytest.raises(gr.Error, match="unknown export format"):
        gallery(tmp_path).export_as("tiff")


def test_a_full_disk_removes_the_partial_export_and_says_so(tmp_path, monkeypatch, warned):
    root = tmp_path / "store"
    a_store(root)
    before = files_before(root)
    handlers = gallery(root)
    written = []

    def full(root, fmt, out, **options):
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_bytes(b"half")
        written.append(Path(out))
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(panel_gallery, "export_corrections", full)
    for choice in ("coco", "cvat"):
        out = handlers.export_as(choice)
        assert out["file"] == gr.skip() and "disk of the app's scratch folder is full" in out["message"]
        assert "unchanged" in out["message"] and "Export failed" in warned[-1]
    assert written and not any(p.exists() for p in written)
    assert files_before(root) == before and len(list_corrections(root)) == 2


def test_a_record_that_cannot_be_read_is_named(tmp_path, warned):
    root = tmp_path / "store"
    first, second = a_store(root)
    (root / "labels" / f"{second}.png").write_bytes(b"not a png")
    out = gallery(root).export_as("cvat")
    assert out["file"] == gr.skip() and f"correction {second}" in out["message"]
