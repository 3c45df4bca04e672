"""Identification on a folder of identities: folder scan, image fitting, rank/CMC against a brute-force loop, the
script end to end against features computed here, and the real ORL faces when ../shared/realdata exists."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from Datasets.images import ImageList, scan_identity_folders
from Utils.evaluation.identification import (cmc_curve, evaluate_identification, gallery_split,
                                             identification_features, true_identity_ranks)
from Utils.evaluation.identification_cli import main


def write_pgm(path, pixels: np.ndarray) -> None:
    """Binary greyscale PGM (P5), written byte by byte - independent of PIL."""
    h, w = pixels.shape
    path.write_bytes(b"P5\n%d %d\n255\n" % (w, h) + pixels.astype(np.uint8).tobytes())


def test_scan_identity_folder_natural_order_and_skips(tmp_path):
    for ident in ("s10", "s2", "s1"):
        (tmp_path / ident).mkdir()
        for i in (10, 2, 1):
            write_pgm(tmp_path / ident / f"{i}.pgm", np.zeros((4, 4)))
    (tmp_path / "s2" / "notes.txt").write_text("not an image")
    (tmp_path / "empty").mkdir()
    (tmp_path / "README").write_text("a file beside the identities")
    folder = scan_identity_folders(tmp_path, natural_order=True, recursive=False)
    assert folder.names == ["s1", "s2", "s10"]
    assert [p.split("/")[-2:] for p in folder.paths[:3]] == [["s1", "1.pgm"], ["s1", "2.pgm"], ["s1", "10.pgm"]]
    assert folder.labels.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    with pytest.raises(FileNotFoundError, match="nowhere"):
        scan_identity_folders(tmp_path / "nowhere")
    with pytest.raises(ValueError, match="no identity sub-folders with images"):
        scan_identity_folders(tmp_path / "empty")


def test_face_images_greyscale_stretch_crop_and_pad(tmp_path):
    grey = np.full((112, 92), 200)  # ORL-sized, 92 wide x 112 high
    write_pgm(tmp_path / "grey.pgm", grey)
    x = ImageList([str(tmp_path / "grey.pgm")], (112, 96), "RGB", "stretch")[0]
    assert x.shape == (3, 112, 96)
    assert torch.allclose(x, torch.full_like(x, (200 - 127.5) / 128))  # a constant stays constant when stretched

    wide = np.zeros((112, 200))
    wide[:, 100:] = 255  # left half black, right half white
    write_pgm(tmp_path / "wide.pgm", wide)
    x = ImageList([str(tmp_path / "wide.pgm")], (112, 96), "RGB", "crop")[0]
    # centre crop of width 96 = columns 52..147: 48 black then 48 white, no resampling (already 112x96)
    want = np.where(np.arange(96) < 48, -127.5 / 128, 127.5 / 128)
    assert np.allclose(x[1].numpy(), np.broadcast_to(want, (112, 96)))

    narrow = np.full((112, 48), 255)
    write_pgm(tmp_path / "narrow.pgm", narrow)
    x = ImageList([str(tmp_path / "narrow.pgm")], (112, 96), "BGR", "pad")[0]
    want = np.where((np.arange(96) >= 24) & (np.arange(96) < 72), 127.5 / 128, -127.5 / 128)
    assert np.allclose(x[0].numpy(), np.broadcast_to(want, (112, 96)))

    (tmp_path / "broken.pgm").write_bytes(b"P5\n10 10\n255\n\x00")
    with pytest.raises(ValueError, match="broken.pgm"):
        ImageList([str(tmp_path / "broken.pgm")], (112, 96))[0]


def brute_force_ranks(feats, labels, probe_idx, gallery_idx, exclude_self):
    """Per probe: best cosine per identity over its gallery images (never itself), rank of the true one."""
    out = []
    for p in probe_idx:
        best = {}
        for g in gallery_idx:
            if exclude_self and g == p:
                continue
            s = float(np.dot(feats[p], feats[g]))
            best[labels[g]] = max(best.get(labels[g], -np.inf), s)
        if labels[p] not in best:
            out.append(0)
            continue
        out.append(1 + sum(1 for v in best.values() if v > best[labels[p]]))
    return np.array(out)


@pytest.mark.parametrize("seed", [0, 1])
def test_ranks_match_a_brute_force_loop(seed):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 9, size=60)
    labels[-1] = 99  # a singleton identity: unrankable under leave-one-out
    centres = rng.normal(size=(100, 16))
    feats = identification_features(centres[labels] + rng.normal(scale=1.2, size=(60, 16)), None, "single")
    ranks, nearest = true_identity_ranks(feats, labels, feats, labels, exclude_self=True, chunk=7)
    want = brute_force_ranks(feats, labels, range(60), range(60), True)
    assert ranks.tolist() == want.tolist() and ranks[-1] == 0 and (ranks > 1).any()
    sims = feats @ feats.T
    np.fill_diagonal(sims, -np.inf)
    assert nearest.tolist() == sims.argmax(1).tolist()

    result = evaluate_identification(feats, labels, "loo", max_rank=3)
    valid = want[want > 0]
    assert result["rank1"] == pytest.approx((valid == 1).mean())
    assert result["cmc"] == pytest.approx([(valid <= k).mean() for k in (1, 2, 3)])
    assert result["unrankable"] == int((want == 0).sum()) >= 1

    mask = gallery_split(labels, 2)
    result = evaluate_identification(feats, labels, "split", gallery_per_identity=2, max_rank=3)
    want = brute_force_ranks(feats, labels, np.flatnonzero(~mask), np.flatnonzero(mask), False)
    assert result["ranks"].tolist() == want.tolist()
    assert result["probes"] == int((~mask).sum()) and result["gallery"] == int(mask.sum())


def test_gallery_split_and_feature_modes():
    labels = np.array([3, 1, 3, 3, 1, 2, 3])
    assert gallery_split(labels, 2).tolist() == [True, True, True, False, True, True, False]
    e, f = np.array([[3.0, 4.0]]), np.array([[0.0, 5.0]])
    assert np.allclose(identification_features(e, f, "concat"), [[3, 4, 0, 5]] / np.sqrt(50))
    assert np.allclose(identification_features(e, f, "sum"), [[3, 9]] / np.sqrt(90))
    with pytest.raises(ValueError, match="no probes"):
        evaluate_identification(np.eye(3, dtype=np.float32), np.array([0, 1, 2]), "split", 1)
    with pytest.raises(ValueError, match="no probe has a gallery image"):
        cmc_curve(np.zeros(4, dtype=np.int64), 1)


def _tiny_checkpoint(path):
    from Backbones import get_backbone
    from Utils.checkpoint import backbone_meta, save_checkpoint

    torch.manual_seed(0)
    model = get_backbone("MobileFaceNet", 32, (32, 32)).eval()
    save_checkpoint({"backbone": model.state_dict(), "meta": backbone_meta("MobileFaceNet", 32, (32, 32), "BGR")},
                    path)
    return model


def test_script_end_to_end_against_features_computed_here(tmp_path, capsys):
    rng = np.random.default_rng(3)
    root = tmp_path / "faces"
    patterns = rng.integers(0, 256, size=(5, 40, 30))
    for ident in range(5):
        (root / f"person{ident}").mkdir(parents=True)
        for k in range(3):
            noisy = np.clip(patterns[ident] + rng.normal(scale=40, size=(40, 30)), 0, 255)
            write_pgm(root / f"person{ident}" / f"{k}.pgm", noisy)
    model = _tiny_checkpoint(tmp_path / "tiny.pt")
    out = tmp_path / "out"
    assert main([f"--checkpoint={tmp_path / 'tiny.pt'}", f"--root={root}", "--device=cpu", "--num_workers=0",
                 f"--output_dir={out}", "--no_progress", "--max_rank=2"]) == 0
    report = json.loads((out / "identification_loo.json").read_text())
    assert report["images"] == 15 and report["identities"] == 5 and report["color_order"] == "BGR"

    # the same protocol computed here: PIL-free image reading, manual resize, BGR, image + flip, loop over probes
    from PIL import Image
    feats, labels = [], []
    for ident in range(5):
        for k in range(3):
            raw = (root / f"person{ident}" / f"{k}.pgm").read_bytes()
            pix = np.frombuffer(raw[raw.index(b"255\n") + 4:], dtype=np.uint8).reshape(40, 30)
            pix = np.asarray(Image.fromarray(pix).resize((32, 32), Image.BILINEAR), dtype=np.float32)
            x = torch.from_numpy((pix - 127.5) / 128).expand(1, 3, 32, 32)  # grey: BGR == RGB
            with torch.no_grad():
                e = torch.cat([model(x), model(x.flip(3))], 1)[0].numpy().astype(np.float64)
            feats.append(e / np.linalg.norm(e))
            labels.append(ident)
    ranks = brute_force_ranks(np.array(feats), np.array(labels), range(15), range(15), True)
    assert report["rank1"] == pytest.approx((ranks == 1).mean())
    assert report["cmc"][1] == pytest.approx((ranks <= 2).mean())
    assert len(report["failures"]) == int((ranks != 1).sum())

    capsys.readouterr()
    assert main([f"--checkpoint={tmp_path / 'tiny.pt'}", f"--root={tmp_path / 'none'}"]) == 2
    assert capsys.readouterr().err.startswith("error: identity folder not found")
    assert main([f"--checkpoint={tmp_path / 'tiny.pt'}", f"--root={root}", "--protocol=split",
                 "--gallery_per_identity=3", "--device=cpu", "--num_workers=0", "--output_dir="]) == 2
    assert "no probes" in capsys.readouterr().err


@pytest.mark.slow
def test_real_orl_leave_one_out_rank1(realdata, tmp_path, capsys):
    """AT&T/ORL (40 x 10 greyscale 92x112, unaligned) with the published CASIA MobileFaceNet at 112x96, stretched:
    an independent run saw rank-1 99.5%."""
    from Utils.checkpoint import save_checkpoint
    from Utils.tools.model_import import build_import_checkpoint, import_backbone

    model, meta, _ = import_backbone("xiaoccer_mobilefacenet", realdata / "models/mobilefacenet_casia_112x96_068.ckpt",
                                     "MobileFaceNet", (112, 96), "RGB")
    save_checkpoint(build_import_checkpoint(model, meta), tmp_path / "mfn.pt")
    assert main([f"--checkpoint={tmp_path / 'mfn.pt'}", f"--root={realdata / 'orl/att_faces'}", "--device=cpu",
                 "--num_workers=0", f"--output_dir={tmp_path}", "--no_progress"]) == 0
    report = json.loads((tmp_path / "identification_loo.json").read_text())
    print(capsys.readouterr().out)
    assert report["images"] == 400 and report["identities"] == 40 and report["unrankable"] == 0
    assert report["rank1"] >= 0.95
