"""dSprites: the published factor grid, the procedural rendering, the official
npz's layout (a fixture written here), the colour variant.

Known answers come from the release's documented grid (3 x 6 x 40 x 32 x 32,
linspace values, posY fastest) and from geometry: a square of side 20 s px
covers (20 s)^2 pixels and its centre of mass sits at the sprite's position.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from benchbed_plugins.datasets import datafiles
from benchbed_plugins.datasets import dsprites as ds
from benchbed_plugins.datasets.datafiles import DataCorrupted
from benchbed_plugins.datasets.dsprites import ColourDSprites, DSprites

SMALL = {"scale": 5, "orientation": 13, "pos_x": 8, "pos_y": 8}  # 3 x 2 x 4 x 4 x 4 = 384


@pytest.fixture(autouse=True)
def data_root(tmp_path, monkeypatch):
    monkeypatch.setenv("BENCHBED_DATA", str(tmp_path))
    datafiles.clear_cache()
    yield tmp_path
    datafiles.clear_cache()


def test_the_published_grid():
    values = ds.factor_values()
    assert [len(v) for v in values] == [3, 6, 40, 32, 32]
    assert np.prod(ds.GRID_SIZES) == 737_280
    assert values[1][0] == 0.5 and values[1][-1] == 1.0
    assert values[2][0] == 0.0 and values[2][-1] == pytest.approx(2 * math.pi)  # endpoint kept
    assert values[3][1] == pytest.approx(1 / 31)
    classes = ds.grid_classes(ds.grid_indices({}))
    assert classes.shape == (737_280, 5)
    # row-major, posY fastest, as the release's latents_classes
    assert classes[1].tolist() == [0, 0, 0, 0, 1] and classes[32].tolist() == [0, 0, 0, 1, 0]
    assert classes[-1].tolist() == [2, 5, 39, 31, 31]


def test_a_square_covers_its_area_at_its_position():
    idx = [np.array([0]), np.array([0, 5]), np.array([0]), np.array([3, 20]), np.array([7])]
    images = ds.render_grid(idx).reshape(2, 2, 64, 64)  # (scale, pos_x)
    for s, scale in enumerate((0.5, 1.0)):
        for a, px in enumerate((3, 20)):
            img = images[s, a]
            assert img.sum() == round(20 * scale) ** 2
            rows, cols = np.nonzero(img)
            assert cols.mean() == pytest.approx(px + 15.5)  # centre = 16 + 31 * posX (pixel centres)
            assert rows.mean() == pytest.approx(7 + 15.5)


def test_orientation_0_and_2pi_draw_the_same_sprite_and_others_differ():
    patches = ds.sprite_patches(np.array([1.0]), ds.factor_values()[2])
    assert np.array_equal(patches[:, :, 0], patches[:, :, -1])
    assert not np.array_equal(patches[2, :, 0], patches[2, :, 10])  # the heart turned
    assert len({p.tobytes() for p in patches[2, 0]}) == 39  # 40 angles, 0 = 2 pi


def test_split_partitions_the_strided_grid_and_factors_match_pixels():
    data = DSprites(stride=SMALL)
    train, test = data.load("train"), data.load("test")
    assert len(train) + len(test) == 384 and len(test) == round(384 * 0.1)
    f_train, f_test = data.factors("train"), data.factors("test")
    assert f_test.sizes == (3, 2, 4, 4, 4)
    every = torch.cat([f_train.classes, f_test.classes])
    assert len({tuple(r) for r in every.tolist()}) == 384  # every grid point once
    # each test image is the rendering of its own factor values
    idx = ds.grid_indices(SMALL)
    rendered = ds.render_grid(idx).reshape(3, 2, 4, 4, 4, 64, 64)
    for row, c in zip(test.x, f_test.classes.tolist()):
        assert torch.equal(row[0], torch.from_numpy(rendered[tuple(c)]).float())
    assert torch.equal(test.y, f_test.classes[:, 0])  # labels are the shape
    assert torch.allclose(f_test.values[:, 1], torch.tensor([0.5, 1.0], dtype=torch.float64)[f_test.classes[:, 1]])


def test_renders_once_then_reads_the_cache(data_root):
    first = DSprites(stride=SMALL).load("train").x
    cached = list((data_root / "dsprites").glob("benchbed-render-*.npy"))
    assert len(cached) == 1
    datafiles.clear_cache()
    stamp = cached[0].stat().st_mtime_ns
    assert torch.equal(DSprites(stride=SMALL).load("train").x, first)
    assert cached[0].stat().st_mtime_ns == stamp  # read, not rewritten


def test_smaller_images_keep_every_pixel_of_mass():
    big = DSprites(stride=SMALL).load("test").x
    small = DSprites(stride=SMALL, image_size=32).load("test").x
    assert small.shape[-2:] == (32, 32)
    assert torch.allclose(small.sum((1, 2, 3)) * 4, big.sum((1, 2, 3)))
    assert not DSprites(image_size=32).info().binary and DSprites().info().binary


def write_official(path, imgs, classes, values=None):
    """A file in the release's layout: uint8 imgs, int64 latents_classes and
    float64 latents_values with the colour column first, and a pickled
    ``metadata`` entry (an object array) that the loader must never open."""
    colour = np.zeros((len(classes), 1), dtype=np.int64)
    grid = ds.factor_values()
    if values is None:
        values = np.stack([g[classes[:, k]] for k, g in enumerate(grid)], 1)
    metadata = np.array({"description": "fixture"}, dtype=object)
    np.savez(path, imgs=imgs, latents_classes=np.hstack([colour, classes]),
             latents_values=np.hstack([colour + 1.0, values]), metadata=metadata)


def test_reads_the_official_npz_by_its_latents_classes(data_root):
    classes = ds.grid_classes(ds.grid_indices(SMALL))
    rng = np.random.default_rng(0)
    imgs = rng.integers(0, 2, size=(len(classes), 64, 64), dtype=np.uint8)
    shuffle = rng.permutation(len(classes))  # rows in any order are placed by their classes
    write_official(data_root / ds.OFFICIAL_FILE, imgs[shuffle], classes[shuffle])
    data = DSprites(stride=SMALL)
    assert data._grid()["source"] == "npz"
    test, factors = data.load("test"), data.factors("test")
    full = np.stack([np.searchsorted(i, c) for i, c in zip(ds.grid_indices(SMALL), classes.T)], 1)
    lookup = {tuple(c): k for k, c in enumerate(full.tolist())}
    for row, c in zip(test.x, factors.classes.tolist()):
        assert torch.equal(row[0], torch.from_numpy(imgs[lookup[tuple(c)]]).float())


def test_the_rendered_layout_agrees_with_the_official_one(data_root):
    idx = ds.grid_indices(SMALL)
    write_official(data_root / "official.npz", ds.render_grid(idx), ds.grid_classes(idx))
    (data_root / "dsprites").mkdir()
    (data_root / "official.npz").rename(data_root / "dsprites" / ds.OFFICIAL_FILE)
    from_file = DSprites(stride=SMALL, source="npz")
    rendered = DSprites(stride=SMALL, source="render")
    for split in ("train", "test"):
        assert torch.equal(from_file.load(split).x, rendered.load(split).x)
        assert torch.equal(from_file.factors(split).values, rendered.factors(split).values)


def test_an_npz_that_disagrees_with_the_grid_is_refused(data_root):
    idx = ds.grid_indices(SMALL)
    classes = ds.grid_classes(idx)
    imgs = np.zeros((len(classes), 64, 64), dtype=np.uint8)
    write_official(data_root / ds.OFFICIAL_FILE, imgs[:-1], classes[:-1])
    with pytest.raises(DataCorrupted, match="383 of the 384"):
        DSprites(stride=SMALL, source="npz").load("test")
    datafiles.clear_cache()
    values = np.stack([g[classes[:, k]] for k, g in enumerate(ds.factor_values())], 1)
    values[:, 1] *= 2  # scales that are not the release's
    write_official(data_root / ds.OFFICIAL_FILE, imgs, classes, values)
    with pytest.raises(DataCorrupted, match="scale values disagree"):
        DSprites(stride=SMALL, source="npz").load("test")


def test_unknown_stride_factor_is_named():
    with pytest.raises(ValueError, match="did you mean 'pos_x'"):
        DSprites(stride={"posx": 2})


def test_colour_variant_paints_each_sprite_its_hue():
    data = ColourDSprites(stride=SMALL, hue_bins=4)
    assert data.info().shape == (3, 64, 64) and data.info().factors[-1] == "hue"
    test, factors = data.load("test"), data.factors("test")
    mono = DSprites(stride=SMALL).load("test").x
    hue = factors.values[:, 5]
    assert ((hue >= 0) & (hue < 1)).all() and hue.unique().numel() == len(hue)  # continuous
    assert torch.equal(factors.classes[:, 5], (hue * 4).floor().long())
    for i in range(len(test)):
        mask = mono[i, 0] > 0
        colour = test.x[i][:, mask]  # (3, pixels)
        expected = torch.from_numpy(ds.hue_to_rgb(hue[i:i + 1].numpy())[0]).float()
        assert torch.allclose(colour, expected[:, None].expand_as(colour))
        assert (test.x[i][:, ~mask] == 0).all()


@pytest.mark.parametrize("cls", [DSprites, ColourDSprites])
def test_a_stride_leaving_a_factor_one_value_is_refused(cls):
    with pytest.raises(ValueError, match=r"stride 6 keeps one of the 6 values of factor 'scale', which "
                                         r"then does not vary; the largest stride allowed is 5"):
        cls(stride={"scale": 6})
    with pytest.raises(ValueError, match="factor 'shape'.*largest stride allowed is 2"):
        cls(stride={"shape": 50})
    assert cls(stride={"scale": 5, "shape": 2}).params.stride == {"scale": 5, "shape": 2}
