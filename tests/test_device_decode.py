"""gpu_decode's CPU side: encoded items, the batch decoder against the PIL path, the fallback, and a training step."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from _train_fixtures import tiny_config

from Datasets.device_decode import EncodedTrainSet, collate_encoded, decode_batch
from Datasets.errors import DataFormatError
from Datasets.train_sets import FolderTrainDataset
from Datasets.transforms import decode_image, normalize_image

pytestmark = pytest.mark.filterwarnings("ignore:The image decoding:DeprecationWarning")  # torchvision 0.29 notice


def _folder(tmp_path, n=6, size=(40, 48), fmt="JPEG"):
    rng = np.random.default_rng(0)
    lines = []
    for i in range(n):
        # smooth content: JPEG artefacts stay small, as in face crops
        yy, xx = np.mgrid[0:size[1], 0:size[0]]
        img = np.stack([(xx * 5 + i * 20) % 256, (yy * 4) % 256, (xx + yy + 40 * i) % 256], 2).astype(np.uint8)
        img = np.clip(img + rng.integers(0, 3, img.shape), 0, 255).astype(np.uint8)
        name = f"id{i % 3}/{i}.{'jpg' if fmt == 'JPEG' else 'png'}"
        (tmp_path / f"id{i % 3}").mkdir(exist_ok=True)
        Image.fromarray(img).save(tmp_path / name, format=fmt, quality=95)
        lines.append(f"{name} {i % 3}")
    (tmp_path / "list.txt").write_text("\n".join(lines) + "\n")
    return tmp_path


@pytest.mark.parametrize("fmt,hw", [("JPEG", (48, 40)), ("JPEG", (32, 32)), ("PNG", (32, 32))],
                         ids=["jpeg_same_size", "jpeg_resized", "png_fallback"])
@pytest.mark.parametrize("color_order", ["RGB", "BGR"])
def test_decoded_batch_matches_the_pil_path(tmp_path, fmt, hw, color_order):
    root = _folder(tmp_path, fmt=fmt)
    ds = FolderTrainDataset(root, root / "list.txt", input_hw=hw, color_order=color_order, random_flip=True)
    torch.manual_seed(0)
    items = [EncodedTrainSet(ds)[i] for i in range(len(ds))]
    batch = collate_encoded(items)
    got = decode_batch(batch, torch.device("cpu"), hw, color_order)
    assert got.shape == (len(ds), 3, *hw) and got.dtype == torch.float32
    for i in range(len(ds)):  # the independent reference: PIL decode, flip, resize, normalise, one image at a time
        img = decode_image(ds._load(i)[0])
        if batch[3][i]:
            img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        ref = normalize_image(img, hw, color_order)
        diff = (got[i] - ref).abs() * 128  # in grey levels
        # same libjpeg output: equal at the stored size; the resize (antialiased bilinear vs PIL's) rounds apart by 1
        assert diff.max() <= (1 if hw != (48, 40) else 0) and diff.mean() < 0.5, (i, diff.max(), diff.mean())
    assert batch[3].any() and not batch[3].all()  # the flip was drawn per item
    assert torch.equal(batch[1], torch.tensor([i % 3 for i in range(len(ds))]))


def test_an_unreadable_file_names_itself(tmp_path):
    root = _folder(tmp_path, n=3)
    (root / "id0" / "0.jpg").write_bytes(b"not an image")
    ds = FolderTrainDataset(root, root / "list.txt", input_hw=(32, 32))
    batch = collate_encoded([EncodedTrainSet(ds)[i] for i in range(3)])
    with pytest.raises(DataFormatError, match="0.jpg"):
        decode_batch(batch, torch.device("cpu"), (32, 32))


def test_a_training_step_with_gpu_decode_on_cpu(tmp_path):
    from Utils.training import build_components
    from Utils.training.loop import train_step

    (tmp_path / "data").mkdir()
    root = _folder(tmp_path / "data", n=8)
    cfg = tiny_config(tmp_path, train_format="folder", train_root=str(root), train_list=str(root / "list.txt"),
                      gpu_decode=True, batch_size=4)
    comp = build_components(cfg)
    assert comp.decode is not None
    result = train_step(comp, [next(iter(comp.loader))])
    assert result.finite and result.count == 4


def test_the_flip_is_the_cpu_paths_seeded_draw(tmp_path):
    # reference: the CPU path's own augmented image, compared with its unflipped and mirrored decodes
    from Datasets.augment import EpochIndex

    root = _folder(tmp_path, n=6, size=(32, 32))
    ds = FolderTrainDataset(root, root / "list.txt", input_hw=(32, 32), augment=["flip:0.5"], seed=7)
    enc = EncodedTrainSet(ds)
    seen = set()
    for epoch in (0, 1, 2):
        for i in range(len(ds)):
            plain = normalize_image(decode_image(ds._load(i)[0]), (32, 32), "RGB")
            cpu = ds[EpochIndex(i, epoch)][0]
            cpu_flipped = torch.equal(cpu, torch.flip(plain, dims=[2]))
            assert cpu_flipped or torch.equal(cpu, plain)
            assert enc[EpochIndex(i, epoch)][3] == cpu_flipped, (epoch, i)
            seen.add(cpu_flipped)
    assert seen == {True, False}


def test_a_recipe_beyond_flips_is_refused(tmp_path):
    from Config import Config, ConfigError, validate

    root = _folder(tmp_path, n=2)
    ds = FolderTrainDataset(root, root / "list.txt", input_hw=(32, 32), augment=["flip:0.5", "blur:0.3"])
    with pytest.raises(ValueError, match="blur"):
        EncodedTrainSet(ds)
    with pytest.raises(ConfigError, match="^gpu_decode: .*blur"):
        validate(Config(gpu_decode=True, augment=["flip:0.5", "blur:0.3"]))
    validate(Config(gpu_decode=True, augment=["flip:0.5"]))
