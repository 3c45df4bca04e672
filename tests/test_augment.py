"""Augmentation: each op against a direct computation, the recipe parser, per-sample seeding (two passes, a resumed
epoch and persistent workers see the same images), and the preview CLI."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from Config import Config
from Config.cli import ConfigError, parse_config
from Datasets.augment import Augment, EpochIndex, build_op, list_ops, parse_augment
from Datasets.augment.__main__ import main as augment_main
from Datasets.train_sets.base import FaceTrainDataset
from Utils.training.sampler import ResumableSampler

from _datasets_fixtures import expected_tensor, jpeg_bytes

ALL = "flip:1,crop:1,jitter:1,grey:0.5,blur:1,lowres:1,erase:1"


def _img(seed=0, hw=(112, 112)) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    arr = np.kron(rng.integers(0, 256, (hw[0] // 8, hw[1] // 8, 3)), np.ones((8, 8, 1))).astype(np.uint8)
    return torch.from_numpy(arr.transpose(2, 0, 1).copy())


class BytesSet(FaceTrainDataset):
    """In-memory JPEGs: the augmentation path of the real training sets without files."""

    def __init__(self, n=12, **kw):
        self.data = [jpeg_bytes(i) for i in range(n)]
        super().__init__(n, **kw)

    def __len__(self):
        return len(self.data)

    def _load(self, index):
        return self.data[index], index, f"sample {index}"


@pytest.mark.parametrize("name", ["flip", "crop", "jitter", "grey", "blur", "lowres", "erase"])
def test_every_op_keeps_shape_and_dtype_and_is_seeded(name):
    assert name in list_ops()
    aug = Augment([f"{name}:1"], (112, 96), seed=3)
    x = _img(hw=(112, 96))
    a, b = aug(x, 5, epoch=2), aug(x, 5, epoch=2)
    assert a.shape == x.shape and a.dtype == torch.uint8
    assert torch.equal(a, b)


def test_ops_against_direct_computation():
    x = _img(1)
    torch.manual_seed(0)
    assert torch.equal(build_op("flip", 1.0, 0, (112, 112))(x), x.flip(-1))
    assert torch.equal(build_op("flip", 0.0, 0, (112, 112))(x), x)
    grey = build_op("grey", 1.0, 0, (112, 112))(x).float()
    luma = 0.2989 * x[0].float() + 0.587 * x[1].float() + 0.114 * x[2].float()  # ITU-R 601
    assert (grey - luma).abs().max() <= 1.0 and torch.equal(grey[0], grey[2])
    # lowres at strength 0: the side ratio is 1, so down-up sampling returns the image itself
    assert torch.equal(build_op("lowres", 1.0, 0.0, (112, 112))(x), x)
    small = build_op("lowres", 1.0, 0.9, (112, 112))(x)
    assert not torch.equal(small, x)
    erased = build_op("erase", 1.0, 0.2, (112, 112))(x.clamp_min(1))  # no black pixels but the patch's
    rows, cols = torch.nonzero((erased == 0).all(dim=0), as_tuple=True)
    assert len(rows) and len(rows) == (rows.max() - rows.min() + 1) * (cols.max() - cols.min() + 1)  # a rectangle
    assert 0.02 * 112 * 112 * 0.99 <= len(rows) <= 0.2 * 112 * 112 * 1.01


@pytest.mark.parametrize("order", ["RGB", "BGR"])
def test_augmented_item_keeps_the_input_contract(order):
    # flip with p=1 through the augmentation path: the mirror of the plain contract, channel order included
    ds = BytesSet(2, augment=["flip:1"], color_order=order, input_hw=(112, 96))
    want = expected_tensor(ds.data[1], (112, 96), bgr=order == "BGR").flip(-1)
    torch.testing.assert_close(ds[EpochIndex(1, 0)][0], want, atol=1e-6, rtol=0)


def test_fork_rng_leaves_the_training_rng_alone():
    aug = Augment(ALL, (112, 112), seed=0)
    torch.manual_seed(7)
    expected = torch.rand(3)
    torch.manual_seed(7)
    aug(_img(), 0, 0)
    assert torch.equal(torch.rand(3), expected)


def test_parse_recipe_and_config_errors():
    specs = parse_augment("flip:0.5,lowres:0.2:0.5")
    assert [(s.name, s.p, s.strength) for s in specs] == [("flip", 0.5, 0.0), ("lowres", 0.2, 0.5)]
    assert parse_augment(["crop:1"])[0].strength == 0.2  # the op's default strength
    assert Config().augment == ["flip:0.5"]  # the default run flips only, as before
    for bad, words in [("flp:0.5", "did you mean 'flip'"), ("flip:1.5", "probability"), ("blur", "name:probability"),
                       ("blur:0.5:x", "numbers"), ("blur:0.5:2", "strength")]:
        with pytest.raises(ConfigError, match=words) as err:
            parse_config([f"--augment={bad}"])
        assert str(err.value).startswith("augment:")


def _epoch(ds, sampler, workers, epoch, position=0, persistent_loader=None):
    sampler.set_epoch(epoch, position)
    loader = persistent_loader or torch.utils.data.DataLoader(ds, batch_size=4, sampler=sampler,
                                                              num_workers=workers)
    return torch.cat([b[0] for b in loader])


def test_two_passes_and_a_resumed_epoch_see_the_same_images():
    ds = BytesSet(augment=ALL, seed=11)
    sampler = ResumableSampler(len(ds), seed=11)
    first = _epoch(ds, sampler, 0, 1)
    assert torch.equal(first, _epoch(ds, sampler, 2, 1))  # workers vs main process, a second pass
    resumed = _epoch(ds, sampler, 2, 1, position=4)
    assert torch.equal(resumed, first[4:])
    # and against the per-sample definition, item by item
    order = sampler.order()
    for k, i in enumerate(order):
        assert torch.equal(first[k], ds[EpochIndex(i, 1)][0])
    assert not torch.equal(ds[EpochIndex(order[0], 2)][0], first[0])  # another epoch, other draws


def test_spawned_workers_get_the_recipe_by_pickle():
    # spawn (macOS, Windows, some DDP launchers) pickles the dataset into each worker: the ops are closures, so the
    # recipe travels and the worker rebuilds them; the images equal the main process's, item by item
    import pickle

    ds = BytesSet(augment=ALL, seed=3)
    twin = pickle.loads(pickle.dumps(ds))
    for i in range(len(ds)):
        assert torch.equal(twin[EpochIndex(i, 2)][0], ds[EpochIndex(i, 2)][0]), i
    sampler = ResumableSampler(len(ds), seed=3)
    sampler.set_epoch(2, 0)
    loader = torch.utils.data.DataLoader(ds, batch_size=4, sampler=sampler, num_workers=1,
                                         multiprocessing_context="spawn")
    got = torch.cat([b[0] for b in loader])
    assert torch.equal(got, torch.stack([ds[EpochIndex(i, 2)][0] for i in sampler.order()]))


def test_persistent_workers_see_each_new_epoch():
    ds = BytesSet(augment="flip:0.5,jitter:1", seed=5)
    sampler = ResumableSampler(len(ds), seed=5)
    loader = torch.utils.data.DataLoader(ds, batch_size=4, sampler=sampler, num_workers=2, persistent_workers=True)
    for epoch in (0, 1):
        got = _epoch(ds, sampler, 2, epoch, persistent_loader=loader)
        want = torch.stack([ds[EpochIndex(i, epoch)][0] for i in sampler.order()])
        assert torch.equal(got, want), f"epoch {epoch}"
    e0 = torch.stack([ds[EpochIndex(0, 0)][0]])
    assert not torch.equal(e0, torch.stack([ds[EpochIndex(0, 1)][0]]))  # epochs differ


def test_preview_writes_a_png_and_bad_input_writes_nothing(tmp_path, capsys):
    out = tmp_path / "p.png"
    assert augment_main(["--preview", f"--out={out}", "--faces=2", "--views=2", f"--augment={ALL}"]) == 0
    with Image.open(out) as im:
        assert im.format == "PNG" and im.size[0] > 100
    bad = tmp_path / "bad.png"
    assert augment_main(["--preview", f"--out={bad}", "--augment=flip:2"]) == 2
    assert not bad.exists()
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "augment" in err[0]


@pytest.mark.slow  # three short training runs with 2 loader workers each: ~30 s on 2 busy cores
def test_training_resumed_mid_epoch_with_augmentation_matches_uninterrupted(tmp_path):
    import Train
    from Utils.checkpoint import load_checkpoint

    from _train_fixtures import tiny_config

    class Small(BytesSet):  # 32x32 inputs for the tiny network, labels in 4 classes
        def _load(self, index):
            return self.data[index], index % 4, f"sample {index}"

    common = dict(backbone="TinyTestNet", epochs=2, batch_size=4, num_workers=2, log_every=2, input_size=[32, 32])
    data = Small(16, augment=ALL, input_hw=(32, 32), seed=0)
    data.num_classes = 4
    full = Train.train(tiny_config(tmp_path, run_name="full", **common), dataset=data)
    Train.train(tiny_config(tmp_path, run_name="part", max_iterations=3, **common), dataset=data)
    ckpt = tmp_path / "runs" / "part" / "last.pt"
    assert load_checkpoint(ckpt)["iteration"] == 3  # mid-epoch: 4 iterations per epoch
    resumed = Train.train(tiny_config(tmp_path, resume=str(ckpt), **common), dataset=data)
    a = full.components.backbone.state_dict()
    b = resumed.components.backbone.state_dict()
    for k in a:
        torch.testing.assert_close(b[k], a[k], atol=1e-6, rtol=0, msg=k)
