import numpy as np
import pytest
import torch

from cnnarch.data import load_dataset, parse_synthetic
from cnnarch.errors import UserError


def test_digits_split_is_fixed_stratified_and_uint8():
    a = load_dataset("digits", seed=0)
    b = load_dataset("digits", seed=123)  # the split never depends on the training seed
    assert a.train_images.shape == (1437, 1, 8, 8) and a.test_images.shape == (360, 1, 8, 8)
    assert a.train_images.dtype == torch.uint8 and a.train_labels.dtype == torch.int64
    assert torch.equal(a.test_images, b.test_images) and torch.equal(a.train_labels, b.train_labels)
    assert int(a.train_images.max()) == 255 and int(a.train_images.min()) == 0
    counts = torch.bincount(a.test_labels, minlength=10)
    assert counts.min() >= 35 and counts.max() <= 37  # stratified: ~36 per class
    assert a.num_classes == 10 and a.in_chans == 1 and a.image_size == (8, 8)
    assert a.classes == [str(i) for i in range(10)]


def test_normalisation_stats_come_from_the_training_split():
    d = load_dataset("digits")
    x = d.train_images.double() / 255
    assert d.mean[0] == pytest.approx(float(x.mean()), abs=1e-9)
    assert d.std[0] == pytest.approx(float(x.std()), abs=1e-9)
    z = d.normalize(d.train_images)
    assert z.dtype == torch.float32
    assert float(z.mean()) == pytest.approx(0.0, abs=1e-4) and float(z.std()) == pytest.approx(1.0, abs=1e-3)


def test_digits_val_split_holds_out_part_of_train():
    d = load_dataset("digits", val_split=True)
    assert d.eval_split == "val" and len(d.test_labels) == 144 and len(d.train_labels) == 1293


def test_train_batches_shard_a_global_batch_across_ranks():
    d = load_dataset("digits")
    one = list(d.train_batches(64, torch.Generator().manual_seed(3)))
    parts = [list(d.train_batches(64, torch.Generator().manual_seed(3), rank=r, world=2)) for r in (0, 1)]
    assert len(one) == 1437 // 64
    for i, (x, y) in enumerate(one):
        assert torch.equal(torch.cat([parts[0][i][0], parts[1][i][0]]), x)
        assert torch.equal(torch.cat([parts[0][i][1], parts[1][i][1]]), y)


def test_synthetic_spec():
    d = load_dataset("synthetic:3x20x24:7:40", seed=1)
    assert d.train_images.shape == (40, 3, 20, 24) and d.test_images.shape == (10, 3, 20, 24)
    assert d.num_classes == 7 and int(d.train_labels.max()) < 7
    assert parse_synthetic("synthetic") == ((3, 32, 32), 10, 512)
    for bad in ("synthetic:3x32", "synthetic:axbxc:10", "synthetic:3x32x32:0", "synthetic:1x2x3:4:5:6"):
        with pytest.raises(UserError, match="synthetic"):
            parse_synthetic(bad)


def test_unknown_dataset_lists_choices():
    with pytest.raises(UserError, match="digits, cifar10, cifar100, synthetic"):
        load_dataset("mnist")


def test_cifar10_from_archive_and_extracted_folder(cifar10_archive):
    d = load_dataset("cifar10", data_dir=cifar10_archive)
    assert d.train_images.shape == (100, 3, 32, 32) and d.test_images.shape == (30, 3, 32, 32)
    assert d.classes[0] == "airplane" and d.num_classes == 10
    # the same pixels as the pickle: row-major 3 x 32 x 32 (R plane, G plane, B plane)
    import pickle
    raw = pickle.load(open(cifar10_archive.parent / "cifar-10-batches-py" / "data_batch_1", "rb"),
                      encoding="bytes")
    assert np.array_equal(d.train_images[0].numpy().reshape(-1), raw[b"data"][0])
    assert d.train_labels[0].item() == raw[b"labels"][0]
    again = load_dataset("cifar10", data_dir=cifar10_archive.parent / "cifar-10-batches-py")
    assert torch.equal(again.train_images, d.train_images)
    split = load_dataset("cifar10", data_dir=cifar10_archive.parent, val_split=True)
    assert len(split.train_labels) == 90 and len(split.test_labels) == 10 and split.eval_split == "val"
    assert d.aug.pad == 4 and d.aug.flip


def test_cifar100_fine_labels(cifar100_archive):
    d = load_dataset("cifar100", data_dir=cifar100_archive)
    assert d.num_classes == 100 and d.classes[5] == "fine5" and d.train_images.shape[0] == 100


def test_cifar_missing_without_download(tmp_path):
    with pytest.raises(UserError, match="--download"):
        load_dataset("cifar10", data_dir=tmp_path)


def test_corrupt_archive_is_a_clear_error(tmp_path):
    bad = tmp_path / "cifar-10-python.tar.gz"
    bad.write_bytes(b"\x1f\x8b\x08\x00garbage" * 10)
    with pytest.raises(UserError):
        load_dataset("cifar10", data_dir=tmp_path)


def test_cifar_pickle_cannot_run_code(tmp_path):
    import os
    import pickle

    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch", "batches.meta"]:
        (folder / name).write_bytes(pickle.dumps({b"data": Evil()}, protocol=2))
    with pytest.raises(UserError, match="refusing|cannot read"):
        load_dataset("cifar10", data_dir=tmp_path)
    assert not marker.exists()


def test_imagefolder(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    for cls in ("cat", "dog"):
        (tmp_path / cls).mkdir()
        for i in range(5):
            Image.fromarray(rng.integers(0, 255, (12, 10, 3), dtype=np.uint8)).save(tmp_path / cls / f"{i}.png")
    d = load_dataset(f"imagefolder:{tmp_path}", image_size=16, workers=0)
    assert d.classes == ["cat", "dog"] and d.in_chans == 3
    x, y = next(d.train_batches(4))
    assert x.shape == (4, 3, 16, 16) and x.dtype == torch.float32
    assert sum(len(b[1]) for b in d.eval_batches(8)) == 2
    (tmp_path / "dog" / "broken.png").write_bytes(b"not an image")
    with pytest.raises(UserError, match="broken.png"):  # at load (stats) or in a worker
        d = load_dataset(f"imagefolder:{tmp_path}", image_size=16, workers=1)
        for epoch in range(3):
            for _batch in d.train_batches(2, epoch=epoch):
                pass
            for _batch in d.eval_batches(2):
                pass


def test_imagefolder_empty_is_a_clear_error(tmp_path):
    with pytest.raises(UserError, match="image folder"):
        load_dataset(f"imagefolder:{tmp_path}")
    with pytest.raises(UserError, match="does not exist"):
        load_dataset(f"imagefolder:{tmp_path / 'nope'}")


def test_imagefolder_worker_error_names_the_file(tmp_path):
    from PIL import Image

    from cnnarch.data.imagefolder import ImageFolderData

    for cls in ("a", "b"):
        (tmp_path / cls).mkdir()
        for i in range(4):
            Image.new("RGB", (8, 8), (i * 40, 0, 0)).save(tmp_path / cls / f"{i}.png")
    d = ImageFolderData(str(tmp_path), image_size=8, workers=1)
    victim = d._train[0][0]
    open(victim, "wb").write(b"garbage")
    with pytest.raises(UserError, match=victim.split("/")[-1]) as info:
        list(d.train_batches(2))
    assert "\n" not in str(info.value)


def test_random_labels_permute_each_split_with_a_fixed_generator():
    base = load_dataset("digits")
    d = load_dataset("digits+random-labels", seed=5)
    again = load_dataset("digits+random-labels", seed=0)  # the training seed does not move it
    assert d.name == "digits+random-labels" and d.num_classes == 10
    assert torch.equal(d.train_images, base.train_images) and torch.equal(d.test_images, base.test_images)
    assert torch.equal(d.train_labels, again.train_labels) and torch.equal(d.test_labels, again.test_labels)
    for split in ("train", "test"):
        new, old = getattr(d, f"{split}_labels"), getattr(base, f"{split}_labels")
        assert torch.equal(torch.bincount(new, minlength=10), torch.bincount(old, minlength=10))
        # a label agrees with its image's true label about as often as chance (10 %)
        assert float((new == old).float().mean()) < 0.2, split
    assert d.mean == base.mean and d.std == base.std


def test_random_labels_reach_the_training_loop():
    from cnnarch.train import TrainConfig, train

    cfg = TrainConfig(model="resnet20", data="synthetic:1x8x8:4:64+random-labels", epochs=1,
                      batch_size=32, device="cpu", quiet=True, seed=0)
    result = train(cfg)
    assert len(result.history) == 1 and result.history[0]["step"] == 2
    with pytest.raises(UserError, match="unknown dataset"):
        load_dataset("nosuch+random-labels")
