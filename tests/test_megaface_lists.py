"""MegaFace devkit lists and insightface noise lists (Datasets/megaface.py): hand-written files, the real devkit
lists in ../shared/realdata/megaface when present, and the image dataset over a list."""
from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest
from PIL import Image

from Datasets.errors import DataFormatError, DataPathError
from Datasets.images import ImageList
from Datasets.megaface import (facescrub_noise_mask, find_distractor_lists, megaface_noise_mask,
                               read_distractor_list, read_noise_list, read_probe_list)


def test_probe_list_labels_in_first_appearance_order(tmp_path):
    path = tmp_path / "facescrub_features_list.json"
    path.write_text('{\n "path": ["B/B_1.png", "A/A_7.png", "B/B_2.png"],\n "id": ["B", "A", "B"]\n}\n')
    probes = read_probe_list(path)
    assert probes.paths == ["B/B_1.png", "A/A_7.png", "B/B_2.png"]
    assert probes.identities == ["B", "A"]
    np.testing.assert_array_equal(probes.labels, [0, 1, 0])
    assert len(probes) == 3


@pytest.mark.parametrize("text, message", [
    ('{"path": ["a.png"]}', "missing key 'id'"),
    ('{"path": ["a.png", "b.png"], "id": ["x"]}', "'path' has 2 entries but 'id' has 1"),
    ('{"path": ["a.png", 3], "id": ["x", "y"]}', r"'path'\[1\] must be a non-empty string"),
    ('{"path": ["a.png", "a.png"], "id": ["x", "x"]}', "listed twice"),
    ('{"path": "a.png", "id": "x"}', "'path' must be a list"),
    ('["a.png"]', "expected a JSON object"),
    ('{"path": ["a.png"],\n "id": ["x"],,}', "not valid JSON at line 2"),
])
def test_bad_probe_lists_name_the_fault(tmp_path, text, message):
    path = tmp_path / "probes.json"
    path.write_text(text)
    with pytest.raises(DataFormatError, match=message) as err:
        read_probe_list(path)
    assert "probes.json" in str(err.value)


def test_distractor_lists_found_by_size(tmp_path):
    for n in (10, 1000):
        (tmp_path / f"megaface_features_list.json_{n}_1").write_text(json.dumps({"path": [f"{i}.jpg" for i in range(n)]}))
    (tmp_path / "megaface_features_list.json_100_2").write_text('{"path": []}')  # another set: not picked
    (tmp_path / "ids").write_text("x\n")
    found = find_distractor_lists(tmp_path)
    assert list(found) == [10, 1000]
    assert read_distractor_list(found[10]) == [f"{i}.jpg" for i in range(10)]
    with pytest.raises(DataPathError, match="distractor list not found"):
        read_distractor_list(tmp_path / "nope.json")


def test_noise_lists_and_masks(tmp_path):
    fs = tmp_path / "facescrub_noises.txt"
    fs.write_text("#Please follow the rules\nA_7.png\n\nB_9.png\n")
    mf = tmp_path / "megaface_noises.txt"
    mf.write_text("#comment\n375/37531198@N00/4174611825_0.jpg\n375/37531198@N00/4174611825_0.jpg\n")
    assert read_noise_list(fs) == {"A_7.png", "B_9.png"}
    assert read_noise_list(mf) == {"375/37531198@N00/4174611825_0.jpg"}
    np.testing.assert_array_equal(facescrub_noise_mask(["A/A_7.png", "A/A_8.png", "B/B_9.png"], read_noise_list(fs)),
                                  [True, False, True])
    np.testing.assert_array_equal(
        megaface_noise_mask(["375/37531198@N00/4174611825_0.jpg", "375/37531198@N00/4174611825_1.jpg"],
                            read_noise_list(mf)), [True, False])
    bad = tmp_path / "bad.txt"
    bad.write_text("a.png\ntwo names.png\n")
    with pytest.raises(DataFormatError, match="bad.txt:2"):
        read_noise_list(bad)


def test_image_dataset_normalises_and_names_missing_files(tmp_path):
    rng = np.random.default_rng(0)
    arr = rng.integers(0, 256, size=(112, 112, 3), dtype=np.uint8)
    (tmp_path / "A").mkdir()
    Image.fromarray(arr).save(tmp_path / "A" / "A_1.png")
    ds = ImageList(["A/A_1.png", "A/A_2.png"], (112, 112), "BGR", root=tmp_path)
    x = ds[0].numpy()
    np.testing.assert_allclose(x, (arr[:, :, ::-1].transpose(2, 0, 1).astype(np.float32) - 127.5) / 128, atol=1e-6)
    with pytest.raises(DataFormatError, match="A_2.png"):
        ds[1]


# ------------------------------------------------------------------------------------ the real devkit lists
def test_real_devkit_lists(realdata):
    root = realdata / "megaface"
    probes = read_probe_list(root / "templatelists" / "facescrub_features_list.json")
    assert len(probes) == 3530 and len(probes.identities) == 80
    counts = Counter(probes.ids)
    assert min(counts.values()) >= 2  # every identity can serve as probe and gallery
    assert all(p.split("/")[0] == i for p, i in zip(probes.paths, probes.ids))
    lists = find_distractor_lists(root / "templatelists")
    assert set(lists) >= {10, 100, 1000, 10000, 100000}
    for n, path in lists.items():
        paths = read_distractor_list(path)
        assert len(paths) == n and len(set(paths)) == n
    fs_noise = read_noise_list(root / "facescrub_noises.txt")
    mf_noise = read_noise_list(root / "megaface_noises.txt")
    assert len(fs_noise) == 605 and len(mf_noise) == 707  # megaface_noises.txt has 719 lines, 12 repeated
    # insightface's FaceScrub names match the devkit's file names only in part (different numbering)
    assert facescrub_noise_mask(probes.paths, fs_noise).sum() == 24
    assert megaface_noise_mask(read_distractor_list(lists[100000]), mf_noise).sum() == 80
