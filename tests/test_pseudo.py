"""train.pseudo: one fine LIP-20 class per PASCAL region pixel, chosen inside the region's set."""

from __future__ import annotations

import json

import numpy as np
import pytest
from helpers import TINY, write_viton
from PIL import Image

from ssfnet import build_model, save_checkpoint
from ssfnet.data import open_source
from ssfnet.labels import LIP_20
from train.pseudo import label_skin, main, pseudo_label, region_admission, skin_distance, teacher_marginal

K = LIP_20.num_classes
COAT, UPPER, LEFT_ARM, HAIR, FACE = (LIP_20.id_of(n) for n in ("coat", "upper-clothes", "left-arm", "hair", "face"))
TORSO, LOWER_ARM, HEAD = (LIP_20.id_of(n) for n in ("torso", "lower-arm", "head"))
RIGHT_ARM, LOWER_LEG, LEFT_LEG, RIGHT_LEG, PANTS = (
    LIP_20.id_of(n) for n in ("right-arm", "lower-leg", "left-leg", "right-leg", "pants")
)
SKIN, DARK_SLEEVE, GREY_JEANS = (205, 150, 125), (40, 40, 45), (120, 125, 135)


def test_the_teachers_bias_is_taken_out_and_only_admitted_classes_are_chosen():
    label = np.zeros((2, 4), np.uint8)
    label[0] = TORSO
    label[1, :2] = LOWER_ARM
    label[1, 3] = 255
    prob = np.full((K, 2, 4), 0.02, np.float32)
    prob[COAT] = 0.6  # the shortcut: coat first everywhere
    prob[UPPER] = 0.2
    prob[LEFT_ARM, 1] = 0.15
    prob[HAIR] = 0.3  # likely but never admitted in the torso or an arm
    admits = region_admission()
    assert admits[TORSO][COAT] and not admits[TORSO][HAIR] and not admits[LOWER_ARM][HAIR]
    flat = np.where(np.arange(K) > 0, 1.0, 0.0)
    # As the teacher says: coat.
    plain = pseudo_label(prob, label, admits, flat, min_confidence=0.0)
    assert (plain[0] == COAT).all() and (plain[1, :2] == COAT).all()
    # The teacher paints coat three times as often as the prior says: upper-clothes and the arm win.
    marginal = teacher_marginal([prob], [label])
    prior = np.full(K, 0.01)  # shares of person pixels in fine ground truth
    prior[[0, UPPER, COAT, LEFT_ARM]] = 0.0, 0.4, 0.1, 0.1
    fixed = pseudo_label(prob, label, admits, prior / marginal, min_confidence=0.0)
    assert (fixed[0] == UPPER).all() and fixed[1, 0] in (UPPER, LEFT_ARM) and fixed[1, 3] == 255
    assert (fixed[1, 2] == 0) and not np.isin(fixed, [HAIR]).any()
    # Unsure pixels keep their region (the set loss still covers them).
    unsure = pseudo_label(prob, label, admits, flat, min_confidence=0.99)
    np.testing.assert_array_equal(unsure, label)


def test_a_teacher_sure_of_a_shoe_but_not_of_its_side_names_the_shoe_on_the_persons_side():
    left_shoe, right_shoe = LIP_20.id_of("left-shoe"), LIP_20.id_of("right-shoe")
    label = np.full((1, 4), LOWER_LEG, np.uint8)
    prob = np.full((K, 1, 4), 0.01, np.float32)
    prob[left_shoe], prob[right_shoe] = 0.33, 0.31  # 0.64 a shoe, but neither side reaches 0.5
    prob[PANTS] = 0.2
    prob[left_shoe, 0, 3], prob[right_shoe, 0, 3] = 0.62, 0.02  # here the teacher is sure of the side
    admits, flat = region_admission(), np.where(np.arange(K) > 0, 1.0, 0.0)
    persons_left = np.array([[False, False, True, True]])  # the photo's right of the torso
    fine = pseudo_label(prob, label, admits, flat, min_confidence=0.5, persons_left=persons_left)
    assert fine.tolist() == [[right_shoe, right_shoe, left_shoe, left_shoe]]
    prob[left_shoe, 0, 0], prob[right_shoe, 0, 0] = 0.02, 0.62
    fine = pseudo_label(prob, label, admits, flat, min_confidence=0.5, persons_left=~persons_left)
    assert fine.tolist() == [[right_shoe, left_shoe, right_shoe, left_shoe]]
    # Without the torso's side the teacher's larger side is taken; unsure pixels keep the region.
    assert pseudo_label(prob, label, admits, flat, min_confidence=0.5)[0, 1] == left_shoe
    assert (pseudo_label(prob, label, admits, flat, min_confidence=0.9) == LOWER_LEG).all()


def test_hair_painted_over_the_faces_colour_becomes_face_and_face_far_from_it_returns_to_the_set():
    label = np.full((24, 24), HEAD, np.uint8)
    image = np.zeros((24, 24, 3), np.uint8)
    image[:] = SKIN
    image[:, :6] = (60, 40, 30)  # dark brown hair: a skin-like hue, far darker
    image[20:, 6:] = DARK_SLEEVE  # a dark collar inside the head region
    fine = np.full((24, 24), FACE, np.uint8)
    fine[:, :6] = HAIR
    fine[:4, 6:] = HAIR  # the teacher's hair over the forehead
    prob = np.full((K, 24, 24), 1.0 / K, np.float32)
    out = label_skin(fine, label, prob, image)
    assert (out[:, :6] == HAIR).all()  # hair stays hair
    assert (out[:4, 6:] == FACE).all()  # the forehead becomes face
    assert (out[20:, 6:] == HEAD).all()  # face far from the face's colour keeps the set
    assert (out[4:20, 6:] == FACE).all()


@pytest.fixture(scope="module")
def pascal(tmp_path_factory):
    root = tmp_path_factory.mktemp("pascal")
    (root / "JPEGImages").mkdir()
    (root / "SegmentationPart").mkdir()
    rng = np.random.default_rng(0)
    for i in range(4):
        Image.fromarray(rng.integers(0, 256, (40, 32, 3), dtype=np.uint8)).save(root / "JPEGImages" / f"p{i}.jpg")
        parts = np.zeros((40, 32), np.uint8)
        parts[4:12, 10:20] = 1  # head
        parts[12:28, 8:24] = 2  # torso
        parts[28:36, 8:12] = 4  # lower arm
        Image.fromarray(parts, mode="L").save(root / "SegmentationPart" / f"p{i}.png")
    return root


def test_the_command_writes_a_folder_the_trainer_reads(pascal, tmp_path):
    torch_model = build_model("ssfnet_lite", K, **TINY)
    teacher = save_checkpoint(
        torch_model, tmp_path / "teacher", variant="ssfnet_lite", label_set="lip-20", options=TINY,
        metadata={"input_size": 48},
    )  # fmt: skip
    viton = write_viton(tmp_path / "viton", n=4)
    exclude = tmp_path / "val.txt"
    exclude.write_text("p3\n")
    out = tmp_path / "pseudo"
    argv = ["--teacher", str(teacher), "--data", f"pascal-person-part:{pascal}", "--prior", f"viton:{viton}"]
    assert main([*argv, "--exclude", str(exclude), "--min-confidence", "0", "--out", str(out)]) == 0
    record = json.loads((out / "pseudo.json").read_text())
    assert record["photos"] == 3 and sorted(p.stem for p in (out / "labels").iterdir()) == ["p0", "p1", "p2"]
    dataset = open_source(f"folder:{out}", LIP_20)
    image, label = dataset.load(0)
    assert image.shape == (40, 32, 3) and label.shape == (40, 32)
    assert (label[0:4] == 0).all()  # background kept
    # Each region pixel is a class its region admits, or the region itself where the teacher gave
    # the admitted classes no probability at all (a random teacher's softmax underflows).
    for region, where in ((TORSO, np.s_[12:28, 8:24]), (HEAD, np.s_[4:12, 10:20])):
        assert set(np.unique(label[where])) <= {region, *np.flatnonzero(region_admission()[region])}
    assert sum(record["shares_of_region_pixels"].values()) == pytest.approx(100, abs=0.1)
    assert main([*argv, "--out", str(out)]) == 1  # never over an earlier folder


def _person(width=40):
    """A photo of one person facing the camera: head, torso, two lower arms and two lower legs.

    The head's face and both forearms are skin-coloured except a dark sleeve on the photo-left
    forearm's top half; the photo-right leg is bare, the photo-left one in grey jeans.
    """
    image = np.full((48, width, 3), 230, np.uint8)
    label = np.zeros((48, width), np.uint8)
    label[0:14, 13:27] = HEAD
    label[14:30, 12:28] = TORSO
    label[14:30, 6:12] = LOWER_ARM  # photo left: the person's right arm
    label[14:30, 28:34] = LOWER_ARM  # photo right: the person's left arm
    label[30:46, 12:19] = LOWER_LEG
    label[30:46, 21:28] = LOWER_LEG
    rng = np.random.default_rng(0)
    image[0:14, 13:27] = SKIN
    image[14:30, 6:12] = image[14:30, 28:34] = SKIN
    image[14:22, 6:12] = DARK_SLEEVE
    image[14:30, 12:28] = (200, 40, 40)  # a red T-shirt: red, but not the face's colour
    image[30:46, 12:19] = GREY_JEANS
    image[30:46, 21:28] = SKIN
    image = np.clip(image.astype(int) + rng.integers(-6, 7, image.shape), 0, 255).astype(np.uint8)
    fine = label.copy()
    fine[0:14, 13:27] = FACE
    fine[14:30, 12:28] = UPPER
    fine[label == LOWER_ARM] = COAT  # the teacher's shortcut
    fine[label == LOWER_LEG] = PANTS
    return image, label, fine


def test_bare_limbs_take_the_faces_colour_and_the_person_s_side():
    image, label, fine = _person()
    prob = np.full((K, *label.shape), 1.0 / K, np.float32)  # a teacher with no opinion on sides
    distance = skin_distance(image, (fine == FACE) & (label == HEAD))
    assert distance[20, 30] < 6 < 16 < distance[16, 8]  # forearm skin near, the dark sleeve far
    assert distance[20, 20] > 16  # the red shirt is red but not skin
    out = label_skin(fine, label, prob, image)
    # Facing the camera: the photo-right forearm is the person's left arm, the photo-left one
    # the right arm where bare; the sleeve keeps the teacher's class.
    assert (out[14:30, 28:34] == LEFT_ARM).all()
    assert (out[23:30, 6:12] == RIGHT_ARM).all() and (out[14:21, 6:12] == COAT).all()
    # The bare leg on the photo's right is the left leg; the grey jeans stay pants.
    assert (out[30:46, 21:28] == LEFT_LEG).all() and (out[30:46, 12:19] == PANTS).all()
    # Head, torso and background untouched.
    np.testing.assert_array_equal(out[:14], fine[:14])
    np.testing.assert_array_equal(out[14:30, 12:28], fine[14:30, 12:28])


def test_a_sure_teacher_decides_the_side_and_no_face_means_no_change():
    image, label, fine = _person()
    prob = np.full((K, *label.shape), 1.0 / K, np.float32)
    prob[RIGHT_ARM, :, 28:34] = 0.5  # the teacher sees this person from behind, and is sure
    prob[LEFT_ARM, :, 28:34] = 0.01
    out = label_skin(fine, label, prob, image)
    assert (out[14:30, 28:34] == RIGHT_ARM).all()
    faceless = fine.copy()
    faceless[fine == FACE] = HAIR  # a head seen from behind: no face to learn skin from
    np.testing.assert_array_equal(label_skin(faceless, label, prob, image), faceless)
    # A limb the teacher called an arm where the colour is far from skin loses it.
    sleeve = fine.copy()
    sleeve[14:22, 6:12] = RIGHT_ARM
    assert (label_skin(sleeve, label, prob, image)[14:21, 6:12] == LOWER_ARM).all()
