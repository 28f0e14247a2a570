"""The network: shapes for every variant and ablation, odd sizes, backward, the equations."""

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from helpers import TINY

from ssfnet import ABLATIONS, VARIANTS, build_model
from ssfnet.modeling import Hourglass, PyramidPooling, ResolutionAware, SemanticModulation


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_variants_forward_backward(variant):
    torch.manual_seed(0)
    model = build_model(variant, 20, **TINY).train()
    x = torch.rand(2, 3, 41, 37)
    out = model(x)
    assert set(out) == {"out", "aux1", "aux2"}
    for logits in out.values():
        assert logits.shape == (2, 20, 41, 37)
    sum(v.mean() for v in out.values()).backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None for g in grads), "every parameter takes part in the loss"


@pytest.mark.parametrize("name", sorted(ABLATIONS))
def test_ablations_all_parameters_used(name):
    model = build_model("ssfnet_lite", 7, **TINY, **ABLATIONS[name]).train()
    out = model(torch.rand(2, 3, 33, 35))
    assert out["out"].shape == (2, 7, 33, 35)
    sum(v.sum() for v in out.values()).backward()
    unused = [n for n, p in model.named_parameters() if p.grad is None]
    assert not unused, f"{name}: parameters without gradient {unused[:5]}"


@pytest.mark.parametrize("size", [(1, 1), (17, 9), (64, 48), (65, 97)])
def test_any_input_size(size):
    model = build_model("ssfnet_lite", 5, **TINY).eval()
    with torch.no_grad():
        out = model(torch.rand(1, 3, *size), aux=False)
    assert set(out) == {"out"}
    assert out["out"].shape == (1, 5, *size)


def test_uint8_and_float_inputs_agree():
    model = build_model("ssfnet_lite", 5, **TINY).eval()
    img = torch.randint(0, 256, (1, 3, 32, 32), dtype=torch.uint8)
    with torch.no_grad():
        a = model(img, aux=False)["out"]
        b = model(img.float() / 255, aux=False)["out"]
    torch.testing.assert_close(a, b)


def test_baseline_rejects_refinement():
    with pytest.raises(ValueError, match="Baseline"):
        build_model("ssfnet_lite", 5, fusion="none", refinement="ram")


def test_unknown_variant_and_option():
    with pytest.raises(ValueError, match="unknown variant"):
        build_model("ssfnet_r152", 5)
    with pytest.raises(TypeError, match="unknown model options"):
        build_model("ssfnet_lite", 5, widht=3)


def test_deeplab_peer_contract():
    model = build_model("deeplabv3_resnet50", 4).eval()
    with torch.no_grad():
        out = model(torch.rand(1, 3, 33, 31))
        single = model(torch.rand(1, 3, 33, 31), aux=False)
    assert out["out"].shape == (1, 4, 33, 31) and out["aux2"].shape == (1, 4, 33, 31)
    assert set(single) == {"out"}


def test_light_variant_size_target():
    model = build_model("ssfnet_lite", 20)
    fp16_mb = sum(p.numel() for p in model.parameters()) * 2 / 1e6
    assert fp16_mb <= 40, fp16_mb


def _bn_eval(module):
    for m in module.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 1.5)
    return module.eval()


def _cbr(seq, x):
    """Apply a ConvBNReLU by hand: conv, batch norm with running stats, ReLU."""
    conv, bn = seq[0], seq[1]
    y = F.conv2d(x, conv.weight, None, conv.stride, conv.padding, conv.dilation)
    y = F.batch_norm(y, bn.running_mean, bn.running_var, bn.weight, bn.bias, False, 0.0, bn.eps)
    return F.relu(y)


def test_smm_matches_equations():
    torch.manual_seed(1)
    smm = _bn_eval(SemanticModulation(4, "smm"))
    high = torch.randn(2, 4, 5, 6)
    low = torch.randn(2, 4, 10, 12)
    with torch.no_grad():
        s_high, s_low = smm(high, low)
        low_l = _cbr(smm.down, low)  # F_l^l: stride-2 convolution of F_l^h
        beta_ll = F.conv2d(high, smm.beta_ll.weight, smm.beta_ll.bias, padding=1)  # W_ll * F_H^L + b_ll
        high_h = F.interpolate(high, size=(10, 12), mode="bilinear", align_corners=False)  # F_H^h
        beta_hh = F.conv2d(high_h, smm.beta_hh.weight, smm.beta_hh.bias, padding=1)
        torch.testing.assert_close(s_low, low_l * beta_ll + high)
        torch.testing.assert_close(s_high, low * beta_hh + high_h)


def test_smm_ablations():
    high = torch.randn(1, 3, 4, 4)
    low = torch.randn(1, 3, 8, 8)
    up = F.interpolate(high, size=(8, 8), mode="bilinear", align_corners=False)
    s_high, s_low = SemanticModulation(3, "h")(high, low)
    torch.testing.assert_close(s_high, low + up)
    torch.testing.assert_close(s_low, high)
    hl = _bn_eval(SemanticModulation(3, "hl"))
    with torch.no_grad():
        s_high, s_low = hl(high, low)
        torch.testing.assert_close(s_low, _cbr(hl.down, low) + high)


@pytest.mark.parametrize("refinement", ["ram", "l"])
def test_ram_matches_equations(refinement):
    torch.manual_seed(2)
    ram = _bn_eval(ResolutionAware(4, refinement))
    s_high = torch.randn(2, 4, 12, 10)
    s_low = torch.randn(2, 4, 6, 5)
    up = lambda t, size: F.interpolate(t, size=size, mode="bilinear", align_corners=False)
    with torch.no_grad():
        got = ram(s_high, s_low)
        d_h = _cbr(ram.d_high, s_high)
        d_l = _cbr(ram.d_low, s_low)
        d_l2 = _cbr(ram.d_low2, torch.cat([d_l, _cbr(ram.d_high_down, d_h)], 1))
        d_min = _cbr(ram.d_min, d_l2)
        assert d_min.shape[-2:] == (3, 3)  # a quarter of the high resolution (rounded up)
        u_l = up(d_min, (6, 5))
        u_h = up(torch.cat([u_l, d_l2], 1), (12, 10))
        parts = [d_h, u_h] + ([up(d_l2, (12, 10))] if refinement == "ram" else [])
        want = _cbr(ram.out[1], _cbr(ram.out[0], torch.cat(parts, 1)))
        torch.testing.assert_close(got, want)
    assert got.shape == (2, 4, 12, 10)


def test_hourglass_and_ppm_keep_size():
    hg = Hourglass(8, depth=3).eval()
    ppm = PyramidPooling(16, 4, 8).eval()
    with torch.no_grad():
        assert hg(torch.randn(1, 8, 15, 9)).shape == (1, 8, 15, 9)
        assert ppm(torch.randn(1, 16, 7, 11)).shape == (1, 8, 7, 11)


def test_torchvision_weights_load(tmp_path):
    from torchvision.models import resnet18

    ref = resnet18(weights=None)
    path = tmp_path / "resnet18.pth"
    torch.save(ref.state_dict(), path)
    model = build_model("ssfnet_lite", 5, backbone_weights=path)
    torch.testing.assert_close(model.backbone.layer4[1].conv2.weight, ref.layer4[1].conv2.weight)
    torch.testing.assert_close(model.backbone.conv1.weight, ref.conv1.weight)
    with pytest.raises(ValueError, match="shape"):
        build_model("ssfnet_r50", 5, backbone_weights=path)


def test_one_registry_lists_and_builds_every_model(capsys):
    from ssfnet import MODELS, list_models
    from ssfnet.build import get_model_spec, model_options
    from ssfnet.modeling.peers import PEERS
    from train.config import parse_args

    assert list_models() == [*VARIANTS, *PEERS] == list(MODELS)
    assert list_models("ssfnet") == list(VARIANTS) and list_models("torchvision") == list(PEERS)
    assert get_model_spec("ssfnet_lite0").takes_options
    assert not get_model_spec("lraspp_mobilenet_v3_large").takes_options
    assert all(MODELS[name].description for name in list_models())
    with pytest.raises(ValueError, match="lraspp_mobilenet_v3_large"):
        get_model_spec("no_such_model")
    with pytest.raises(TypeError, match="takes no options"):
        model_options("lraspp_mobilenet_v3_large", fusion="none")
    assert parse_args(["--variant", "lraspp_mobilenet_v3_large"]).variant == "lraspp_mobilenet_v3_large"
    with pytest.raises(SystemExit):
        parse_args(["--variant", "no_such_model"])
    assert "invalid choice" in capsys.readouterr().err


def test_a_backbone_is_one_entry_of_the_table(monkeypatch, tmp_path):
    from ssfnet.modeling import backbones
    from ssfnet.modeling.backbone import DilatedResNet

    loaded = []

    class Shallow(DilatedResNet):
        def load_from(self, path):
            loaded.append(Path(path).name)

    entry = backbones.Backbone(
        build=lambda **kw: Shallow("resnet18", deep_stem=False, output_stride=kw["output_stride"]),
        mean=(0.5, 0.5, 0.5),
        std=(0.25, 0.25, 0.25),
        output_strides=(16,),
        load_weights=lambda module, path: module.load_from(path),
    )
    monkeypatch.setitem(backbones.BACKBONES, "shallow", entry)
    model = build_model("ssfnet_lite", 20, backbone="shallow", output_stride=16, backbone_weights=tmp_path / "w.pth")
    assert isinstance(model.backbone, Shallow) and loaded == ["w.pth"]
    assert model.pixel_mean.flatten().tolist() == [0.5] * 3 and model.pixel_std.flatten().tolist() == [0.25] * 3
    assert model.eval()(torch.zeros(1, 3, 64, 48), aux=False)["out"].shape == (1, 20, 64, 48)
    with pytest.raises(ValueError, match="shallow has output stride 16, not 8"):
        build_model("ssfnet_lite", 20, backbone="shallow", output_stride=8)
    with pytest.raises(ValueError, match="unknown backbone 'deep'"):
        build_model("ssfnet_lite", 20, backbone="deep")
