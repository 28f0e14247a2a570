"""Training-sample pipeline: copy-paste composition, photometric augmentation and the training dataset.

The training sets are narrow (VITON: studio upper-body shots; CCP: full-body street shots) while
users upload anything. Two augmentations widen them beyond the paper's scale/crop/flip:

- :class:`CopyPaste` pastes one to three labelled people from the training sources onto another
  background (a training photo with its person inpainted away, another training photo with its
  own labels kept, a zoomed crop of an inpainted photo, or a synthetic texture) at varied scales
  and positions, composing the label map accordingly.
- :class:`Photometric` applies colour jitter, Gaussian blur and JPEG re-compression to uint8
  batches. Jitter and blur are written in torch, so the same code runs per sample in the loader's
  workers or on the whole batch on the GPU (``--gpu-augment``) when the loader cannot keep up;
  the JPEG round trip always runs on the CPU (OpenCV).

Every random choice for sample ``i`` of epoch ``e`` comes from a generator seeded with
``(seed, e, i)``, so a sample is the same whatever the number of workers or processes, and a
resumed run sees exactly the samples the interrupted one would have.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import Dataset

from ssfnet.geometry import long_side_size, resize_image, resize_labels
from ssfnet.labels import LabelSet, get_label_set

Sample = tuple[np.ndarray, np.ndarray]

# ---------------------------------------------------------------------------------------------
# Photometric augmentation (jitter and blur on any device, JPEG on the CPU)

# RGB -> YIQ; a hue shift is a rotation of the (I, Q) chroma plane.
_RGB_TO_YIQ = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])
_YIQ_TO_RGB = torch.linalg.inv(_RGB_TO_YIQ)
_LUMA = torch.tensor([0.299, 0.587, 0.114])


class Photometric:
    """Colour jitter, Gaussian blur and JPEG re-compression of a uint8 batch.

    Per image: with probability 0.8 (when ``jitter`` > 0) random brightness and contrast
    (factors in ``1 +- 0.4 * jitter``), saturation (``1 +- 0.5 * jitter``) and hue (a shift of up
    to ``0.05 * jitter`` of the colour circle); with probability ``blur`` a Gaussian blur with a
    sigma of 0.4-1.8 pixels at 473 px (scaled with the image size); with probability ``jpeg`` a
    JPEG round trip at quality 25-95, last, as a photo's upload would.

    Args:
        jitter: Strength of the colour jitter (0 disables it).
        blur: Probability of a blur.
        jpeg: Probability of JPEG re-compression.
    """

    def __init__(self, jitter: float = 0.0, blur: float = 0.0, jpeg: float = 0.0) -> None:
        self.jitter = float(jitter)
        self.blur = float(blur)
        self.jpeg = float(jpeg)

    @property
    def active(self) -> bool:
        return self.jitter > 0 or self.blur > 0 or self.jpeg > 0

    def __call__(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Augment a batch.

        Args:
            images: B x 3 x H x W uint8 RGB, on any device.
            generator: CPU generator that draws every parameter (so CPU and GPU runs agree).

        Returns:
            B x 3 x H x W uint8 on the same device.
        """
        if not self.active:
            return images
        b = images.shape[0]
        draw = lambda *shape: torch.rand(*shape, generator=generator)  # noqa: E731
        # Draw all parameters up front, in a fixed order, whether or not an effect fires.
        jitter_on, factors, hue = draw(b) < 0.8, draw(b, 3) * 2 - 1, draw(b) * 2 - 1
        blur_on, sigma = draw(b) < self.blur, 0.4 + 1.4 * draw(b)
        jpeg_on, quality = draw(b) < self.jpeg, 25 + (71 * draw(b)).floor()
        x = images.float() / 255
        if self.jitter > 0:
            x = self._colour(x, factors * jitter_on[:, None], hue * jitter_on)
        if bool(blur_on.any()):
            x = self._blur(x, torch.where(blur_on, sigma * max(x.shape[-2:]) / 473, torch.zeros_like(sigma)))
        out = (x * 255).round_().clamp_(0, 255).to(torch.uint8)
        if bool(jpeg_on.any()):
            out = self._jpeg(out, jpeg_on, quality)
        return out

    def _colour(self, x: torch.Tensor, factors: torch.Tensor, hue: torch.Tensor) -> torch.Tensor:
        s = self.jitter
        brightness = (1 + 0.4 * s * factors[:, 0]).to(x.device).view(-1, 1, 1, 1)
        contrast = (1 + 0.4 * s * factors[:, 1]).to(x.device).view(-1, 1, 1, 1)
        saturation = (1 + 0.5 * s * factors[:, 2]).to(x.device).view(-1, 1, 1, 1)
        x = x * brightness
        luma = _LUMA.to(x.device).view(1, 3, 1, 1)
        grey = (x * luma).sum(1, keepdim=True)
        x = (x - grey.mean((2, 3), keepdim=True)) * contrast + grey.mean((2, 3), keepdim=True)
        grey = (x * luma).sum(1, keepdim=True)
        x = (x - grey) * saturation + grey
        angle = (hue * 0.05 * s * 2 * math.pi).to(x.device)
        cos, sin = torch.cos(angle), torch.sin(angle)
        rot = torch.zeros(x.shape[0], 3, 3, device=x.device)
        rot[:, 0, 0] = 1
        rot[:, 1, 1], rot[:, 1, 2], rot[:, 2, 1], rot[:, 2, 2] = cos, -sin, sin, cos
        matrix = _YIQ_TO_RGB.to(x.device) @ rot @ _RGB_TO_YIQ.to(x.device)  # B x 3 x 3
        x = torch.einsum("bij,bjhw->bihw", matrix, x)
        return x.clamp(0, 1)

    @staticmethod
    def _blur(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        """Separable Gaussian blur with one sigma per image (0 = unchanged), as one grouped conv."""
        b, c, h, w = x.shape
        radius = max(1, int(math.ceil(3 * float(sigma.max()))))
        radius = min(radius, (min(h, w) - 1) // 2) if min(h, w) > 2 else 0
        if radius == 0:
            return x
        offsets = torch.arange(-radius, radius + 1, dtype=torch.float32)
        safe = sigma.clamp_min(1e-3)[:, None]
        kernel = torch.exp(-0.5 * (offsets[None] / safe) ** 2)
        kernel = torch.where(sigma[:, None] > 0, kernel, (offsets[None] == 0).float())
        kernel = (kernel / kernel.sum(1, keepdim=True)).to(x.device, x.dtype)
        kernel = kernel.repeat_interleave(c, 0)  # (B*C) x K
        y = x.reshape(1, b * c, h, w)
        y = F.pad(y, (radius, radius, radius, radius), mode="reflect")
        y = F.conv2d(y, kernel[:, None, :, None], groups=b * c)
        y = F.conv2d(y, kernel[:, None, None, :], groups=b * c)
        return y.reshape(b, c, h, w)

    @staticmethod
    def _jpeg(images: torch.Tensor, on: torch.Tensor, quality: torch.Tensor) -> torch.Tensor:
        """JPEG round trips of the selected images (on the CPU: a few milliseconds per image)."""
        out = images.clone()
        for i in torch.nonzero(on).flatten().tolist():
            rgb = np.ascontiguousarray(images[i].permute(1, 2, 0).cpu().numpy())
            ok, data = cv2.imencode(".jpg", rgb[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, int(quality[i])])
            if not ok:
                raise RuntimeError("JPEG encoding failed")
            decoded = cv2.imdecode(data, cv2.IMREAD_COLOR)[..., ::-1]
            out[i] = torch.from_numpy(np.ascontiguousarray(decoded)).permute(2, 0, 1).to(images.device)
        return out


# ---------------------------------------------------------------------------------------------
# Copy-paste composition (numpy, in the loader)


def remove_people(image: np.ndarray, label: np.ndarray, *, work_side: int = 256) -> np.ndarray:
    """Inpaint every labelled (non-background) pixel away, leaving an empty scene.

    The inpainting runs at ``work_side`` pixels on the longer side (it is slow at full size and a
    backdrop needs no detail) and is up-sampled back; outside the person the original pixels stay.

    Args:
        image: H x W x 3 uint8.
        label: H x W ids; everything but 0 (background) counts as person, ignore included.

    Returns:
        H x W x 3 uint8.
    """
    h, w = label.shape
    person = (label != 0).astype(np.uint8)
    if not person.any():
        return image.copy()
    small = long_side_size(h, w, work_side, enlarge=False)
    # Dilate so the halo of hair and clothing at the boundary goes too.
    mask = cv2.dilate(resize_labels(person, small), np.ones((5, 5), np.uint8))
    filled = cv2.inpaint(np.ascontiguousarray(resize_image(image, small)), mask, 3, cv2.INPAINT_TELEA)
    filled = resize_image(filled, (h, w))
    grown = cv2.dilate(person, np.ones((7, 7), np.uint8)).astype(bool)
    out = image.copy()
    out[grown] = filled[grown]
    return out


def synthetic_texture(height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """A random backdrop: a colour gradient, smooth noise, stripes or a checkerboard, with grain."""
    kind = rng.integers(4)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    c1, c2 = rng.integers(0, 256, 3).astype(np.float32), rng.integers(0, 256, 3).astype(np.float32)
    if kind == 0:
        angle = rng.uniform(0, 2 * np.pi)
        t = (np.cos(angle) * xx + np.sin(angle) * yy) / max(height, width)
        t = (t - t.min()) / max(float(t.max() - t.min()), 1e-6)
    elif kind == 1:
        grid = rng.random((int(rng.integers(2, 8)), int(rng.integers(2, 8)), 3)).astype(np.float32)
        image = cv2.resize(grid * 255, (width, height), interpolation=cv2.INTER_CUBIC)
        t = None
    elif kind == 2:
        angle, period = rng.uniform(0, np.pi), rng.uniform(8, 64)
        t = 0.5 + 0.5 * np.sin((np.cos(angle) * xx + np.sin(angle) * yy) * 2 * np.pi / period)
    else:
        cell = int(rng.integers(8, 64))
        t = (((yy // cell) + (xx // cell)) % 2).astype(np.float32)
    if kind != 1:
        image = c1 + (c2 - c1) * t[..., None]
    image = image + rng.normal(0, rng.uniform(0, 12), (height, width, 1)).astype(np.float32)
    return np.clip(image, 0, 255).astype(np.uint8)


class CopyPaste:
    """Compose 1-3 labelled people onto another background, labels included.

    The first person is the sample itself; the others and the background are drawn from the
    training sources. Backgrounds: a training photo with its person inpainted away (0.4), a
    training photo as it is, whose own labels stay on the canvas (0.2), a zoomed crop of an
    inpainted photo (0.2), or a synthetic texture (0.2). Each person is cut out by its label map
    (every non-background pixel, so ignore regions come along as ignore), flipped at random with
    the left/right swap, scaled to 35-100 % of the canvas height and placed at random; a person
    cut by the bottom edge of its photo stays cut by the canvas's bottom edge. Later people occlude
    earlier ones, in the image and in the labels.

    Args:
        label_set: Label set of the label maps (for the flip).
        canvas_size: Longer side of the composed canvas.
        max_people: Up to this many people per canvas.
        height_range: Person height as a fraction of the canvas height.
    """

    BACKGROUNDS = ("inpainted", "photo", "zoom", "texture")
    BACKGROUND_PROBS = (0.4, 0.2, 0.2, 0.2)

    def __init__(
        self,
        label_set: str | LabelSet,
        canvas_size: int,
        *,
        max_people: int = 3,
        height_range: tuple[float, float] = (0.35, 1.0),
    ) -> None:
        self.label_set = get_label_set(label_set)
        self.canvas_size = int(canvas_size)
        self.max_people = int(max_people)
        self.height_range = height_range

    def __call__(
        self,
        image: np.ndarray,
        label: np.ndarray,
        draw: Callable[[np.random.Generator], Sample],
        rng: np.random.Generator,
    ) -> Sample:
        """Compose a canvas around the person of ``(image, label)``.

        Args:
            image: H x W x 3 uint8 of the sample.
            label: H x W uint8 ids.
            draw: Returns another raw training sample, using the generator it is given.
            rng: Generator for every choice.

        Returns:
            The canvas (h x w x 3 uint8) and its label map (h x w uint8).
        """
        counts = np.arange(1, self.max_people + 1)
        probs = np.array([0.5, 0.3, 0.2][: self.max_people])
        people = int(rng.choice(counts, p=probs / probs.sum()))
        canvas, canvas_label = self._background(draw, rng)
        for k in range(people):
            person = (image, label) if k == 0 else draw(rng)
            self._paste(canvas, canvas_label, *person, rng)
        return canvas, canvas_label

    def _background(self, draw: Callable[[np.random.Generator], Sample], rng: np.random.Generator) -> Sample:
        kind = self.BACKGROUNDS[int(rng.choice(len(self.BACKGROUNDS), p=self.BACKGROUND_PROBS))]
        if kind == "texture":
            # The longer side is the canvas size, the shorter 75-100 % of it, in either orientation.
            h, w = self.canvas_size, round(self.canvas_size * rng.uniform(0.75, 1.0))
            if rng.random() < 0.5:
                h, w = w, h
            return synthetic_texture(h, w, rng), np.zeros((h, w), np.uint8)
        image, label = draw(rng)
        if kind == "photo":
            background, background_label = image, label
        else:
            background = remove_people(image, label)
            background_label = np.zeros(label.shape, np.uint8)
            if kind == "zoom":
                h, w = label.shape
                frac = rng.uniform(0.3, 0.6)
                ch, cw = max(8, round(h * frac)), max(8, round(w * frac))
                y, x = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
                background = background[y : y + ch, x : x + cw]
                background_label = background_label[y : y + ch, x : x + cw]
        size = long_side_size(*background_label.shape, self.canvas_size)
        return resize_image(background, size).copy(), resize_labels(background_label, size).copy()

    def _paste(
        self,
        canvas: np.ndarray,
        canvas_label: np.ndarray,
        image: np.ndarray,
        label: np.ndarray,
        rng: np.random.Generator,
    ) -> None:
        mask = label != 0
        if mask.sum() < 64:
            return
        rows, cols = np.nonzero(mask.any(1))[0], np.nonzero(mask.any(0))[0]
        top, bottom, left, right = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
        cut_at_bottom = bottom >= label.shape[0] - 2
        person, person_label = image[top:bottom, left:right], label[top:bottom, left:right]
        if rng.random() < 0.5:
            person = person[:, ::-1]
            person_label = self.label_set.flip_lut[person_label[:, ::-1]]
        ch, cw = canvas_label.shape
        ph, pw = person_label.shape
        scale = rng.uniform(*self.height_range) * ch / ph
        scale = min(scale, 1.1 * cw / pw)
        th, tw = max(2, round(ph * scale)), max(2, round(pw * scale))
        person = resize_image(person, (th, tw))
        person_label = resize_labels(person_label, (th, tw))
        x = int(rng.integers(-tw // 4, max(-tw // 4 + 1, cw - (3 * tw) // 4)))
        if cut_at_bottom:
            y = ch - th + int(rng.integers(0, max(1, th // 6)))
        else:
            y = int(rng.integers(-th // 10, max(-th // 10 + 1, ch - (9 * th) // 10)))
        # Visible window of the person on the canvas.
        y0, x0, y1, x1 = max(0, y), max(0, x), min(ch, y + th), min(cw, x + tw)
        if y0 >= y1 or x0 >= x1:
            return
        src = (slice(y0 - y, y1 - y), slice(x0 - x, x1 - x))
        dst = (slice(y0, y1), slice(x0, x1))
        paste_mask = person_label[src] != 0
        # A one-pixel feather hides the cut-out's jagged edge in the image; labels stay hard.
        alpha = cv2.GaussianBlur(paste_mask.astype(np.float32), (3, 3), 0)[..., None]
        region = canvas[dst].astype(np.float32)
        canvas[dst] = np.clip(alpha * person[src] + (1 - alpha) * region + 0.5, 0, 255).astype(np.uint8)
        canvas_label[dst] = np.where(paste_mask, person_label[src], canvas_label[dst])


# ---------------------------------------------------------------------------------------------
# The training dataset


class TrainDataset(Dataset):
    """Raw (image, label) samples -> copy-paste -> scale/crop/flip -> photometric, reproducibly.

    Args:
        base: Dataset of raw ``(H x W x 3 uint8, H x W uint8)`` pairs, e.g. an
            ``ssfnet.data.MixedDataset`` without a transform; its ``set_epoch`` is forwarded.
        transform: Geometric transform called as ``transform(image, label, rng=rng)`` and returning
            (3 x h x w uint8 tensor, h x w int64 tensor), e.g. ``ssfnet.data.TrainTransform``.
        copy_paste: Composition to apply with probability ``copy_paste_prob``.
        copy_paste_prob: Probability of a composed canvas.
        photometric: Applied per sample here; leave None when the batch is augmented on the GPU.
        seed: Run seed; sample ``i`` of epoch ``e`` draws from ``default_rng([seed, e, i])``.
    """

    def __init__(
        self,
        base: Dataset,
        transform: Callable,
        *,
        copy_paste: CopyPaste | None = None,
        copy_paste_prob: float = 0.0,
        photometric: Photometric | None = None,
        seed: int = 0,
    ) -> None:
        self.base = base
        self.transform = transform
        self.copy_paste = copy_paste
        self.copy_paste_prob = float(copy_paste_prob) if copy_paste is not None else 0.0
        self.photometric = photometric if photometric is not None and photometric.active else None
        self.seed = int(seed)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)
        if hasattr(self.base, "set_epoch"):
            self.base.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.base)

    def _draw(self, rng: np.random.Generator) -> Sample:
        return self.base[int(rng.integers(len(self.base)))]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        rng = np.random.default_rng([self.seed, self.epoch, int(index)])
        image, label = self.base[index]
        if self.copy_paste_prob > 0 and rng.random() < self.copy_paste_prob:
            image, label = self.copy_paste(image, label, self._draw, rng)
        image_t, label_t = self.transform(image, label, rng=rng)
        if self.photometric is not None:
            generator = torch.Generator().manual_seed(int(rng.integers(2**62)))
            image_t = self.photometric(image_t[None], generator)[0]
        return image_t, label_t


def batch_generator(seed: int, iteration: int) -> torch.Generator:
    """The generator of the GPU-side photometric parameters of one step (reproducible on resume)."""
    return torch.Generator().manual_seed(int(np.random.default_rng([seed, 1 << 20, iteration]).integers(2**62)))


def save_augment_grid(
    dataset: TrainDataset,
    label_set: LabelSet,
    path: str | Path,
    *,
    count: int = 12,
    photometric: Photometric | None = None,
    columns: int = 4,
) -> Path:
    """Write a PNG grid of ``count`` training samples: each is the image beside its colourised labels.

    Args:
        dataset: The training dataset (its current epoch's first samples are shown).
        label_set: For the label colours (ignore is white).
        path: Output PNG.
        count: Number of samples.
        photometric: The batch-level augmentation when it runs on the GPU, applied here on the CPU
            so the grid shows what the network sees.
        columns: Samples per row.
    """
    tiles = []
    for i in range(min(count, len(dataset))):
        image, label = dataset[i]
        if photometric is not None and photometric.active:
            image = photometric(image[None], batch_generator(dataset.seed, i))[0]
        rgb = image.permute(1, 2, 0).numpy()
        colours = label_set.colourise(label.numpy().astype(np.uint8))
        tiles.append(np.concatenate([rgb, colours], axis=1))
    if not tiles:
        raise ValueError("the dataset is empty")
    h = max(t.shape[0] for t in tiles)
    w = max(t.shape[1] for t in tiles)
    pad = 4
    rows = math.ceil(len(tiles) / columns)
    sheet = np.full((rows * (h + pad) + pad, columns * (w + pad) + pad, 3), 255, np.uint8)
    for k, tile in enumerate(tiles):
        r, c = divmod(k, columns)
        y, x = pad + r * (h + pad), pad + c * (w + pad)
        sheet[y : y + tile.shape[0], x : x + tile.shape[1]] = tile
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(sheet).save(path)
    return path
