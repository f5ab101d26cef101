import gzip
import io
import os
import pickle
import tarfile

import numpy as np
import pytest
import torch

from kdforge.data import (
    DATASETS,
    AugmentSpec,
    BatchStream,
    DataConfig,
    InMemoryDataset,
    crop_flip,
    load_data,
    view_keys,
)
from kdforge.data.sources import CIFAR10_CLASSES, read_idx, stratified_split
from kdforge.errors import ConfigError, DataNotFoundError, UserError

# --- augmentation ------------------------------------------------------------------------------------

def reference_crop_flip(image: np.ndarray, dx: int, dy: int, flip: bool, pad: int) -> np.ndarray:
    """Zero-pad, cut the window at (dy, dx), then mirror: one image at a time, in numpy."""
    c, h, w = image.shape
    padded = np.zeros((c, h + 2 * pad, w + 2 * pad), dtype=image.dtype)
    padded[:, pad:pad + h, pad:pad + w] = image
    out = padded[:, dy:dy + h, dx:dx + w]
    return out[:, :, ::-1] if flip else out


def test_crop_flip_matches_per_image_reference():
    rng = np.random.RandomState(0)
    images = torch.from_numpy(rng.randint(0, 256, size=(16, 3, 8, 8), dtype=np.uint8))
    keys = view_keys(torch.arange(16), seed=3, epoch=5)
    spec = AugmentSpec(crop_padding=2, flip=True)
    out = crop_flip(images, keys, spec).numpy()
    for i, k in enumerate(keys.tolist()):
        expected = reference_crop_flip(images[i].numpy(), k % 5, (k >> 8) % 5, bool((k >> 16) & 1), 2)
        assert np.array_equal(out[i], expected)


def test_views_are_a_function_of_seed_epoch_and_index_only():
    images = torch.randint(0, 256, (40, 3, 8, 8), dtype=torch.uint8)
    data = InMemoryDataset(images, torch.arange(40) % 4, (0.5,) * 3, (0.25,) * 3)
    stream = BatchStream(data, 8, train=True, seed=11, augment=AugmentSpec(2, True))
    seen = {}
    for batch in stream.epoch(2):
        for i, x in zip(batch.index.tolist(), batch.input):
            seen[i] = x
    assert sorted(seen) == list(range(40))  # drop_last keeps 40 of 40 here
    # Recomputing any sample alone, or in another batch, gives the identical view.
    for i in (0, 7, 39):
        again = stream.view(torch.tensor([i, 3]), epoch=2)[0]
        assert torch.equal(again, seen[i])
    other_epoch = stream.view(torch.arange(40), epoch=3)
    assert not torch.equal(other_epoch, torch.stack([seen[i] for i in range(40)]))
    # Different seeds give different orders; the same seed the same order.
    assert torch.equal(stream.order(2), BatchStream(data, 8, train=True, seed=11).order(2))
    assert not torch.equal(stream.order(2), BatchStream(data, 8, train=True, seed=12).order(2))


def test_normalisation_and_flip_frequency():
    images = torch.full((2000, 1, 4, 4), 51, dtype=torch.uint8)
    images[:, :, :, 0] = 255
    data = InMemoryDataset(images, torch.zeros(2000, dtype=torch.long), (0.2,), (0.5,))
    stream = BatchStream(data, 2000, train=True, augment=AugmentSpec(0, True))
    x = next(iter(stream.epoch(0))).input
    assert torch.allclose(x[:, 0, 0, 1], torch.zeros(2000), atol=1e-6)  # (51/255 - 0.2) / 0.5 = 0
    flipped = (x[:, 0, 0, 3] > 1).float().mean().item()  # bright column moved to the right edge
    assert 0.45 < flipped < 0.55


def test_eval_stream_is_ordered_and_complete_and_shards_are_disjoint():
    data = InMemoryDataset(torch.zeros(10, 1, 2, 2, dtype=torch.uint8), torch.arange(10), (0.0,), (1.0,))
    ev = BatchStream(data, 4, train=False)
    assert torch.cat([b.index for b in ev.epoch(0)]).tolist() == list(range(10))
    ranks = [[b.index.tolist() for b in BatchStream(data, 2, train=True, seed=1, rank=r, world_size=2).epoch(0)]
             for r in range(2)]
    single = [b.index.tolist() for b in BatchStream(data, 4, train=True, seed=1).epoch(0)]
    assert len(ranks[0]) == len(ranks[1]) == len(single) == 2
    # the ranks' k-th batches together are exactly the single process's k-th global batch
    assert [a + b for a, b in zip(*ranks)] == single
    assert set(sum(ranks[0], [])).isdisjoint(sum(ranks[1], []))
    eval_shards = [torch.cat([b.index for b in BatchStream(data, 3, train=False, rank=r, world_size=2).epoch(0)])
                   for r in range(2)]
    assert sorted(torch.cat(eval_shards).tolist()) == list(range(10))


def test_start_batch_skips_exactly_the_done_batches():
    data = InMemoryDataset(torch.zeros(30, 1, 2, 2, dtype=torch.uint8), torch.arange(30), (0.0,), (1.0,))
    stream = BatchStream(data, 4, train=True, seed=5)
    full = [b.index.tolist() for b in stream.epoch(1)]
    assert [b.index.tolist() for b in stream.epoch(1, start_batch=3)] == full[3:]


# --- sources: tiny files in the real formats ----------------------------------------------------------

def _pickle_bytes(obj) -> bytes:
    return pickle.dumps(obj, protocol=2)


def write_cifar_archive(root, kind="cifar10", per_batch=6, as_tar=True):
    rng = np.random.RandomState(1)
    if kind == "cifar10":
        folder, names = "cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
        label_key, meta = b"labels", ("batches.meta", {b"label_names": [c.encode() for c in CIFAR10_CLASSES]})
        classes = 10
    else:
        folder, names, label_key, classes = "cifar-100-python", ["train", "test"], b"fine_labels", 100
        meta = ("meta", {b"fine_label_names": [f"class{i}".encode() for i in range(100)]})
    members = {}
    for name in names:
        data = rng.randint(0, 256, size=(per_batch, 3072), dtype=np.uint8)
        labels = [int(v) for v in rng.randint(0, classes, size=per_batch)]
        entry = {b"data": data, label_key: labels, b"batch_label": name.encode()}
        if kind == "cifar100":
            entry[b"coarse_labels"] = [v // 5 for v in labels]
        members[name] = _pickle_bytes(entry)
    members[meta[0]] = _pickle_bytes(meta[1])
    if as_tar:
        archive = root / ("cifar-10-python.tar.gz" if kind == "cifar10" else "cifar-100-python.tar.gz")
        with tarfile.open(archive, "w:gz") as tar:
            for name, payload in members.items():
                info = tarfile.TarInfo(f"{folder}/{name}")
                info.size = len(payload)
                tar.addfile(info, io.BytesIO(payload))
    else:
        (root / folder).mkdir(parents=True)
        for name, payload in members.items():
            (root / folder / name).write_bytes(payload)
    return members


@pytest.mark.parametrize("kind,as_tar", [("cifar10", True), ("cifar10", False), ("cifar100", True)])
def test_cifar_pickle_archives_in_the_official_layout(tmp_path, kind, as_tar):
    members = write_cifar_archive(tmp_path, kind, as_tar=as_tar)
    bundle = load_data(DataConfig(dataset=kind, root=str(tmp_path)))
    n_train = 30 if kind == "cifar10" else 6
    assert bundle.train.images.shape == (n_train, 3, 32, 32) and bundle.test.images.shape == (6, 3, 32, 32)
    first = pickle.loads(members["data_batch_1" if kind == "cifar10" else "train"], encoding="bytes")
    assert np.array_equal(bundle.train.images[0].numpy().reshape(-1), first[b"data"][0])
    label_key = b"labels" if kind == "cifar10" else b"fine_labels"
    assert bundle.train.labels[:6].tolist() == first[label_key]
    assert bundle.num_classes == (10 if kind == "cifar10" else 100)
    assert DATASETS.get(kind).num_classes == bundle.num_classes  # what a run's cost is planned by, before reading


def test_cifar_archive_that_runs_code_on_unpickling_is_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("owned",))

    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        (folder / name).write_bytes(pickle.dumps({b"data": Evil(), b"labels": [0]}, protocol=2))
    with pytest.raises(UserError, match="refusing to unpickle"):
        load_data(DataConfig(dataset="cifar10", root=str(tmp_path)))


def test_missing_dataset_names_where_it_looked_and_what_to_do(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DataNotFoundError) as err:
        load_data(DataConfig(dataset="cifar100", root=str(tmp_path / "nowhere")))
    message = str(err.value)
    assert "nowhere" in message and "download" in message and "\n" not in message


def _idx_bytes(array: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


def test_fashion_mnist_idx_files(tmp_path):
    rng = np.random.RandomState(0)
    arrays = {"train-images-idx3-ubyte": rng.randint(0, 256, (12, 28, 28)), "train-labels-idx1-ubyte": np.arange(12) % 10,
              "t10k-images-idx3-ubyte": rng.randint(0, 256, (5, 28, 28)), "t10k-labels-idx1-ubyte": np.arange(5)}
    for name, array in arrays.items():
        (tmp_path / (name + ".gz")).write_bytes(gzip.compress(_idx_bytes(array)))
    bundle = load_data(DataConfig(dataset="fashion-mnist", root=str(tmp_path)))
    assert bundle.train.images.shape == (12, 1, 28, 28) and bundle.in_channels == 1
    assert np.array_equal(bundle.train.images[:, 0].numpy(), arrays["train-images-idx3-ubyte"])
    assert bundle.test.labels.tolist() == [0, 1, 2, 3, 4]


def test_truncated_idx_file_is_reported(tmp_path):
    path = tmp_path / "x-idx3-ubyte"
    path.write_bytes(_idx_bytes(np.zeros((4, 2, 2)))[:-3])
    with pytest.raises(UserError, match="truncated"):
        read_idx(path)


def test_digits_split_is_fixed_stratified_and_disjoint():
    bundle = load_data(DataConfig(dataset="digits"))
    assert DATASETS.get("digits").num_classes == bundle.num_classes == 10
    class_sizes = np.bincount(torch.cat([bundle.train.labels, bundle.test.labels]).numpy())
    assert len(bundle.train) + len(bundle.test) == 1797
    assert len(bundle.test) == sum(int(round(0.3 * n)) for n in class_sizes)  # 30 % of each class
    assert bundle.train.images.shape[1:] == (1, 8, 8) and bundle.train.images.dtype == torch.uint8
    counts = torch.bincount(bundle.test.labels, minlength=10).float() / torch.bincount(
        torch.cat([bundle.train.labels, bundle.test.labels]), minlength=10).float()
    assert torch.all((counts - 0.3).abs() < 0.01)
    labels = np.arange(100) % 4
    train, test = stratified_split(labels, 0.2, seed=0)
    assert np.array_equal(train, stratified_split(labels, 0.2, seed=0)[0])
    assert not set(train) & set(test) and len(test) == 20 and set(labels[test]) == {0, 1, 2, 3}


def test_balanced_subset_validation_split_and_class_selection():
    full = load_data(DataConfig(dataset="digits"))
    sub = load_data(DataConfig(dataset="digits", train_per_class=20, val_per_class=5))
    assert torch.bincount(sub.train.labels).tolist() == [20] * 10
    assert torch.bincount(sub.val.labels).tolist() == [5] * 10
    same = load_data(DataConfig(dataset="digits", train_per_class=20, val_per_class=5))
    assert torch.equal(same.train.images, sub.train.images)
    picked = load_data(DataConfig(dataset="digits", classes=[7, 2, 5]))
    assert picked.num_classes == 3 and picked.classes == ["2", "5", "7"]
    assert len(picked.test) == int(sum((full.test.labels == c).sum() for c in (2, 5, 7)))
    assert set(picked.train.labels.tolist()) == {0, 1, 2}
    with pytest.raises(ConfigError):
        load_data(DataConfig(dataset="digits", train_per_class=10_000))
    with pytest.raises(ConfigError):
        load_data(DataConfig(dataset="digits", classes=[3, 42]))


def test_validation_split_never_moves_the_training_subset():
    plain = load_data(DataConfig(dataset="digits", train_per_class=20))
    with_val = load_data(DataConfig(dataset="digits", train_per_class=20, val_per_class=5))
    # the same images in the same order: a teacher without a validation split trains on the student's subset
    assert torch.equal(plain.train.images, with_val.train.images)
    assert torch.equal(plain.train.labels, with_val.train.labels)
    assert with_val.notes == [] and torch.bincount(with_val.val.labels).tolist() == [5] * 10


def test_split_indices_draws_validation_outside_the_training_subset():
    from kdforge.data import split_indices

    labels = np.repeat(np.arange(5), 40)
    np.random.RandomState(3).shuffle(labels)
    train, _, _ = split_indices(labels, 10, 0, subset_seed=7)
    for val_per_class in (1, 10, 30):
        again, val, note = split_indices(labels, 10, val_per_class, subset_seed=7)
        assert np.array_equal(train, again) and note is None
        assert not set(train) & set(val)
        assert np.bincount(labels[val]).tolist() == [val_per_class] * 5
    assert not np.array_equal(split_indices(labels, 10, 0, subset_seed=8)[0], train)


def test_validation_is_carved_from_training_only_when_nothing_is_left_outside(tmp_path):
    from kdforge.data import split_indices

    labels = np.repeat(np.arange(4), 10)
    train, val, note = split_indices(labels, None, 3, subset_seed=0)
    assert "carved from the training subset" in note and len(train) == 28
    assert not set(train) & set(val) and sorted(set(train) | set(val)) == list(range(40))
    assert np.bincount(labels[val]).tolist() == [3] * 4
    # 8 of 10 per class for training leaves 2 outside: too few for 3, so they are carved too, with the note
    assert split_indices(labels, 8, 3, subset_seed=0)[2] is not None
    bundle = load_data(DataConfig(dataset="digits", val_per_class=5))
    assert bundle.notes and len(bundle.val) == 50


def test_cifar10_jpeg_archive_layout_is_decoded_once_and_cached(tmp_path, monkeypatch):
    from PIL import Image

    rng = np.random.RandomState(0)
    pixels = {}
    with tarfile.open(tmp_path / "cifar10-jpeg.tar.gz", "w:gz") as tar:
        for split, per_class in (("train", 2), ("test", 1)):
            for cls in CIFAR10_CLASSES:
                for i in range(per_class):
                    img = np.full((32, 32, 3), rng.randint(0, 256, 3), dtype=np.uint8)  # flat colour survives JPEG
                    buffer = io.BytesIO()
                    Image.fromarray(img).save(buffer, format="JPEG", quality=95)
                    info = tarfile.TarInfo(f"{split}/{cls}/{i:04d}.jpg")
                    info.size = buffer.tell()
                    buffer.seek(0)
                    tar.addfile(info, buffer)
                    pixels[(split, cls, i)] = img[0, 0]
    cache = tmp_path / "cache"
    monkeypatch.setenv("KDFORGE_CACHE", str(cache))
    from kdforge.data import _MEMORY_CACHE

    _MEMORY_CACHE.clear()
    bundle = load_data(DataConfig(dataset="cifar10-jpeg", root=str(tmp_path)))
    assert bundle.train.images.shape == (20, 3, 32, 32) and bundle.test.images.shape == (10, 3, 32, 32)
    assert bundle.train.labels.tolist() == [c for c in range(10) for _ in range(2)]
    bird = bundle.train.images[4, :, 5, 5].numpy().astype(int)  # class 2 ("bird"), image 0
    assert np.abs(bird - pixels[("train", "bird", 0)].astype(int)).max() <= 3
    assert len(list(cache.glob("cifar10-jpeg-*.npz"))) == 1
    _MEMORY_CACHE.clear()
    again = load_data(DataConfig(dataset="cifar10-jpeg", root=str(tmp_path)))
    assert torch.equal(again.train.images, bundle.train.images)
    # the same archive elsewhere, with another time stamp, is the same data: it is not decoded again
    (tmp_path / "copy").mkdir()
    (tmp_path / "copy" / "cifar10-jpeg.tar.gz").write_bytes((tmp_path / "cifar10-jpeg.tar.gz").read_bytes())
    os.utime(tmp_path / "copy" / "cifar10-jpeg.tar.gz", (1_000_000_000, 1_000_000_000))
    monkeypatch.setattr("kdforge.data.sources._decode_jpeg_archive",
                        lambda archive: pytest.fail("decoded an archive whose bytes are cached"))
    _MEMORY_CACHE.clear()
    copied = load_data(DataConfig(dataset="cifar10-jpeg", root=str(tmp_path / "copy")))
    assert torch.equal(copied.train.images, bundle.train.images)
    assert len(list(cache.glob("cifar10-jpeg-*.npz"))) == 1
    _MEMORY_CACHE.clear()


def test_image_folder_tree_through_torchvision(tmp_path):
    pytest.importorskip("torchvision")
    from PIL import Image

    for split in ("train", "val"):
        for cls in ("cat", "dog"):
            (tmp_path / split / cls).mkdir(parents=True)
            for i in range(3):
                Image.fromarray(np.full((40, 48, 3), 60 * i, dtype=np.uint8)).save(tmp_path / split / cls / f"{i}.png")
    bundle = load_data(DataConfig(dataset="imagefolder", root=str(tmp_path), image_size=32, workers=0))
    assert bundle.num_classes == 2 and bundle.classes == ["cat", "dog"]
    stream = bundle.stream("train", 4, train=True, workers=0)
    batches = list(stream.epoch(0))
    assert len(batches) == 1 and batches[0].input.shape == (4, 3, 32, 32)
    ev = list(bundle.stream("test", 4, train=False, workers=0).epoch(0))
    assert sum(len(b.target) for b in ev) == 6


def test_a_host_resident_dataset_streams_its_batches_to_the_named_device():
    """device_resident=false (or a dataset loaded on the host) feeding another device: each batch moves there; the
    dataset's own device ("cpu" here, or "cuda" against "cuda:0") moves nothing."""
    import torch

    from kdforge.data.inmemory import BatchStream, InMemoryDataset

    data = InMemoryDataset(torch.randint(0, 255, (6, 1, 4, 4), dtype=torch.uint8), torch.arange(6) % 3, (0.5,), (0.25,),
                           ["a", "b", "c"])
    here = next(BatchStream(data, 4, train=False, device="cpu").epoch(0))
    there = next(BatchStream(data, 4, train=False, device="meta").epoch(0))
    assert here.input.device.type == "cpu" and {t.device.type for t in there} == {"meta"}
    assert here.input.shape == there.input.shape and torch.equal(here.target, torch.tensor([0, 1, 2, 0]))
