"""Each on-disk format written by an independent writer in the test (struct.pack, pickle, plain text, PIL) and
read back through the project's readers, image for image and label for label."""
from __future__ import annotations

import pickle
import struct

import numpy as np
import pytest
import torch
from PIL import Image

from Config import Config
from Datasets import DataFormatError, build_train_dataset, load_verification_set, normalize_image, read_pairs
from Datasets.augment import EpochIndex

from _datasets_fixtures import MAGIC, expected_tensor, jpeg_bytes, write_rec


def cfg_for(**kw) -> Config:
    cfg = Config(random_flip=False)
    for k, v in kw.items():
        setattr(cfg, k, v)
    return cfg


@pytest.mark.parametrize("layout", ["header", "header_array_labels", "no_header", "no_header_property"])
def test_rec_reads_back_image_for_image(tmp_path, layout):
    n, classes = 12, 4
    imgs = [jpeg_bytes(i) for i in range(n)]
    labels = [i % classes for i in range(n)]
    if layout.startswith("header"):
        recs = [(i + 1, [float(labels[i]), 7.0] if layout.endswith("array_labels") else labels[i], imgs[i])
                for i in range(n)]
        ids = [[1 + c, 1 + c] for c in range(classes)]  # identity records are not images
        write_rec(tmp_path, recs, header=[n + 1.0, n + 1.0 + classes], split_magic_key=5)
        # append identity records after the images, as insightface sets have them
        with open(tmp_path / "train.rec", "ab") as f, open(tmp_path / "train.idx", "a") as fi:
            for c, lab in enumerate(ids):
                payload = struct.pack("<IfQQ", 2, 0.0, 0, 0) + struct.pack("<2f", *lab)
                fi.write(f"{n + 1 + c}\t{f.tell()}\n")
                f.write(struct.pack("<II", MAGIC, len(payload)) + payload)
    else:
        write_rec(tmp_path, [(i, labels[i], imgs[i]) for i in range(n)])
        if layout == "no_header_property":
            (tmp_path / "property").write_text(f"{classes + 3},112,112\n")
    ds = build_train_dataset(cfg_for(train_format="rec", train_root=str(tmp_path)))
    assert len(ds) == n
    assert ds.num_classes == (classes + 3 if layout == "no_header_property" else classes)
    assert ds.labels().tolist() == labels
    for i in range(n):
        x, y, n_bad = ds[i]
        assert y == labels[i] and n_bad == 0
        assert torch.allclose(x, expected_tensor(imgs[i]), atol=1e-6)


def test_rec_dataloader_two_workers(tmp_path):
    n = 40
    imgs = [jpeg_bytes(100 + i) for i in range(n)]
    write_rec(tmp_path, [(i + 1, i % 5, imgs[i]) for i in range(n)], header=[n + 1.0, n + 6.0])
    ds = build_train_dataset(cfg_for(train_format="rec", train_root=str(tmp_path)))
    ds.reader.read(1)  # the parent holds an open handle before the fork; workers must not share it
    loader = torch.utils.data.DataLoader(ds, batch_size=3, num_workers=2, shuffle=False)
    xs, ys = [], []
    for x, y, n_bad in loader:
        xs.append(x)
        ys.append(y)
        assert n_bad.sum() == 0
    x, y = torch.cat(xs), torch.cat(ys)
    assert y.tolist() == [i % 5 for i in range(n)]
    for i in range(n):
        assert torch.allclose(x[i], expected_tensor(imgs[i]), atol=1e-6)


def test_folder_list_and_color_order(tmp_path):
    imgs = {}
    lines = []
    for ident in range(3):
        (tmp_path / f"person {ident}").mkdir()
        for k in range(2):
            data = jpeg_bytes(10 * ident + k, fmt="PNG" if k else "JPEG")
            rel = f"person {ident}/{k}.{'png' if k else 'jpg'}"
            (tmp_path / rel).write_bytes(data)
            imgs[rel] = data
            lines.append(f"{rel}  {ident}")  # the original project's double-space separator; a space in the path
    (tmp_path / "list.txt").write_text("\n".join(lines) + "\n")
    for order in ("RGB", "BGR"):
        ds = build_train_dataset(cfg_for(train_format="folder", train_root=str(tmp_path),
                                         train_list=str(tmp_path / "list.txt"), color_order=order,
                                         input_size=[112, 96]))
        assert ds.num_classes == 3 and len(ds) == 6
        for i, line in enumerate(lines):
            rel, label = line.rsplit(None, 1)
            x, y, _ = ds[i]
            assert y == int(label) and x.shape == (3, 112, 96)
            assert torch.allclose(x, expected_tensor(imgs[rel], (112, 96), bgr=order == "BGR"), atol=1e-6)


def test_random_flip_is_a_mirror(tmp_path):
    data = jpeg_bytes(5)
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "0.jpg").write_bytes(data)
    (tmp_path / "train_list.txt").write_text("a/0.jpg 0\n")
    cfg = cfg_for(train_format="folder", train_root=str(tmp_path))
    cfg.random_flip = True
    ds = build_train_dataset(cfg)
    ref = expected_tensor(data).numpy()
    seen = set()
    for epoch in range(24):  # the flip is seeded per (run seed, epoch, sample): each epoch draws anew
        x = ds[EpochIndex(0, epoch)][0].numpy()
        if np.allclose(x, ref, atol=1e-6):
            seen.add("plain")
        elif np.allclose(x, ref[:, :, ::-1], atol=1e-6):
            seen.add("flip")
        else:
            pytest.fail("item is neither the image nor its mirror")
    assert seen == {"plain", "flip"}


def test_normalize_image_contract():
    rng = np.random.default_rng(0)
    arr = rng.integers(0, 256, (112, 112, 3), dtype=np.uint8)
    t = normalize_image(arr, (112, 112), "RGB")
    assert t.dtype == torch.float32 and t.shape == (3, 112, 112) and t.is_contiguous()
    assert torch.equal(t[0], torch.tensor((arr[:, :, 0].astype(np.float32) - 127.5) / 128))
    tb = normalize_image(Image.fromarray(arr), (112, 112), "BGR")
    assert torch.equal(tb[0], t[2]) and torch.equal(tb[2], t[0])
    grey = normalize_image(Image.fromarray(arr[:, :, 0], "L"), (112, 112), "RGB")
    assert torch.equal(grey[1], grey[0])


# ------------------------------------------------------------------------------------------ verification
def test_bin_reads_back(tmp_path):
    bins = [jpeg_bytes(200 + i) for i in range(40)]
    issame = [bool(i % 3) for i in range(20)]
    with open(tmp_path / "agedb_30.bin", "wb") as f:
        pickle.dump((bins, issame), f, protocol=2)  # protocol 2: bytes go through _codecs.encode
    vs = load_verification_set(str(tmp_path / "agedb_30.bin"), cfg_for())
    assert vs.name == "agedb_30" and len(vs.images) == 40
    assert vs.issame.dtype == np.bool_ and vs.issame.tolist() == issame
    assert vs.folds.dtype == np.int64 and vs.folds.tolist() == [k // 2 for k in range(20)]
    for i in (0, 17, 39):
        assert torch.allclose(vs.images[i], expected_tensor(bins[i]), atol=1e-6)


def test_bin_python2_style_pickle(tmp_path):
    """A protocol-2 pickle with Python 2 `str` images (SHORT_BINSTRING) and a numpy issame array."""
    img = jpeg_bytes(1)
    body = b"\x80\x02(" + b"".join(b"T" + struct.pack("<I", len(img)) + img for _ in range(2)) + b"l"
    # issame as a list with one True: ']' empty list, '\x88' NEWTRUE, 'a' append
    data = body + b"]\x88a\x86."
    (tmp_path / "lfw.bin").write_bytes(data)
    vs = load_verification_set(str(tmp_path / "lfw.bin"), cfg_for())
    assert vs.issame.tolist() == [True]
    assert torch.allclose(vs.images[1], expected_tensor(img), atol=1e-6)


def test_bin_refuses_code(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("owned",))
    with open(tmp_path / "evil.bin", "wb") as f:
        pickle.dump(([b"x", b"y"], [Evil()]), f)
    with pytest.raises(DataFormatError, match="evil.bin.*refusing"):
        load_verification_set(str(tmp_path / "evil.bin"), cfg_for())


def _write_images(root, rels):
    out = {}
    for k, rel in enumerate(rels):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        data = jpeg_bytes(300 + k)
        (root / rel).write_bytes(data)
        out[rel] = data
    return out


def test_lfw_pairs_txt(tmp_path):
    names = ["Ann_A", "Bob_B", "Cid_C"]
    text = ["2\t2"]
    expected = []
    for fold in range(2):
        text += [f"{names[fold]}\t1\t2", f"{names[2]}\t1\t3"]
        expected += [(f"{names[fold]}/{names[fold]}_0001.jpg", f"{names[fold]}/{names[fold]}_0002.jpg", True, fold),
                     (f"{names[2]}/{names[2]}_0001.jpg", f"{names[2]}/{names[2]}_0003.jpg", True, fold)]
        text += [f"{names[0]}\t1\t{names[1]}\t2", f"{names[1]}\t2\t{names[2]}\t3"]
        expected += [(f"{names[0]}/{names[0]}_0001.jpg", f"{names[1]}/{names[1]}_0002.jpg", False, fold),
                     (f"{names[1]}/{names[1]}_0002.jpg", f"{names[2]}/{names[2]}_0003.jpg", False, fold)]
    (tmp_path / "pairs.txt").write_text("\n".join(text) + "\n")
    imgs = _write_images(tmp_path / "img", sorted({p for e in expected for p in e[:2]}))
    vs = load_verification_set(f"{tmp_path / 'pairs.txt'}::{tmp_path / 'img'}", cfg_for())
    assert vs.issame.tolist() == [e[2] for e in expected]
    assert vs.folds.tolist() == [e[3] for e in expected]
    for k, e in enumerate(expected):
        left, right = vs.pairs()[k]
        assert torch.allclose(vs.images[left], expected_tensor(imgs[e[0]]), atol=1e-6)
        assert torch.allclose(vs.images[right], expected_tensor(imgs[e[1]]), atol=1e-6)
    assert len(vs.images) == len({p for e in expected for p in e[:2]})  # a shared image is stored once


@pytest.mark.parametrize("fold_column", ["none", "last", "first"])
def test_two_path_pairs(tmp_path, fold_column):
    rels = [f"{i:05d}.jpg" for i in range(1, 41)]
    imgs = _write_images(tmp_path, rels)
    lines, flags = [], []
    for k in range(20):
        flag = 1 if k % 2 == 0 else -1
        flags.append(flag == 1)
        a, b = rels[2 * k], rels[2 * k + 1]
        lines.append({"none": f"{a} {b} {flag}", "last": f"{a} {b} {flag} {k // 2 + 1}",
                      "first": f"{k // 2 + 1} {a} {b} {flag}"}[fold_column])
    (tmp_path / "agedb_30_pair.txt").write_text("\n".join(lines) + "\n")
    vs = load_verification_set(f"{tmp_path / 'agedb_30_pair.txt'}::{tmp_path}", cfg_for())
    assert vs.issame.tolist() == flags
    assert vs.folds.tolist() == [k // 2 for k in range(20)]
    for i in (0, 7, 39):
        assert torch.allclose(vs.images[vs.pairs()[i // 2, i % 2]], expected_tensor(imgs[rels[i]]), atol=1e-6)


def test_cfp_protocol_layout(tmp_path):
    proto = tmp_path / "cfp-dataset" / "Protocol"
    frontal = [f"../Data/Images/{p:03d}/frontal/{k:02d}.jpg" for p in range(1, 4) for k in range(1, 3)]
    profile = [f"../Data/Images/{p:03d}/profile/{k:02d}.jpg" for p in range(1, 4) for k in range(1, 3)]
    proto.mkdir(parents=True)
    (proto / "Pair_list_F.txt").write_text("".join(f"{i + 1} {p}\n" for i, p in enumerate(frontal)))
    (proto / "Pair_list_P.txt").write_text("".join(f"{i + 1} {p}\n" for i, p in enumerate(profile)))
    expected = []
    for fold in range(1, 11):
        d = proto / "Split" / "FP" / f"{fold:02d}"
        d.mkdir(parents=True)
        same = (fold % 3) * 2 + 1  # person's first frontal vs their first profile
        diff_a, diff_b = 1, 6
        (d / "same.txt").write_text(f"{same},{same}\n")
        (d / "diff.txt").write_text(f"{diff_a},{diff_b}\n")
        expected += [(frontal[same - 1], profile[same - 1], True, fold - 1),
                     (frontal[diff_a - 1], profile[diff_b - 1], False, fold - 1)]
    imgs = _write_images(proto, frontal + profile)
    pl = read_pairs(proto)
    assert [(a, b, bool(s), int(f)) for a, b, s, f in zip(pl.left, pl.right, pl.issame, pl.folds)] == expected
    vs = load_verification_set(str(proto), cfg_for())
    assert vs.folds.tolist() == [e[3] for e in expected]
    assert torch.allclose(vs.images[vs.pairs()[1, 1]], expected_tensor(imgs[expected[1][1]]), atol=1e-6)
