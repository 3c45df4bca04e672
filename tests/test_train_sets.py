"""train_sets: several training sets in one run, labels offset per set, Partial-FC over the union."""
from __future__ import annotations

import numpy as np
import pytest

from _datasets_fixtures import jpeg_bytes, write_rec
from _train_fixtures import tiny_config

import Train
from Config import Config, ConfigError, validate
from Datasets import build_train_dataset
from Datasets.errors import DataPathError


def _rec_set(folder, labels, seed):
    folder.mkdir()
    n, classes = len(labels), max(labels) + 1
    write_rec(folder, [(i + 1, labels[i], jpeg_bytes(seed + i, (32, 32))) for i in range(n)],
              header=[n + 1.0, n + 1.0 + classes])
    return folder


def _folder_set(folder, labels, seed):
    lines = []
    for i, lab in enumerate(labels):
        (folder / f"id{lab}").mkdir(parents=True, exist_ok=True)
        (folder / f"id{lab}" / f"{i}.jpg").write_bytes(jpeg_bytes(seed + i, (32, 32)))
        lines.append(f"id{lab}/{i}.jpg {lab}\n")
    (folder / "train_list.txt").write_text("".join(lines))
    return folder


@pytest.fixture
def two_sets(tmp_path):
    rec_labels = [0, 1, 2, 0, 1, 2, 0, 1]  # 3 classes, 8 images
    folder_labels = [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]  # 5 classes, 10 images
    a = _rec_set(tmp_path / "a", rec_labels, 0)
    b = _folder_set(tmp_path / "b", folder_labels, 100)
    return [f"rec:{a}", f"folder:{b}"], rec_labels, folder_labels


def test_union_offsets_labels_and_keeps_each_sets_images(tmp_path, two_sets):
    entries, rec_labels, folder_labels = two_sets
    cfg = validate(Config(train_sets=entries, input_size=[32, 32], random_flip=False))
    ds = build_train_dataset(cfg)
    assert len(ds) == 18 and ds.num_classes == 8
    # independent reference: each set read on its own, labels of the second shifted by the first's classes
    a = build_train_dataset(validate(Config(train_format="rec", train_root=entries[0][4:], input_size=[32, 32],
                                            random_flip=False)))
    b = build_train_dataset(validate(Config(train_format="folder", train_root=entries[1][7:], input_size=[32, 32],
                                            random_flip=False)))
    expected = [(a[i][0], rec_labels[i]) for i in range(8)] + [(b[i][0], folder_labels[i] + 3) for i in range(10)]
    for i, (img, lab) in enumerate(expected):
        got = ds[i]
        assert got[1] == lab and np.array_equal(got[0].numpy(), img.numpy()), i
    assert ds.labels().tolist() == [lab for _, lab in expected]
    rows = dict(ds.summary_rows())
    assert rows[entries[0]].startswith("8 images, 3 classes (labels 0..2)")
    assert rows[entries[1]].startswith("10 images, 5 classes (labels 3..7)")
    assert rows["all sets"] == "18 images, 8 classes"


def test_partial_fc_trains_over_the_union_and_logs_the_summary(tmp_path, two_sets):
    entries, _, _ = two_sets
    cfg = tiny_config(tmp_path, backbone="TinyTestNet", train_sets=entries, partial_fc=True, epochs=1,
                      batch_size=6, run_name="multi")
    res = Train.train(cfg)
    assert res.components.num_classes == 8 and res.components.head.head.weight.shape[0] == 8
    log = (tmp_path / "runs" / "multi" / "train.log").read_text()
    assert "training sets" in log and "10 images, 5 classes (labels 3..7)" in log


def test_bad_entries_name_the_key(tmp_path):
    with pytest.raises(ConfigError, match=r"train_sets: 'rek:/x' is not 'format:root'.*did you mean 'rec'"):
        validate(Config(train_sets=["rek:/x"]))
    with pytest.raises(ConfigError, match=r"train_root: set together with train_sets"):
        validate(Config(train_sets=["rec:/x"], train_root="/y"))
    with pytest.raises(DataPathError, match=r"train_sets 'rec:/nonexistent': train_root: no such file or directory"):
        build_train_dataset(validate(Config(train_sets=["rec:/nonexistent"])))


def test_the_union_passes_the_epoch_on_to_each_sets_augmentation(tmp_path, two_sets):
    # persistent loader workers learn the epoch only from the index: the union must hand it to the member set
    from Datasets.augment import EpochIndex
    entries, _, _ = two_sets
    kw = dict(input_size=[32, 32], augment=["flip:0.5", "jitter:1.0:0.8"])
    ds = build_train_dataset(validate(Config(train_sets=entries, **kw)))
    b = build_train_dataset(validate(Config(train_format="folder", train_root=entries[1][7:], **kw)))
    for epoch in (0, 3):
        for i in range(10):
            assert np.array_equal(ds[EpochIndex(8 + i, epoch)][0].numpy(), b[EpochIndex(i, epoch)][0].numpy())
    assert any(not np.array_equal(ds[EpochIndex(8 + i, 0)][0].numpy(), ds[EpochIndex(8 + i, 3)][0].numpy())
               for i in range(10))
