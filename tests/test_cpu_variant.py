"""The CPU-first pieces: EfficientNet-Lite0 weights, output strides, native-resolution heads, bf16."""

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from helpers import TINY
from PIL import Image

from ssfnet import build_model, get_label_set
from ssfnet.losses import ParsingLoss, labels_at, partial_cross_entropy
from ssfnet.modeling.efficientnet import EfficientNetLite0, map_lite0_state, packaged_weights_path
from ssfnet.modeling.peers import PEERS
from ssfnet.precision import autocast, use_bf16

FUR_COAT = 568  # ImageNet class index


@pytest.fixture(scope="module")
def lite0_file():
    try:
        return packaged_weights_path()
    except FileNotFoundError as err:
        pytest.skip(str(err))


def test_every_backbone_tensor_is_mapped_with_equal_shapes(lite0_file):
    source = torch.load(lite0_file, map_location="cpu", weights_only=True)
    backbone = EfficientNetLite0()
    target = backbone.body.state_dict()
    mapped = map_lite0_state(source, target)
    assert set(mapped) == set(target)
    assert all(mapped[k].shape == target[k].shape for k in target)
    assert backbone.load_imagenet_weights(lite0_file) == len(target)
    loaded = backbone.body.state_dict()
    assert torch.equal(loaded["conv_stem.weight"], source["_conv_stem.weight"])
    last_conv = [k for k in target if k.endswith("conv_pwl.weight")][-1]
    assert torch.equal(loaded[last_conv], source["_blocks.15._project_conv.weight"])


def test_mapped_weights_classify_a_photo(lite0_file, dataset_dir):
    """The mapping is right only if the ImageNet classifier built from it still recognises things."""
    timm = pytest.importorskip("timm")
    photo = dataset_dir("ccp") / "photos" / "0002.jpg"
    net = timm.create_model("tf_efficientnet_lite0", pretrained=False).eval()
    source = torch.load(lite0_file, map_location="cpu", weights_only=True)
    net.load_state_dict(map_lite0_state(source, net.state_dict(), include_head=True))
    image = np.asarray(Image.open(photo).convert("RGB").resize((224, 224)), dtype=np.float32) / 255.0
    x = (torch.from_numpy(image).permute(2, 0, 1)[None] - 0.5) / 0.5
    with torch.no_grad():
        probs = net(x).softmax(1)[0]
    assert int(probs.argmax()) == FUR_COAT  # a woman in a fur coat
    assert float(probs[FUR_COAT]) > 0.5


def test_wrong_weights_file_is_refused(tmp_path):
    backbone = EfficientNetLite0()
    own = backbone.body.state_dict()
    short = {f"w{i}": v.clone() for i, v in enumerate(list(own.values())[:-3])}
    torch.save(short, tmp_path / "short.pth")
    with pytest.raises(ValueError, match="not an EfficientNet-Lite0 file"):
        backbone.load_imagenet_weights(tmp_path / "short.pth")
    swapped = {f"w{i}": v.clone() for i, v in enumerate(own.values())}
    keys = list(swapped)
    swapped[keys[0]] = torch.zeros(3, 3, 3, 3)
    torch.save(swapped, tmp_path / "swapped.pth")
    with pytest.raises(ValueError, match="does not fit"):
        backbone.load_imagenet_weights(tmp_path / "swapped.pth")


def test_backbone_weights_auto_loads_the_packaged_file(lite0_file):
    model = build_model("ssfnet_lite0", 20, backbone_weights="auto")
    source = torch.load(lite0_file, map_location="cpu", weights_only=True)
    assert torch.equal(model.backbone.body.state_dict()["conv_stem.weight"], source["_conv_stem.weight"])
    # "none" and ResNets with "auto" start from random weights without complaint.
    build_model("ssfnet_lite0", 20, backbone_weights="none")
    build_model("ssfnet_lite", 20, backbone_weights="auto", **TINY)


def test_lite0_normalises_to_minus_one_one():
    model = build_model("ssfnet_lite0", 5)
    x = torch.tensor([0, 255], dtype=torch.uint8).view(1, 1, 1, 2).expand(1, 3, 1, 2)
    assert torch.allclose(model.preprocess(x), torch.tensor([-1.0, 1.0]).view(1, 1, 1, 2).expand(1, 3, 1, 2))


def test_lite0_forward_backward_and_native_sizes():
    torch.manual_seed(0)
    model = build_model("ssfnet_lite0", 20).train()
    x = torch.randint(0, 256, (2, 3, 64, 48), dtype=torch.uint8)
    full = model(x)
    assert all(v.shape == (2, 20, 64, 48) for v in full.values())
    native = model(x, native=True)
    assert native["out"].shape[-2:] == (32, 24)  # the fusion at 1/2
    assert native["aux1"].shape[-2:] == (8, 6)  # branch-3 at 1/8
    assert native["aux2"].shape[-2:] == (4, 3)  # the 1/16 features
    sum(v.float().mean() for v in native.values()).backward()
    unused = [n for n, p in model.named_parameters() if p.grad is None]
    assert not unused, unused[:5]


@pytest.mark.parametrize("output_stride", [8, 16, 32])
def test_resnet_output_strides_keep_branch3_at_one_eighth(output_stride):
    model = build_model("ssfnet_lite", 7, output_stride=output_stride, **TINY).eval()
    feats = model.backbone(torch.rand(1, 3, 64, 64))
    assert feats["layer4"].shape[-1] == 64 // output_stride
    assert feats["layer2"].shape[-1] == 8
    with torch.no_grad():
        out = model(torch.rand(1, 3, 64, 64), native=True)
    assert out["aux1"].shape[-2:] == (8, 8)
    assert (model.to_eighth is None) == (output_stride == 8)


def test_paper_variant_is_unchanged_by_the_light_options():
    model = build_model("ssfnet_r101", 7, **TINY)
    assert model.backbone.output_stride == 8 and model.to_eighth is None
    assert not any("to_eighth" in k for k in model.state_dict())


def test_depthwise_convolutions_run_in_fp32_under_cpu_autocast():
    backbone = EfficientNetLite0().eval()
    seen = {}

    def hook(module, inputs, output):
        seen[module.groups > 1] = output.dtype

    for module in backbone.body.modules():
        if isinstance(module, torch.nn.Conv2d):
            module.register_forward_hook(hook)
    with torch.autocast("cpu", dtype=torch.bfloat16), torch.no_grad():
        backbone(torch.rand(1, 3, 32, 32))
    assert seen[True] == torch.float32 and seen[False] == torch.bfloat16
    # The swap leaves timm's parameter names untouched.
    assert "conv_stem.weight" in backbone.body.state_dict()


def test_partial_loss_matches_the_set_formula():
    torch.manual_seed(0)
    label_set = get_label_set("lip-20")
    logits = torch.randn(2, 20, 6, 5)
    target = torch.randint(0, label_set.num_ids, (2, 6, 5))
    target[0, 0, 0] = 255
    membership = torch.from_numpy(label_set.membership)
    got = partial_cross_entropy(logits, target, membership)
    log_probs = F.log_softmax(logits, 1)
    values = []
    for b, i, j in zip(*torch.nonzero(target != 255, as_tuple=True)):
        allowed = membership[target[b, i, j]]
        values.append(-torch.logsumexp(log_probs[b, allowed, i, j], 0))
    assert torch.allclose(got, torch.stack(values).mean(), atol=1e-5)


def test_labels_at_samples_block_centres():
    target = torch.arange(16).view(1, 4, 4)
    assert labels_at(target, (2, 2)).tolist() == [[[5, 7], [13, 15]]]
    assert labels_at(target, (4, 4)) is target


def test_loss_on_native_logits_equals_loss_on_labels_brought_down():
    label_set = get_label_set("lip-20")
    criterion = ParsingLoss(label_set)
    logits = {"out": torch.randn(2, 20, 8, 6), "aux1": torch.randn(2, 20, 2, 2)}
    target = torch.randint(0, label_set.num_ids, (2, 16, 12))
    total, parts = criterion(logits, target)
    expected = criterion({"out": logits["out"]}, labels_at(target, (8, 6)))[1]["out"]
    assert parts["out"] == pytest.approx(expected)
    assert torch.isfinite(total)


def test_auto_precision_is_timed_once_per_machine_model_and_size(monkeypatch, tmp_path):
    from ssfnet import precision

    monkeypatch.setenv("SSFNET_CACHE_DIR", str(tmp_path))
    model = torch.nn.Conv2d(3, 4, 3)
    timings = {False: 10.0, True: 9.8}  # bf16 2 % faster: within the margin, fp32 kept
    calls = []

    def fake_pass(model, shape, bf16, *, train, repeats=3):
        calls.append((shape, bf16, train))
        return timings[bf16]

    monkeypatch.setattr(precision, "time_pass", fake_pass)
    monkeypatch.setattr(precision, "cpu_has_fast_bf16", lambda: False)
    assert precision.choose_bf16(model, (1, 3, 32, 32), "cpu") is False and calls == []  # emulated: no timing
    monkeypatch.setattr(precision, "cpu_has_fast_bf16", lambda: True)
    assert precision.choose_bf16(model, (1, 3, 32, 32), "cpu") is False
    timings[True] = 6.0
    assert precision.choose_bf16(model, (1, 3, 32, 32), "cpu") is False  # remembered, not re-timed
    assert precision.choose_bf16(model, (1, 3, 64, 64), "cpu") is True  # another size is timed
    assert precision.choose_bf16(model, (2, 3, 64, 64), "cpu", train=True) is True
    assert len(calls) == 6 and calls[-1] == ((2, 3, 64, 64), True, True)
    stored = json.loads(precision.cache_path().read_text())
    (entry,) = stored.values()
    assert entry["machine"]["cpu"] and "torch" in entry["machine"] and "onednn" in entry["machine"]
    record = next(v for k, v in entry["choices"].items() if k.endswith("infer-1x3x64x64"))
    assert record == {**record, "bf16": True, "fp32_ms": 10.0, "bf16_ms": 6.0}
    # A damaged cache is measured again, not a crash.
    precision.cache_path().write_bytes(b"\xff\x00 not json")
    assert precision.choose_bf16(model, (1, 3, 64, 64), "cpu") is True and len(calls) == 8


def test_a_timed_pass_leaves_the_model_as_it_was():
    from ssfnet.precision import time_pass

    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4)).eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    assert time_pass(model, (2, 3, 16, 16), False, train=True, repeats=1) > 0
    assert time_pass(model, (1, 3, 16, 16), True, train=False, repeats=1) > 0
    assert not model.training and all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(p.grad is None for p in model.parameters())


def test_precision_resolution():
    assert use_bf16("fp32", "cpu") is False
    assert use_bf16("off", "cpu") is False
    assert use_bf16("bf16", "cpu") is True
    assert isinstance(use_bf16("auto", "cpu"), bool)
    with pytest.raises(ValueError):
        use_bf16("fp8", "cpu")
    with autocast("cpu", True):
        assert torch.is_autocast_enabled("cpu")
    with autocast("cpu", False):
        assert not torch.is_autocast_enabled("cpu")


@pytest.mark.parametrize("name", PEERS)
def test_torchvision_peers_follow_the_contract(name):
    if name.endswith("resnet101"):
        pytest.skip("same code path as deeplabv3_resnet50, ten times the parameters")
    model = build_model(name, 7).train()
    x = torch.randint(0, 256, (2, 3, 64, 64), dtype=torch.uint8)
    out = model(x, aux=True, native=True)
    assert out["out"].shape == (2, 7, 64, 64)
    model.eval()
    with torch.no_grad():
        assert set(model(x, aux=False)) == {"out"}
