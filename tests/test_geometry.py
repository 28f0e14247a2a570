"""The image-geometry rules shared by the predictor, transforms, augmentation, packs and the app."""

import numpy as np
import pytest

from ssfnet.geometry import long_side_size, resize_image, resize_labels, resize_long_side


def test_long_side_size_on_non_square_pictures():
    assert long_side_size(300, 200, 150) == (150, 100)  # portrait: height is the long side
    assert long_side_size(200, 300, 150) == (100, 150)  # landscape: width is
    assert long_side_size(40, 30, 97) == (97, 73)  # enlarging: 72.75 rounds up
    assert long_side_size(3, 1000, 100) == (1, 100)  # never below one pixel
    assert long_side_size(80, 60, 1600, enlarge=False) == (80, 60)  # within the limit: kept
    assert long_side_size(3200, 2400, 1600, enlarge=False) == (1600, 1200)
    # The predictor's multi-scale sizes: the long side times the scale.
    assert long_side_size(100, 50, 473, factor=0.75) == (355, 177)
    with pytest.raises(ValueError, match="pixel"):
        long_side_size(0, 10, 5)


def test_resizing_takes_height_then_width():
    image = np.zeros((30, 40, 3), np.uint8)
    labels = np.zeros((30, 40), np.uint8)
    assert resize_image(image, (15, 20)).shape == (15, 20, 3)
    assert resize_image(image, (90, 20)).shape == (90, 20, 3)
    assert resize_labels(labels, (61, 7)).shape == (61, 7)
    assert resize_long_side(labels, 80, nearest=True).shape == (60, 80)
    assert resize_long_side(image.transpose(1, 0, 2), 80).shape == (80, 60, 3)


def test_same_size_returns_the_input_itself():
    image, labels = np.zeros((5, 7, 3), np.uint8), np.zeros((5, 7), np.uint8)
    assert resize_image(image, (5, 7)) is image
    assert resize_labels(labels, (5, 7)) is labels
    assert resize_long_side(image, 7) is image


def test_image_resize_averages_when_shrinking_and_interpolates_when_enlarging():
    checker = (np.indices((8, 6)).sum(0) % 2 * 255).astype(np.uint8)
    shrunk = resize_image(checker, (4, 3))
    assert shrunk.shape == (4, 3) and (np.abs(shrunk.astype(int) - 128) <= 1).all()  # area: no aliasing
    ramp = np.array([[0, 200]], np.uint8)
    enlarged = resize_image(ramp, (1, 4))
    assert enlarged[0, 0] == 0 and enlarged[0, -1] == 200 and 0 < enlarged[0, 1] < enlarged[0, 2] < 200


def test_label_resize_keeps_only_existing_values_and_round_trips():
    rng = np.random.default_rng(0)
    labels = rng.choice([0, 3, 7, 255], size=(13, 7)).astype(np.uint8)
    for size in [(40, 9), (5, 30), (26, 14), (4, 3)]:
        resized = resize_labels(labels, size)
        assert resized.shape == size and resized.dtype == np.uint8
        assert set(np.unique(resized)) <= {0, 3, 7, 255}
    # Enlarged by whole factors (non-square) and shrunk back: the original, pixel for pixel.
    np.testing.assert_array_equal(resize_labels(resize_labels(labels, (39, 14)), (13, 7)), labels)
    np.testing.assert_array_equal(resize_labels(resize_labels(labels.T, (14, 39)), (7, 13)), labels.T)


def test_label_resize_is_centre_aligned():
    # One column too many (an export's off-by-one): the map is not shifted towards a corner.
    labels = np.zeros((4, 9), np.uint8)
    labels[:, 0], labels[:, -1] = 1, 2
    fitted = resize_labels(labels, (4, 8))
    assert (fitted[:, 0] == 1).all() and (fitted[:, -1] == 2).all()
    grown = resize_labels(np.array([[1, 2]], np.uint8), (1, 4))
    assert grown.tolist() == [[1, 1, 2, 2]]
