"""The app on the onnxruntime backend: its parse gives the PyTorch model's labels; a bad setting is refused."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from gradio_client import Client, handle_file
from helpers import TINY, app_settings, launched_app
from PIL import Image

from demo.models import Predictors
from demo.settings import parse_args
from ssfnet import build_model, save_checkpoint
from ssfnet.io import read_image
from ssfnet.onnx_predictor import OnnxPredictor
from ssfnet.predictor import load_predictor

PHOTO = Path(__file__).resolve().parents[1] / "assets" / "examples" / "ccp_0313.jpg"


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("app-onnx")
    torch.manual_seed(0)
    model = build_model("ssfnet_lite", 20, **TINY)
    options = {"variant": "ssfnet_lite", "label_set": "lip-20", "options": TINY, "metadata": {"input_size": 64}}
    save_checkpoint(model, root / "checkpoints" / "tiny", **options)
    return root


def test_the_apps_parse_runs_on_onnxruntime(root, monkeypatch):
    monkeypatch.setenv("SSFNET_CACHE_DIR", str(root / "cache"))
    settings = app_settings(root, backend="onnxruntime")
    with launched_app(settings):
        client = Client(f"http://127.0.0.1:{settings.port}/", verbose=False, analytics_enabled=False)
        result = client.predict(handle_file(str(PHOTO)), None, False, False, 0.5, ["0"], api_name="/parse")
    downloads, message = result[3], result[-1]
    assert "Parsed" in message and "tiny" in message
    with Image.open(next(p for p in downloads if p.endswith("_labels.png"))) as im:
        labels = np.array(im)
    expected = load_predictor(root / "checkpoints" / "tiny", device="cpu", precision="fp32").predict(read_image(PHOTO))
    assert labels.shape == expected.shape and (labels == expected).mean() >= 0.995
    assert list((root / "cache" / "onnx").glob("tiny-*.onnx"))  # exported on first use


def test_predictors_on_onnxruntime_run_on_the_cpu_and_say_so(root, monkeypatch):
    monkeypatch.setenv("SSFNET_CACHE_DIR", str(root / "cache"))
    predictors = Predictors(root / "checkpoints", root / "checkpoints" / "tiny", "cuda", backend="onnxruntime")
    assert predictors.device.type == "cpu" and "onnxruntime" in predictors.device_description()
    assert isinstance(predictors.get(predictors.default()), OnnxPredictor)


def test_the_backend_setting_takes_torch_or_onnxruntime_only():
    assert parse_args([]).backend == "torch"
    assert parse_args(["--backend", "onnxruntime"]).backend == "onnxruntime"
    assert parse_args([], env={"SSFNET_BACKEND": "onnxruntime"}).backend == "onnxruntime"
    for argv, env in [(["--backend", "tensorrt"], {}), ([], {"SSFNET_BACKEND": "tensorrt"})]:
        with pytest.raises(SystemExit):
            parse_args(argv, env=env)
