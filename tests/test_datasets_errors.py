"""Bad input: every failure is one clear `DataFormatError` naming the file and the place (offset, line, record,
config key); a corrupt training image is skipped (counted, warned) or an error, by config."""
from __future__ import annotations

import pytest
import torch

from Config import Config
from Datasets import (BadImageWarning, DataFormatError, DataPathError, RecordIOReader, build_train_dataset,
                      load_verification_set)
from _datasets_fixtures import jpeg_bytes, write_rec


def folder_set(tmp_path, n=6, corrupt=(2,), truncate=(4,)):
    root = tmp_path / "imgs"
    (root / "p").mkdir(parents=True)
    lines = []
    for i in range(n):
        data = jpeg_bytes(i)
        if i in corrupt:
            data = b"not an image at all" * 10
        if i in truncate:
            data = data[: len(data) // 3]
        (root / "p" / f"{i}.jpg").write_bytes(data)
        lines.append(f"p/{i}.jpg {i % 3}")
    (root / "train_list.txt").write_text("\n".join(lines) + "\n")
    return Config(train_format="folder", train_root=str(root), random_flip=False)


def test_corrupt_and_truncated_images_are_skipped_and_counted(tmp_path):
    ds = build_train_dataset(folder_set(tmp_path))
    with pytest.warns(BadImageWarning, match=r"2\.jpg"):
        x, y, n_bad = ds[2]
    assert n_bad == 1 and x.shape == (3, 112, 112)
    with pytest.warns(BadImageWarning, match=r"4\.jpg"):
        _, _, n_bad = ds[4]
    assert n_bad == 1
    # every item of an epoch is still produced; the total of n_bad counts each bad file once per process
    total = sum(ds[i][2] for i in range(len(ds)))
    assert total == 0  # already known bad: replaced without another warning or count


def test_missing_image_file_is_skipped(tmp_path):
    cfg = folder_set(tmp_path, corrupt=(), truncate=())
    (tmp_path / "imgs" / "p" / "1.jpg").unlink()
    ds = build_train_dataset(cfg)
    with pytest.warns(BadImageWarning, match=r"1\.jpg"):
        assert ds[1][2] == 1


def test_bad_image_policy_error(tmp_path):
    cfg = folder_set(tmp_path)
    cfg.bad_image_policy = "error"
    ds = build_train_dataset(cfg)
    ds[0]
    with pytest.raises(DataFormatError, match=r"p/2\.jpg"):
        ds[2]


def test_dataloader_survives_bad_images(tmp_path):
    ds = build_train_dataset(folder_set(tmp_path))
    loader = torch.utils.data.DataLoader(ds, batch_size=3, num_workers=2)
    batches = list(loader)
    assert sum(len(b[1]) for b in batches) == 6
    assert sum(int(b[2].sum()) for b in batches) == 2  # each worker met one bad file


def test_rec_bad_magic_truncation_and_offsets(tmp_path):
    write_rec(tmp_path, [(i, 0, jpeg_bytes(i)) for i in range(3)])
    rec = (tmp_path / "train.rec").read_bytes()
    offsets = [int(line.split()[1]) for line in (tmp_path / "train.idx").read_text().splitlines()]

    bad = bytearray(rec)
    bad[offsets[1]:offsets[1] + 4] = b"\0\0\0\0"
    (tmp_path / "train.rec").write_bytes(bytes(bad))
    r = RecordIOReader(tmp_path / "train.rec")
    r.read(0)
    with pytest.raises(DataFormatError, match=rf"train\.rec: bad magic .* at offset {offsets[1]}"):
        r.read(1)

    (tmp_path / "train.rec").write_bytes(rec[: offsets[2] + 40])
    r = RecordIOReader(tmp_path / "train.rec")
    with pytest.raises(DataFormatError, match=rf"train\.rec: record at offset {offsets[2]} claims \d+ bytes"):
        r.read(2)

    (tmp_path / "train.rec").write_bytes(rec)
    (tmp_path / "train.idx").write_text(f"0\t0\n1\t{len(rec) + 100}\n")
    with pytest.raises(DataFormatError, match=rf"train\.idx: record 1 at offset {len(rec) + 100} lies past the end"):
        RecordIOReader(tmp_path / "train.rec")

    (tmp_path / "train.idx").write_text("0\t0\n1 two\n")
    with pytest.raises(DataFormatError, match=r"train\.idx:2: expected"):
        RecordIOReader(tmp_path / "train.rec")


def test_rec_label_out_of_range_names_record(tmp_path):
    write_rec(tmp_path, [(i + 1, [0, 1, 9][i], jpeg_bytes(i)) for i in range(3)], header=[4.0, 7.0])
    ds = build_train_dataset(Config(train_format="rec", train_root=str(tmp_path)))
    assert ds.num_classes == 3
    ds[0]
    with pytest.raises(DataFormatError, match=r"train\.rec: record 3 \(offset \d+\): label 9 outside \[0, 3\)"):
        ds[2]


def test_pair_line_errors_name_file_and_line(tmp_path):
    (tmp_path / "pairs.txt").write_text("10\t1\n" + "a\t1\t2\n" * 5 + "a\tone\t2\n" + "a\t1\tb\t2\n" * 14)
    with pytest.raises(DataFormatError, match=r"pairs\.txt:7: expected"):
        load_verification_set(f"{tmp_path / 'pairs.txt'}::{tmp_path}", Config())
    (tmp_path / "list.txt").write_text("a.jpg b.jpg 1\nc.jpg d.jpg maybe\n")
    with pytest.raises(DataFormatError, match=r"list\.txt:2: expected"):
        load_verification_set(f"{tmp_path / 'list.txt'}::{tmp_path}", Config())
    (tmp_path / "train_list.txt").write_text("a.jpg 0\nb.jpg\n")
    with pytest.raises(DataFormatError, match=r"train_list\.txt:2: expected"):
        build_train_dataset(Config(train_format="folder", train_root=str(tmp_path)))
    (tmp_path / "train_list.txt").write_text("a.jpg 0\nb.jpg -3\n")
    with pytest.raises(DataFormatError, match=r"train_list\.txt:2: label -3"):
        build_train_dataset(Config(train_format="folder", train_root=str(tmp_path)))


def test_missing_paths_name_the_config_key(tmp_path):
    with pytest.raises(DataPathError, match=r"^train_root: no such file or directory: .*nowhere"):
        build_train_dataset(Config(train_format="rec", train_root=str(tmp_path / "nowhere")))
    with pytest.raises(DataPathError, match=r"^train_root: not set"):
        build_train_dataset(Config(train_format="folder", train_root=""))
    with pytest.raises(DataPathError, match=r"^train_list: no such file or directory"):
        build_train_dataset(Config(train_format="folder", train_root=str(tmp_path), train_list=str(tmp_path / "x")))
    with pytest.raises(DataPathError, match=r"^train_root: .*train\.rec does not exist"):
        build_train_dataset(Config(train_format="rec", train_root=str(tmp_path)))
    with pytest.raises(DataPathError, match=r"^val_sets: no such file or directory: .*lfw\.bin"):
        load_verification_set(str(tmp_path / "lfw.bin"), Config())
    (tmp_path / "p.txt").write_text("a.jpg b.jpg 1\n")
    with pytest.raises(DataPathError, match=r"^val_sets: .*p\.txt:1: image .*a\.jpg does not exist"):
        load_verification_set(f"{tmp_path / 'p.txt'}::{tmp_path}", Config())


def test_corrupt_bin_image_names_index(tmp_path):
    import pickle
    bins = [jpeg_bytes(0), b"\xff\xd8\xff garbage"]
    (tmp_path / "x.bin").write_bytes(pickle.dumps((bins, [True])))
    vs = load_verification_set(str(tmp_path / "x.bin"), Config())
    with pytest.raises(DataFormatError, match=r"x\.bin: image 1 cannot be decoded"):
        vs.images[1]


def test_header_record_announcing_missing_images(tmp_path):
    write_rec(tmp_path, [(1, 0, jpeg_bytes(0))], header=[5.0, 6.0])
    with pytest.raises(DataFormatError, match=r"train\.idx: header record announces images 1\.\.4 but key 2"):
        build_train_dataset(Config(train_format="rec", train_root=str(tmp_path)))
