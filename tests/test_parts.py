"""The body-part head: its targets, the region sets, the steering of the class output, warm starts."""

import numpy as np
import pytest
import torch
from helpers import TINY

from ssfnet.build import build_model
from ssfnet.checkpoint import save_checkpoint
from ssfnet.labels import IGNORE_INDEX, LIP_20
from ssfnet.losses import ParsingLoss
from ssfnet.parts import PART_NAMES, admission, combine, part_targets, region_membership, region_values
from ssfnet.predictor import Predictor

COAT = LIP_20.id_of("coat")
BODY_REGIONS = ("torso", "upper-arm", "lower-arm", "upper-leg", "lower-leg")


def test_part_targets_map_regions_and_certain_classes():
    table = part_targets(LIP_20)
    for name in PART_NAMES[1:]:
        assert table[LIP_20.id_of(name)] == PART_NAMES.index(name)
    assert table[0] == 0
    assert table[LIP_20.id_of("hair")] == table[LIP_20.id_of("face")] == PART_NAMES.index("head")
    assert table[LIP_20.id_of("left-shoe")] == table[LIP_20.id_of("shoes")] == PART_NAMES.index("lower-leg")
    # Clothes and limbs span several regions: they teach the part head nothing.
    for name in ("upper-clothes", "coat", "pants", "left-arm", "right-leg", "skin", "arms"):
        assert table[LIP_20.id_of(name)] == IGNORE_INDEX
    assert table[IGNORE_INDEX] == IGNORE_INDEX
    assert part_targets(pytest.importorskip("ssfnet.labels").get_label_set("atr-18")) is None


def test_full_sets_let_coat_answer_every_body_region_and_limb_sets_do_not():
    full, silenced = region_membership(LIP_20, "full")
    assert silenced == [] and np.array_equal(full, LIP_20.membership)
    assert all(full[LIP_20.id_of(region), COAT] for region in BODY_REGIONS)
    limbs, silenced = region_membership(LIP_20, "limbs")
    assert sorted(silenced) == sorted([LIP_20.id_of("head"), LIP_20.id_of("torso")])
    limb_rows = limbs[[LIP_20.id_of(r) for r in BODY_REGIONS[1:]]]
    # No class satisfies every limb, so no single answer is free.
    assert not limb_rows.all(axis=0).any()
    for one_piece in ("coat", "dress", "jumpsuits"):
        assert not limbs[LIP_20.id_of("lower-arm"), LIP_20.id_of(one_piece)]
    assert limbs[LIP_20.id_of("lower-arm"), LIP_20.id_of("left-arm")]
    with pytest.raises(ValueError, match="region sets"):
        region_membership(LIP_20, "strict")


def test_the_loss_prices_coat_on_a_bare_arm_only_with_limb_sets():
    target = torch.full((1, 4, 4), LIP_20.id_of("lower-arm"))
    logits = torch.full((1, 20, 4, 4), -10.0)
    logits[:, COAT] = 10.0  # "coat" everywhere, confidently
    full = ParsingLoss(LIP_20).term(logits, target)
    membership, _ = region_membership(LIP_20, "limbs")
    limbs = ParsingLoss(LIP_20, membership=membership).term(logits, target)
    assert float(full) < 1e-6
    assert float(limbs) > 10.0


def test_person_sets_teach_the_class_output_where_the_person_is_and_nothing_inside():
    person, silenced = region_membership(LIP_20, "person")
    assert silenced == []
    rows = person[region_values(LIP_20)]
    assert rows[:, 1:].all() and not rows[:, 0].any()
    # Fine labels keep their own rows.
    assert np.array_equal(person[: LIP_20.num_classes], LIP_20.membership[: LIP_20.num_classes])
    criterion = ParsingLoss(LIP_20, membership=person)
    target = torch.full((1, 4, 4), LIP_20.id_of("lower-arm"))
    coat = torch.full((1, 20, 4, 4), -10.0)
    coat[:, COAT] = 10.0
    arm = torch.full((1, 20, 4, 4), -10.0)
    arm[:, LIP_20.id_of("left-arm")] = 10.0
    background = torch.full((1, 20, 4, 4), -10.0)
    background[:, 0] = 10.0
    # Any person class is equally right (no shortcut is rewarded); background is wrong.
    assert abs(float(criterion.term(coat, target)) - float(criterion.term(arm, target))) < 1e-6
    assert float(criterion.term(background, target)) > 10.0


def test_silenced_regions_train_the_part_head_alone():
    model = build_model("ssfnet_lite", 20, part_classes=len(PART_NAMES), **TINY).train()
    images = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8)
    outputs = model(images, native=True)
    assert outputs["parts"].shape[1] == len(PART_NAMES)
    target = torch.full((2, 32, 32), LIP_20.id_of("torso"))
    weights = torch.ones(LIP_20.num_ids)
    weights[region_values(LIP_20)] = 0.0
    loss = ParsingLoss(LIP_20, value_weights=weights, part_targets=part_targets(LIP_20), part_weight=0.5)
    total, terms = loss({k: v.float() for k, v in outputs.items()}, target)
    assert terms["out"] == terms["aux1"] == terms["aux2"] == 0.0
    assert terms["parts"] > 0
    total.backward()
    assert model.head[-1].weight.grad.abs().sum() == 0
    assert model.part_head[-1].weight.grad.abs().sum() > 0


def test_a_model_without_the_head_has_no_parts_output():
    model = build_model("ssfnet_lite", 20, **TINY).eval()
    assert model.part_head is None
    assert "parts" not in model(torch.zeros(1, 3, 32, 32, dtype=torch.uint8), aux=False)


def test_combine_takes_background_from_parts_and_classes_from_their_region():
    torch.manual_seed(0)
    class_prob = torch.rand(1, 20, 2, 2).softmax(1)
    part_prob = torch.zeros(1, len(PART_NAMES), 2, 2)
    part_prob[:, 0] = 0.3
    part_prob[:, PART_NAMES.index("head")] = 0.7
    out = combine(class_prob, part_prob, torch.from_numpy(admission(LIP_20)))
    assert torch.allclose(out.sum(1), torch.ones(1, 2, 2))
    assert torch.allclose(out[:, 0], part_prob[:, 0])
    # A head admits no coat; hair and face keep the class output's ratio.
    assert float(out[:, COAT].max()) == 0.0
    hair, face = LIP_20.id_of("hair"), LIP_20.id_of("face")
    assert torch.allclose(out[:, hair] / out[:, face], class_prob[:, hair] / class_prob[:, face])


def test_warm_start_adds_a_fresh_part_head(tmp_path):
    from train.config import TrainConfig
    from train.train import build, resolve_model

    plain = build_model("ssfnet_lite", 20, **TINY)
    folder = save_checkpoint(plain, tmp_path / "base", variant="ssfnet_lite", label_set="lip-20", options=TINY)
    config = TrainConfig(init_checkpoint=str(folder), model_options={"part_classes": len(PART_NAMES)})
    model = build(resolve_model(config), config)
    assert model.part_head is not None
    assert torch.equal(model.head[-1].weight, plain.head[-1].weight)


def test_predictor_parts_output_and_gate():
    model = build_model("ssfnet_lite", 20, part_classes=len(PART_NAMES), **TINY)
    image = np.random.default_rng(0).integers(0, 256, (40, 30, 3), dtype=np.uint8)
    parts = Predictor(model, "lip-20", device="cpu", input_size=32, output="parts", precision="fp32")
    assert parts.label_set.name == "pascal-person-part-7"
    assert parts.predict(image).max() < len(PART_NAMES)
    assert Predictor(model, "lip-20", device="cpu", input_size=32).part_gate is False
    gated = Predictor(model, "lip-20", device="cpu", input_size=32, precision="fp32", part_gate=True)
    proba = gated.predict_proba(image)
    # The part head's background and the classes its regions admit: each pixel still sums to one.
    assert np.allclose(proba.sum(0), 1.0, atol=1e-4)
    with pytest.raises(ValueError, match="no body-part head"):
        Predictor(build_model("ssfnet_lite", 20, **TINY), "lip-20", device="cpu", output="parts")


def test_checkpoints_with_and_without_the_head_round_trip(tmp_path):
    from ssfnet.build import model_options
    from ssfnet.checkpoint import load_checkpoint

    for classes in (0, len(PART_NAMES)):
        options = model_options("ssfnet_lite", **TINY, part_classes=classes)
        model = build_model("ssfnet_lite", 20, **options)
        folder = save_checkpoint(
            model, tmp_path / str(classes), variant="ssfnet_lite", label_set="lip-20", options=options
        )
        loaded, meta = load_checkpoint(folder)
        assert meta["options"]["part_classes"] == classes
        assert (loaded.part_head is None) == (classes == 0)


def test_a_fine_tune_keeps_the_base_s_region_sets():
    from train.finetune.run import FINETUNE_DEFAULTS, inherit_recipe

    recipe = {"region_sets": "limbs", "set_loss_weight": 1.0, "part_loss_weight": 0.5, "lr": 1e-4}
    train, changes = inherit_recipe(FINETUNE_DEFAULTS, {"training": {"recipe": recipe}}, given=[])
    assert train.region_sets == "limbs" and changes["region_sets"] == "limbs"
    train, _ = inherit_recipe(FINETUNE_DEFAULTS, {"training": {"recipe": recipe}}, given=["region_sets"])
    assert train.region_sets == "full"
