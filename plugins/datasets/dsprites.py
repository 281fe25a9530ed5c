"""dSprites (Matthey et al. 2017), rendered here, with its exact ground-truth factors.

The published grid: shape 3 (square, ellipse, heart) x scale 6
(linspace(0.5, 1, 6)) x orientation 40 (linspace(0, 2 pi, 40), the endpoint
included as in the release, so 0 and 2 pi draw the same sprite) x posX 32 x
posY 32 (linspace(0, 1, 32)): 737,280 binary 64 x 64 images, in the
release's row-major order (posY fastest).

Where the pixels come from (param ``source``):

1. ``npz``: the official ``dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz``
   under the data root (or ``<root>/dsprites/``), read with
   ``allow_pickle=False``: only ``imgs``, ``latents_classes`` and
   ``latents_values`` are read (its ``metadata`` entry is a pickle and is
   never loaded); rows are placed by their ``latents_classes`` and their
   ``latents_values`` are checked against the grid;
2. ``render``: a procedural rendering (no download), deterministic and
   vectorised: each of the 720 (shape, scale, orientation) sprites is
   rasterised once at pixel centres into a 32 x 32 patch, then pasted at the
   32 x 32 integer offsets (posX -> column 16 + 31 posX of the sprite's
   centre, posY -> row 16 + 31 posY, downwards). Scale 1: the square's side is
   20 px, the ellipse's axes 28 x 14 px, the heart about 23 px wide; rotation
   is anticlockwise on screen. These sizes are ours (the release documents
   none); the factors and their values are the release's. As in the
   release, orientation is visible only up to the shape's symmetry (a square
   turned by about pi/2, an ellipse by pi, draws the same pixels).

``auto`` (default) reads the npz when present, else renders. The strided,
pooled grid is cached under the data root as ``dsprites/benchbed-*.npy``
(bit-packed at 64 px: 377 MB for the full grid, which is kept packed in
memory too), so later processes skip the drawing. The full grid's float32
pixels take 12 GB (train 10.9, test 1.2): the paper profile wants a large
machine; the strided grids of the cpu and tiny profiles take megabytes.

Options: ``stride`` keeps every k-th value of a factor (a CPU-sized grid);
``image_size`` 32 or 16 box-filters the 64-px images (grey levels, so the
32 positions stay distinct). The grid is split at random (``seed``) into
train and test (``test_fraction``). Labels y = shape (3 classes), so
class-based metrics (SVM) run beside the disentanglement scores.

``colour_dsprites``: the same grid in RGB, each image given a hue drawn
uniformly in [0, 1) (seeded; saturation and value 1), a sixth, continuous
factor ``hue`` (binned into ``hue_bins`` classes for the discrete scores).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from pydantic import Field, PositiveInt, field_validator

from benchbed import hookimpl
from benchbed.components import Dataset, DatasetInfo, Factors, Params, Split
from benchbed.errors import did_you_mean

from benchbed_plugins.datasets import datafiles as df

OFFICIAL_FILE = "dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz"
FACTOR_NAMES = ("shape", "scale", "orientation", "pos_x", "pos_y")
GRID_SIZES = (3, 6, 40, 32, 32)
SHAPES = ("square", "ellipse", "heart")
IMAGE = 64  # the release's image side
PATCH = 32  # side of the patch one sprite is drawn in; 32 offsets fill the image
UNIT = 10.0  # px: half the square's side at scale 1
RENDER_VERSION = 1  # part of the cache file name: bump when the drawing changes


def factor_values() -> list[np.ndarray]:
    """The release's latents_values per factor (shape is 1, 2, 3 there)."""
    pos = np.linspace(0.0, 1.0, 32)
    return [np.array([1.0, 2.0, 3.0]), np.linspace(0.5, 1.0, 6),
            np.linspace(0.0, 2 * math.pi, 40), pos, pos]


# ------------------------------------------------------------------ drawing


def _inside(shape: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Whether unit-frame points (u right, v up) lie in the shape at scale 1."""
    if shape == "square":
        return np.maximum(np.abs(u), np.abs(v)) <= 1.0
    if shape == "ellipse":
        return (u / 1.4) ** 2 + (v / 0.7) ** 2 <= 1.0
    # the heart curve (x^2 + y^2 - 1)^3 = x^2 y^3, centred and scaled to ~the square's area
    x, y = u / 1.0, v / 1.0 + 0.1
    return (x * x + y * y - 1.0) ** 3 - x * x * y ** 3 <= 0.0


def sprite_patches(scales: np.ndarray, angles: np.ndarray) -> np.ndarray:
    """uint8 (3, S, O, PATCH, PATCH): every sprite centred in its patch, sampled
    at pixel centres (rows downwards)."""
    centres = np.arange(PATCH) + 0.5 - PATCH / 2  # px from the patch centre
    col, row = np.meshgrid(centres, centres)  # (PATCH, PATCH)
    x, y = col, -row  # y up
    cos = np.cos(angles)[:, None, None]
    sin = np.sin(angles)[:, None, None]
    # rotate the sample points by -theta: the sprite turns by +theta (anticlockwise)
    u0 = cos * x + sin * y  # (O, P, P)
    v0 = -sin * x + cos * y
    size = (scales * UNIT)[:, None, None, None]  # (S, 1, 1, 1)
    u, v = u0[None] / size, v0[None] / size  # (S, O, P, P)
    return np.stack([_inside(s, u, v) for s in SHAPES]).astype(np.uint8)


def render_grid(idx: list[np.ndarray]) -> np.ndarray:
    """uint8 binary images (N, 64, 64) of the grid points ``idx`` (class indices
    kept per factor), in row-major order."""
    values = factor_values()
    patches = sprite_patches(values[1][idx[1]], values[2][idx[2]])[idx[0]]  # (sh, S, O, P, P)
    nx, ny = len(idx[3]), len(idx[4])
    out = np.zeros(patches.shape[:3] + (nx, ny, IMAGE, IMAGE), dtype=np.uint8)
    for a, ix in enumerate(idx[3]):
        for b, iy in enumerate(idx[4]):
            out[:, :, :, a, b, iy:iy + PATCH, ix:ix + PATCH] = patches
    return out.reshape(-1, IMAGE, IMAGE)


def box_filter(images: np.ndarray, size: int) -> np.ndarray:
    """Sum of f x f blocks (f = 64 / size): uint8 counts 0..f^2 per pixel."""
    f = IMAGE // size
    if f == 1:
        return images
    return images.reshape(-1, size, f, size, f).sum(axis=(2, 4), dtype=np.uint16).astype(np.uint8)


# ---------------------------------------------------------------- the grid


def grid_indices(stride: dict[str, int]) -> list[np.ndarray]:
    return [np.arange(0, n, stride.get(name, 1)) for name, n in zip(FACTOR_NAMES, GRID_SIZES)]


def grid_classes(idx: list[np.ndarray]) -> np.ndarray:
    """(N, 5) int64 class indices into the FULL grid, row-major like the release."""
    mesh = np.meshgrid(*idx, indexing="ij")
    return np.stack([m.reshape(-1) for m in mesh], axis=1).astype(np.int64)


def find_official(root: Path) -> Path | None:
    for place in (root / OFFICIAL_FILE, root / "dsprites" / OFFICIAL_FILE):
        if place.is_file():
            return place
    return None


def read_official(path: Path, idx: list[np.ndarray]) -> np.ndarray:
    """The release's images of the grid points ``idx`` (row-major), placed by
    latents_classes; values checked against the grid. Never unpickles."""
    with np.load(path, allow_pickle=False) as npz:
        missing = [k for k in ("imgs", "latents_classes", "latents_values") if k not in npz.files]
        if missing:
            raise df.DataCorrupted(f"dsprites: {path} lacks {', '.join(missing)}")
        classes = np.asarray(npz["latents_classes"]).astype(np.int64)
        values = np.asarray(npz["latents_values"], dtype=np.float64)
        if classes.ndim != 2 or classes.shape[1] != 6 or values.shape != classes.shape:
            raise df.DataCorrupted(f"dsprites: {path}: latents must be (N, 6) (colour + 5 factors), "
                                   f"got {classes.shape} and {values.shape}")
        grid = factor_values()
        for k, name in enumerate(FACTOR_NAMES):
            c = classes[:, k + 1]
            if c.min() < 0 or c.max() >= GRID_SIZES[k]:
                raise df.DataCorrupted(f"dsprites: {path}: {name} classes outside 0..{GRID_SIZES[k] - 1}")
            if not np.allclose(values[:, k + 1], grid[k][c], atol=1e-6):
                raise df.DataCorrupted(f"dsprites: {path}: {name} values disagree with the "
                                       f"published grid for their classes")
        flat = np.ravel_multi_index(tuple(classes[:, 1:].T), GRID_SIZES)
        wanted = np.ravel_multi_index(tuple(grid_classes(idx).T), GRID_SIZES)
        row_of = np.full(int(np.prod(GRID_SIZES)), -1, dtype=np.int64)
        row_of[flat] = np.arange(len(flat))
        rows = row_of[wanted]
        if (rows < 0).any():
            raise df.DataCorrupted(f"dsprites: {path} holds {int((rows >= 0).sum())} of the "
                                   f"{len(rows)} grid points asked for")
        imgs = npz["imgs"]
        if imgs.shape[1:] != (IMAGE, IMAGE):
            raise df.DataCorrupted(f"dsprites: {path}: imgs must be N x 64 x 64, got {imgs.shape}")
        return (np.asarray(imgs[rows]) > 0).astype(np.uint8)


def cache_path(root: Path, source: str, idx: list[np.ndarray], size: int) -> Path:
    strides = "-".join(str(int(i[1] - i[0]) if len(i) > 1 else 1) for i in idx)
    return root / "dsprites" / f"benchbed-{source}-v{RENDER_VERSION}-{size}px-stride{strides}.npy"


def load_grid(root: Path, source: str, idx: list[np.ndarray], size: int) -> tuple[np.ndarray, str]:
    """The strided grid's images, one row each, and where they came from:
    64 px rows bit-packed (``np.packbits``, 512 bytes), pooled rows as uint8
    counts 0..f^2. Cached on disk in this form; ``unpack_rows`` opens them."""
    official = find_official(root)
    if source == "npz" and official is None:
        raise df.not_found("dsprites", [str(root / OFFICIAL_FILE), str(root / "dsprites" / OFFICIAL_FILE)],
                           "Put the official npz there, or use source: render (no download).")
    use = "npz" if official is not None and source != "render" else "render"
    path = cache_path(root, use, idx, size)
    if path.is_file() and (use == "render" or path.stat().st_mtime_ns >= official.stat().st_mtime_ns):
        return np.load(path, allow_pickle=False), use
    images = read_official(official, idx) if use == "npz" else render_grid(idx)
    flat = box_filter(images, size).reshape(len(images), -1)
    stored = np.packbits(flat, axis=1) if size == IMAGE else flat
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path.with_suffix(".tmp"), "wb") as fh:
            np.save(fh, stored, allow_pickle=False)
        path.with_suffix(".tmp").replace(path)
    except OSError:  # a read-only data root: go on without the disk cache
        pass
    return stored, use


def unpack_rows(stored: np.ndarray, rows: np.ndarray, size: int) -> np.ndarray:
    """uint8 images (len(rows), size, size) from the stored form."""
    picked = stored[rows]
    if size == IMAGE:
        picked = np.unpackbits(picked, axis=1, count=size * size)
    return picked.reshape(len(rows), size, size)


# ---------------------------------------------------------------- datasets


class DSprites(Dataset):
    """dSprites: 2-D shapes from 5 known factors (shape, scale, orientation, posX, posY), 64 x 64 binary.

    No download: rendered procedurally (or read from the official npz under
    the data root when present, ``allow_pickle=False``), deterministic, cached
    under the data root. Offers ``factors`` (the ground truth every
    disentanglement score reads) and labels y = shape.

    Params: ``stride`` (per factor, keep every k-th value, e.g.
    ``{orientation: 4, pos_x: 2}``), ``image_size`` (64, or 32/16 box-filtered),
    ``test_fraction`` and ``seed`` of the random train/test split, ``source``
    (auto, npz, render), ``root`` (default: the data root).
    """

    class Params(Params):
        stride: dict[str, PositiveInt] = Field(default_factory=dict, description="keep every k-th "
                                               "value of these factors (shape, scale, orientation, pos_x, pos_y)")
        image_size: Literal[16, 32, 64] = Field(64, description="64: the release; 32/16: box-filtered")
        test_fraction: float = Field(0.1, gt=0, lt=1, description="share of the grid held out as test")
        seed: int = Field(0, ge=0, description="seed of the random train/test split")
        source: Literal["auto", "npz", "render"] = Field("auto", description="auto: the official npz "
                                                         "when present, else render")
        root: str | None = Field(None, description="folder holding the data (default: the data root)")

        @field_validator("stride")
        @classmethod
        def _known_factors(cls, v):
            for name, k in v.items():
                if name not in FACTOR_NAMES:
                    raise ValueError(f"unknown factor {name!r}{did_you_mean(name, FACTOR_NAMES)} "
                                     f"(factors: {', '.join(FACTOR_NAMES)})")
                n = GRID_SIZES[FACTOR_NAMES.index(name)]
                if k >= n:  # one value left: the factor would not vary, and the scores drop it
                    raise ValueError(f"stride {k} keeps one of the {n} values of factor '{name}', which "
                                     f"then does not vary; the largest stride allowed is {n - 1}")
            return v

    channels = 1

    def info(self) -> DatasetInfo:
        s = self.params.image_size
        return DatasetInfo(shape=(self.channels, s, s), value_range=(0.0, 1.0), num_classes=3,
                           splits=("train", "test"), binary=s == IMAGE, factors=self.factor_names())

    def factor_names(self) -> tuple[str, ...]:
        return FACTOR_NAMES

    # -- the grid, once per process

    def _grid(self) -> dict:
        p = self.params
        idx = grid_indices(p.stride)
        root = df.resolve_root(p.root)
        key = ("dsprites", str(root), p.source, tuple(map(tuple, idx)), p.image_size, p.test_fraction, p.seed)
        return df.cached(key, lambda: self._build(root, idx))

    def _build(self, root: Path, idx: list[np.ndarray]) -> dict:
        p = self.params
        images, source = load_grid(root, p.source, idx, p.image_size)
        classes = grid_classes(idx)
        n = len(classes)
        order = torch.randperm(n, generator=torch.Generator().manual_seed(p.seed)).numpy()
        n_test = max(1, int(round(n * p.test_fraction)))
        rows = {"test": np.sort(order[:n_test]), "train": np.sort(order[n_test:])}
        return {"images": images, "classes": classes, "rows": rows, "idx": idx, "source": source}

    def _rows(self, split: str) -> tuple[dict, np.ndarray]:
        if split not in ("train", "test"):
            raise ValueError(f"dsprites has splits train and test, not {split!r}")
        grid = self._grid()
        return grid, grid["rows"][split]

    def load(self, split: str) -> Split:
        grid, rows = self._rows(split)
        levels = float((IMAGE // self.params.image_size) ** 2)
        pixels = unpack_rows(grid["images"], rows, self.params.image_size)
        x = df.to_unit_float(torch.from_numpy(pixels), levels).unsqueeze(1)
        y = torch.from_numpy(grid["classes"][rows, 0].copy())
        return Split(x=x, y=y)

    def factors(self, split: str) -> Factors:
        grid, rows = self._rows(split)
        full = grid["classes"][rows]  # classes of the full grid
        values = np.stack([v[full[:, k]] for k, v in enumerate(factor_values())], axis=1)
        # re-index each factor's classes within the strided grid: 0 .. len(idx_k) - 1
        strided = np.stack([np.searchsorted(grid["idx"][k], full[:, k]) for k in range(5)], axis=1)
        return Factors(names=FACTOR_NAMES, classes=torch.from_numpy(strided),
                       values=torch.from_numpy(values), sizes=tuple(len(i) for i in grid["idx"]))


_HUE_SALT = 0x48554531


def hue_to_rgb(hue: np.ndarray) -> np.ndarray:
    """(N,) hues in [0, 1) -> (N, 3) RGB at saturation and value 1."""
    from matplotlib.colors import hsv_to_rgb
    ones = np.ones_like(hue)
    return hsv_to_rgb(np.stack([hue, ones, ones], axis=1))


class ColourDSprites(DSprites):
    """Colour dSprites: the dSprites grid in RGB, each image of a uniformly drawn hue, a sixth, continuous factor.

    x = mask * rgb(hue) with hue ~ U[0, 1) per image (seeded by ``seed``),
    saturation and value 1. Factors: dSprites' five plus ``hue`` (value in
    [0, 1); class = floor(hue * hue_bins) for the discrete scores).

    Params: those of ``dsprites`` plus ``hue_bins`` (default 8).
    """

    class Params(DSprites.Params):
        hue_bins: PositiveInt = Field(8, description="classes the continuous hue is binned into")

    channels = 3

    def info(self) -> DatasetInfo:
        base = super().info()
        return DatasetInfo(shape=base.shape, value_range=base.value_range, num_classes=3,
                           splits=base.splits, binary=False, factors=self.factor_names())

    def factor_names(self) -> tuple[str, ...]:
        return FACTOR_NAMES + ("hue",)

    def _hues(self) -> np.ndarray:
        grid = self._grid()
        n = len(grid["classes"])
        key = ("dsprites-hue", n, self.params.seed)
        gen = torch.Generator().manual_seed(self.params.seed * 1_000_003 + _HUE_SALT)
        return df.cached(key, lambda: torch.rand(n, generator=gen, dtype=torch.float64).numpy())

    def load(self, split: str) -> Split:
        mono = super().load(split)
        _, rows = self._rows(split)
        rgb = torch.from_numpy(hue_to_rgb(self._hues()[rows])).float()
        return Split(x=mono.x * rgb[:, :, None, None], y=mono.y)

    def factors(self, split: str) -> Factors:
        base = super().factors(split)
        _, rows = self._rows(split)
        hue = torch.from_numpy(self._hues()[rows])
        bins = self.params.hue_bins
        hue_class = (hue * bins).long().clamp_(max=bins - 1)
        return Factors(names=self.factor_names(),
                       classes=torch.cat([base.classes, hue_class[:, None]], 1),
                       values=torch.cat([base.values, hue[:, None]], 1), sizes=base.sizes + (bins,))


@hookimpl
def register_datasets(register):
    register("dsprites", DSprites)
    register("colour_dsprites", ColourDSprites)
