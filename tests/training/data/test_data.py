import numpy as np
import pytest
import torch

from training.data import load_split
from training.data.batches import BatchIterator, Shard, epoch_indices
from training.data.cifar import dataset_folder, load_cifar
from training.data.classes import CIFAR10_CLASSES, CIFAR100_CLASSES
from training.data.synthetic import synthetic_arrays, write_binary_layout


def _record(label_bytes: list[int]) -> bytes:
    # Planar pixels: R plane all 10, G plane all 20, B plane 0..1023 mod 256 (row-major).
    planes = [np.full(1024, 10), np.full(1024, 20), np.arange(1024) % 256]
    return bytes(label_bytes) + np.concatenate(planes).astype(np.uint8).tobytes()


def test_cifar10_record_layout_is_label_then_planar_rgb(tmp_path):
    folder = tmp_path / "cifar-10-batches-bin"
    folder.mkdir()
    for i in range(1, 6):
        (folder / f"data_batch_{i}.bin").write_bytes(_record([i]))
    (folder / "test_batch.bin").write_bytes(_record([7]) + _record([3]))
    test = load_cifar("cifar10", tmp_path, "test")
    assert test.images.shape == (2, 3, 32, 32) and test.images.dtype == torch.uint8
    assert test.labels.tolist() == [7, 3]
    assert (test.images[:, 0] == 10).all() and (test.images[:, 1] == 20).all()
    assert test.images[0, 2, 0, 5] == 5 and test.images[0, 2, 1, 0] == 32  # row-major plane
    assert load_cifar("cifar10", tmp_path, "train").labels.tolist() == [1, 2, 3, 4, 5]
    assert test.classes == CIFAR10_CLASSES  # no batches.meta.txt: built-in names


def test_cifar100_uses_the_fine_label(tmp_path):
    folder = tmp_path / "cifar-100-binary"
    folder.mkdir()
    (folder / "train.bin").write_bytes(_record([3, 42]) + _record([19, 99]))
    (folder / "test.bin").write_bytes(_record([0, 1]))
    train = load_cifar("cifar100", folder, "train")  # the layout folder itself is accepted
    assert train.labels.tolist() == [42, 99]
    assert train.classes == CIFAR100_CLASSES and (train.images[:, 1] == 20).all()


@pytest.mark.parametrize(("dataset", "n_classes"), [("cifar10", 10), ("cifar100", 100)])
def test_synthetic_files_round_trip(tmp_path, dataset, n_classes):
    write_binary_layout(dataset, tmp_path, n_train=120, n_test=30)
    train = load_split(dataset, "train", tmp_path)
    images, labels = synthetic_arrays(120, n_classes, 0)
    assert torch.equal(train.images, torch.from_numpy(images))
    assert torch.equal(train.labels, torch.from_numpy(labels).long())
    assert len(load_split(dataset, "test", tmp_path)) == 30
    assert len(train.classes) == n_classes


def test_class_names_come_from_the_names_file(tmp_path):
    write_binary_layout("cifar10", tmp_path, n_train=10, n_test=10)
    names = [f"c{i}" for i in range(10)]
    (dataset_folder("cifar10", tmp_path) / "batches.meta.txt").write_text("\n".join(names))
    assert load_split("cifar10", "test", tmp_path).classes == tuple(names)


def test_missing_and_truncated_files_give_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="test_batch.bin"):
        load_cifar("cifar10", tmp_path, "test")
    write_binary_layout("cifar10", tmp_path, n_train=10, n_test=10)
    path = dataset_folder("cifar10", tmp_path) / "test_batch.bin"
    path.write_bytes(path.read_bytes()[:-1])
    with pytest.raises(ValueError, match="3073-byte records"):
        load_cifar("cifar10", tmp_path, "test")
    with pytest.raises(ValueError, match="data-dir"):
        load_split("cifar10", "test", None)


def test_shards_partition_the_epoch_and_order_depends_on_epoch():
    parts = [epoch_indices(10, 3, seed=1, shuffle=True, shard=Shard(r, 3)) for r in range(3)]
    assert sorted(torch.cat(parts).tolist()) == list(range(10))
    again = epoch_indices(10, 3, seed=1, shuffle=True, shard=Shard(0, 3))
    assert torch.equal(parts[0], again)
    e0, e1 = (epoch_indices(50, e, 1, True, Shard()) for e in (0, 1))
    assert not torch.equal(e0, e1)


def test_batch_iterator_drops_the_ragged_tail_only_in_training():
    split = load_split("synthetic", "train", synthetic_size=70)
    kw = {"mean": torch.zeros(3), "std": torch.ones(3), "device": torch.device("cpu")}
    train = BatchIterator(split, 32, train=True, **kw)
    test = BatchIterator(split, 32, train=False, **kw)
    assert [y.numel() for _, y in train.batches(0)] == [32, 32] == [32] * train.num_batches()
    assert [y.numel() for _, y in test.batches(0)] == [32, 32, 6]
    x, _ = next(iter(test.batches(0)))
    assert x.dtype == torch.float32 and x.max() <= 1.0  # mean 0 / std 1: just /255
