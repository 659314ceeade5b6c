"""Datasets, splits, bad-data errors and the batched on-device augmentation."""

import os
import pickle

import numpy as np
import pytest
import torch
from PIL import Image

from convzoo.data.augment import cutout, mixup_cutmix, random_crop_flip, soft_targets
from convzoo.data.build import load_splits
from convzoo.data.datasets import (
    ArrayDataset,
    DataError,
    load_cifar,
    load_digits,
    read_image,
    stratified_split,
)
from convzoo.data.device_loader import DeviceAugment, DeviceLoader
from convzoo.data.transforms import WorkerLoader


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CONVZOO_CACHE", str(tmp_path / "cache"))


def _write_folder(root, classes, n=3, size=8, bad=None):
    for c in classes:
        (root / c).mkdir(parents=True)
        for i in range(n):
            Image.fromarray(np.full((size, size, 3), 20 * i, np.uint8)).save(root / c / f"{i}.png")
    if bad is not None:
        (root / classes[0] / bad).write_bytes(b"\x89PNG\r\n\x1a\nthis is not an image")
    return root


def test_embedded_digits_split_is_stratified_and_fixed():
    d = load_digits(16)
    assert d.images.shape == (1797, 3, 16, 16) and d.images.dtype == torch.uint8
    assert d.classes == [str(i) for i in range(10)] and d.images.max() > 200
    tr, va = stratified_split(d.labels, 0.1, seed=0)
    assert len(set(tr.tolist()) & set(va.tolist())) == 0 and len(tr) + len(va) == 1797
    counts = torch.bincount(d.labels[va], minlength=10)
    assert counts.min() >= 17 and counts.max() <= 19  # 10% of each class of ~180
    _, va2 = stratified_split(d.labels, 0.1, seed=0)
    assert torch.equal(va, va2)
    assert not torch.equal(va, stratified_split(d.labels, 0.1, seed=1)[1])


def test_cifar_sized_split_is_45k_5k():
    labels = torch.arange(10).repeat_interleave(5000)
    tr, va = stratified_split(labels, 0.1, seed=0)
    assert len(tr) == 45000 and len(va) == 5000
    assert torch.bincount(labels[va]).tolist() == [500] * 10


def test_cifar_pickle_layout(tmp_path):
    base = tmp_path / "cifar-10-batches-py"
    base.mkdir()
    rng = np.random.default_rng(0)
    for i in range(1, 6):
        batch = {"data": rng.integers(0, 255, (20, 3072), dtype=np.uint8), "labels": [i % 10] * 20}
        (base / f"data_batch_{i}").write_bytes(pickle.dumps(batch))
    (base / "test_batch").write_bytes(pickle.dumps({"data": np.zeros((10, 3072), np.uint8),
                                                    "labels": list(range(10))}))  # fmt: skip
    (base / "batches.meta").write_bytes(pickle.dumps({"label_names": [f"c{i}" for i in range(10)]}))
    train = load_cifar(tmp_path, "cifar10", "train")
    assert train.images.shape == (100, 3, 32, 32) and train.classes[3] == "c3"
    # The flat rows are channel-major (R plane, G plane, B plane).
    first = pickle.loads((base / "data_batch_1").read_bytes())["data"][0]
    assert torch.equal(train.images[0, 1].flatten(), torch.from_numpy(first[1024:2048]))
    splits = load_splits(str(tmp_path), image_size=32, split="test")
    assert len(splits.val) == 10
    with pytest.raises(DataError, match="--download"):
        load_cifar(tmp_path / "nowhere", "cifar10")


def test_missing_dir_empty_class_and_mismatched_classes(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_splits(str(tmp_path / "missing"), image_size=8)
    _write_folder(tmp_path / "a" / "train", ["cat", "dog"])
    (tmp_path / "a" / "train" / "emu").mkdir()
    with pytest.raises(DataError, match="emu holds no images"):
        load_splits(str(tmp_path / "a"), image_size=8)
    _write_folder(tmp_path / "b" / "train", ["cat", "dog"])
    _write_folder(tmp_path / "b" / "val", ["cat", "eel"])
    with pytest.raises(DataError, match=r"only in train \['dog'\], only in val \['eel'\]"):
        load_splits(str(tmp_path / "b"), image_size=8)


@pytest.mark.parametrize("loader", ["device", "workers"])
def test_corrupt_image_fails_with_path_or_is_skipped(tmp_path, loader):
    root = _write_folder(tmp_path / "d", ["cat", "dog"], n=4, bad="broken.png")
    with pytest.raises(DataError, match=r"cat/broken\.png"):
        load_splits(str(root), image_size=8, loader=loader, val_fraction=0.25)
    s = load_splits(str(root), image_size=8, loader=loader, val_fraction=0.25, on_bad_image="skip")
    assert len(s.skipped) == 1 and s.skipped[0].endswith("broken.png")
    assert len(s.train) + len(s.val) == 8  # the 8 good images, the broken one dropped


def test_folder_with_train_and_val(tmp_path):
    _write_folder(tmp_path / "train", ["a", "b", "c"], n=4, size=10)
    _write_folder(tmp_path / "val", ["a", "b", "c"], n=2, size=12)
    s = load_splits(str(tmp_path), image_size=8)
    assert isinstance(s.train, ArrayDataset) and s.classes == ["a", "b", "c"]
    assert s.train.images.shape == (12, 3, 8, 8) and s.val.images.shape == (6, 3, 8, 8)


def test_decoded_folder_is_cached_and_invalidated(tmp_path):
    root = _write_folder(tmp_path / "c", ["a", "b"], n=2, size=8)
    first = load_splits(str(root), image_size=8, val_fraction=0.5)
    files = list((tmp_path / "cache").rglob("*.pt"))
    assert len(files) == 2  # train and val subsets
    again = load_splits(str(root), image_size=8, val_fraction=0.5)
    assert torch.equal(first.train.images, again.train.images)
    # A changed image changes the key: decoded afresh, not served stale from the cache.
    path = root / "a" / "0.png"
    Image.fromarray(np.full((8, 8, 3), 99, np.uint8)).save(path)
    os.utime(path, ns=(1, 1))
    changed = load_splits(str(root), image_size=8, val_fraction=0.5)
    both = torch.cat([changed.train.images, changed.val.images])
    assert (both == 99).all(dim=(1, 2, 3)).any()


def test_crop_flip_windows_match_padded_image():
    x = torch.randint(0, 255, (6, 3, 8, 8), dtype=torch.uint8)
    g = torch.Generator().manual_seed(0)
    out = random_crop_flip(x, 2, True, g, 6, slice(0, 6))
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2))
    for i in range(6):
        windows = [padded[i, :, a : a + 8, b : b + 8] for a in range(5) for b in range(5)]
        windows += [w.flip(-1) for w in windows]
        assert any(torch.equal(out[i], w) for w in windows)
    same = random_crop_flip(x, 0, False, g, 6, slice(0, 6))
    assert torch.equal(same, x)


def test_cutout_zeroes_at_most_a_square():
    x = torch.full((8, 1, 16, 16), 7, dtype=torch.uint8)
    out = cutout(x, 4, torch.Generator().manual_seed(0), 8, slice(0, 8))
    zeros = (out == 0).flatten(1).sum(1)
    assert zeros.max() <= 16 and zeros.sum() > 0


def test_mixup_and_cutmix_targets_are_convex():
    x = torch.randn(4, 3, 8, 8)
    t = soft_targets(torch.tensor([0, 1, 2, 3]), 5, smoothing=0.1)
    assert torch.allclose(t.sum(1), torch.ones(4)) and abs(t[0, 0].item() - 0.92) < 1e-6
    for mix, cut in [(0.8, 0.0), (0.0, 1.0)]:
        xm, tm = mixup_cutmix(x, t, mix, cut, torch.Generator().manual_seed(1))
        assert xm.shape == x.shape and torch.allclose(tm.sum(1), torch.ones(4))
        # Sample 0 (class 0) is mixed with sample 3 (the batch reversed): own weight lambda.
        lam = (tm[0, 0].item() - 0.02) / 0.9
        assert 0.0 < lam <= 1.0
        if cut:  # the pasted box covers exactly 1 - lambda of the image
            pasted = (xm[0] != x[0]).any(0).float().mean().item()
            assert abs(pasted - (1 - lam)) < 1e-6
        else:
            assert torch.allclose(xm[0], lam * x[0] + (1 - lam) * x[3], atol=1e-6)


def test_device_loader_shards_are_the_single_process_batch():
    d = load_digits(8).subset(torch.arange(40))
    aug = DeviceAugment(crop_padding=2, hflip=True, cutout=3)
    kw = dict(device="cpu", mean=[0.1] * 3, std=[0.3] * 3, augment=aug, shuffle=True, seed=5)
    single = DeviceLoader(d, 8, **kw)
    ranks = [DeviceLoader(d, 4, rank=r, world_size=2, **kw) for r in (0, 1)]
    for ldr in (single, *ranks):
        ldr.set_epoch(3)
    assert len(single) == len(ranks[0]) == 5
    for (x, y), (x0, y0), (x1, y1) in zip(single, *ranks):
        assert torch.equal(x, torch.cat([x0, x1])) and torch.equal(y, torch.cat([y0, y1]))
    # Resuming mid-epoch gives the same batches.
    assert torch.equal(list(single.iterate(0))[3][0], next(single.iterate(3))[0])
    single.set_epoch(4)
    assert not torch.equal(next(iter(single))[1], next(ranks[0].iterate(0))[1][:8])


@pytest.mark.parametrize("workers", [0, pytest.param(1, marks=pytest.mark.isolated)])
def test_worker_loader_draws_and_augments_as_the_device_loader(tmp_path, workers):
    root = _write_folder(tmp_path / "f", ["a", "b"], n=5, size=20)
    for i, p in enumerate(sorted(root.rglob("*.png"))):  # distinct images
        Image.fromarray(np.random.default_rng(i).integers(0, 255, (20, 20, 3), np.uint8)).save(p)
    on_device = load_splits(str(root), image_size=16, loader="device", val_fraction=0.2)
    on_workers = load_splits(str(root), image_size=16, loader="workers", val_fraction=0.2)
    aug = DeviceAugment(crop_padding=2, hflip=True, cutout=4, randaugment_n=2)
    kw = dict(device="cpu", mean=[0.4] * 3, std=[0.2] * 3, augment=aug, shuffle=True, seed=3)
    dev = DeviceLoader(on_device.train, 3, **kw)
    wrk = WorkerLoader(on_workers.train, 3, size=16, workers=workers, **kw)
    for ldr in (dev, wrk):
        ldr.set_epoch(2)
    pairs = list(zip(dev, wrk))
    assert len(pairs) == len(dev) == len(wrk) == 3
    for (xd, yd), (xw, yw) in pairs:
        assert torch.equal(yd, yw) and torch.equal(xd, xw)
    # Mid-epoch resume: the same batch 2, with the same augmentation draws.
    assert torch.equal(next(wrk.iterate(2))[0], pairs[2][1][0])


def test_fifo_in_the_data_folder_is_skipped_not_opened(tmp_path):
    root = _write_folder(tmp_path / "d", ["cat", "dog"], n=4)
    os.mkfifo(root / "cat" / "pipe.png")  # opening it for reading would wait for a writer
    for loader in ("device", "workers"):
        s = load_splits(str(root), image_size=8, loader=loader, val_fraction=0.25)
        assert [p.endswith("pipe.png") for p in s.skipped] == [True]
        assert len(s.train) + len(s.val) == 8
    with pytest.raises(OSError, match="is not a regular file"):
        read_image(root / "cat" / "pipe.png")


def test_truncated_cifar_meta_is_a_data_error(tmp_path):
    base = tmp_path / "cifar-10-batches-py"
    base.mkdir()
    batch = {"data": np.zeros((2, 3072), np.uint8), "labels": [0, 1]}
    for i in range(1, 6):
        (base / f"data_batch_{i}").write_bytes(pickle.dumps(batch))
    meta = pickle.dumps({"label_names": [f"c{i}" for i in range(10)]})
    (base / "batches.meta").write_bytes(meta[: len(meta) // 2])
    with pytest.raises(DataError, match=r"batches\.meta.*truncated or damaged"):
        load_cifar(tmp_path)
