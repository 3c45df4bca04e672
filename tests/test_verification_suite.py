"""Several verification sets in one run (Utils/evaluation/verification_suite.py, Verification_Evaluation.py) and the
CALFW / CPLFW native pair lists.

The .bin files are written here with pickle (insightface's layout: (list of 2N encoded images, N bools)); the
expected numbers come from a brute-force computation in this file: each image decoded with PIL and embedded one
at a time, the face_pytorch protocol as a plain loop over folds and the 20,001 thresholds, TAR@FAR by scanning
every threshold."""
from __future__ import annotations

import io
import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

REPO = Path(__file__).resolve().parents[1]


def _write_bin(path: Path, n_pairs: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    bins, issame = [], []
    for k in range(n_pairs):
        same = bool(rng.integers(0, 2)) if k > 1 else k == 0  # both kinds present
        a = rng.integers(0, 256, (112, 112, 3), dtype=np.uint8)
        other = rng.integers(0, 256, (112, 112, 3), dtype=np.uint8)
        w = rng.uniform(0.1, 0.7) if same else 0.0  # same pairs share part of one face: scores overlap the others'
        b = (w * a + (1 - w) * other).astype(np.uint8)
        for img in (a, b):
            noisy = np.clip(img.astype(int) + rng.integers(-40, 41, img.shape), 0, 255).astype(np.uint8)
            buf = io.BytesIO()
            Image.fromarray(noisy).save(buf, format="PNG")
            bins.append(buf.getvalue())
        issame.append(same)
    with open(path, "wb") as f:
        pickle.dump((bins, issame), f, protocol=2)


def _toy_model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(4), torch.nn.Flatten(), torch.nn.Linear(48, 16)).eval()


def _brute_embeddings(model, path: Path):
    with open(path, "rb") as f:
        bins, issame = pickle.load(f)
    emb, flip = [], []
    with torch.no_grad():
        for b in bins:  # one image at a time, normalised as the backbones expect: (x - 127.5) / 128
            x = (np.asarray(Image.open(io.BytesIO(b)).convert("RGB"), dtype=np.float64) - 127.5) / 128.0
            t = torch.from_numpy(x.transpose(2, 0, 1).copy()).float()[None]
            emb.append(model(t)[0].double().numpy())
            flip.append(model(torch.flip(t, dims=[3]))[0].double().numpy())
    return np.array(emb), np.array(flip), np.array(issame, dtype=bool)


def _brute_face_pytorch(emb, flip, issame):
    n = issame.size
    folds = np.arange(n) * 10 // n
    feat = np.concatenate([emb, flip], axis=1)
    grid = np.arange(-10000, 10001) / 10000.0
    accs, thrs, held = [], [], np.empty(n)
    for f in range(10):
        test = folds == f
        mu = feat[np.repeat(~test, 2)].mean(axis=0)
        x = feat - mu
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        s = np.sum(x[0::2] * x[1::2], axis=1)
        tr_s, tr_same = s[~test], issame[~test]
        correct = [(np.sum(tr_s[tr_same] > t) + np.sum(tr_s[~tr_same] < t)) for t in grid]
        t = float(np.mean(grid[np.asarray(correct) == max(correct)]))
        te_s, te_same = s[test], issame[test]
        accs.append((np.sum(te_s[te_same] > t) + np.sum(te_s[~te_same] < t)) / te_s.size)
        thrs.append(t)
        held[test] = s[test]
    return float(np.mean(accs)), float(np.std(accs)), float(np.mean(thrs)), held


def _brute_tar_at_far(scores, issame, far):
    best = 0.0
    for t in np.concatenate([np.unique(scores), [np.inf]]):
        if np.mean(scores[~issame] >= t) <= far:
            best = max(best, float(np.mean(scores[issame] >= t)))
    return best


@pytest.fixture(scope="module")
def bins(tmp_path_factory):
    root = tmp_path_factory.mktemp("suite")
    for name, n, seed in (("lfw", 40, 1), ("cfp_fp", 30, 2), ("agedb_30", 20, 3)):
        _write_bin(root / f"{name}.bin", n, seed)
    return root


def test_suite_rows_equal_brute_force_and_each_set_alone(bins):
    from Config import Config
    from Datasets import load_verification_set
    from Utils.evaluation.verification_suite import format_table, run_suite, table_row
    from Utils.evaluation.verify import verify

    model = _toy_model()
    cfg = Config(input_size=[112, 112])
    vsets = [load_verification_set(str(bins / f"{n}.bin"), cfg) for n in ("lfw", "cfp_fp", "agedb_30")]
    reports = run_suite(model, vsets, "face_pytorch", progress=False, batch_size=7)
    table = format_table([r.summary for r in reports])
    assert [line.split()[0] for line in table.splitlines()[1:]] == ["lfw", "cfp_fp", "agedb_30"]
    for vset, report in zip(vsets, reports):
        row = table_row(report.summary)
        emb, flip, issame = _brute_embeddings(model, bins / f"{vset.name}.bin")
        acc, std, thr, held = _brute_face_pytorch(emb, flip, issame)
        assert row["pairs"] == issame.size
        assert row["accuracy"] == pytest.approx(acc, abs=1e-12) and row["std"] == pytest.approx(std, abs=1e-12)
        assert row["threshold"] == pytest.approx(thr, abs=1e-9)
        for far in ("1e-03", "1e-04"):
            assert row[f"tar@far={far}"] == pytest.approx(_brute_tar_at_far(held, issame, float(far)), abs=1e-12)
        alone = verify(model, vset, "face_pytorch", batch_size=5, progress=False)  # another batching, one set
        assert alone["accuracy"] == report.summary["accuracy"] and alone["threshold"] == report.summary["threshold"]
        assert f"{100 * acc:.2f} +- {100 * std:.2f}" in table


def test_data_list_parsing(bins):
    from Utils.evaluation.cli import CLIError
    from Utils.evaluation.verification_suite import parse_data_list, set_names

    a, b = str(bins / "lfw.bin"), str(bins / "cfp_fp.bin")
    assert parse_data_list(f" {a}, {b} ,") == [a, b]
    for bad, msg in ((f"{a},{a}", "listed twice"), ("", "give one or more"), (f"{a},{bins}/nope.bin", "nope.bin"),
                     (f"{a}::{bins}/nodir", "nodir")):
        with pytest.raises(CLIError, match=msg):
            parse_data_list(bad)
    assert set_names(["lfw", "cfp_fp", "lfw"]) == ["lfw", "cfp_fp", "lfw_2"]


# ------------------------------------------------------------------------------------------------- CALFW / CPLFW
CALFW_LINES = [("Aaron_0001.jpg", 1), ("Aaron_0002.jpg", 1), ("Bea_0001.jpg", 0), ("Cid_0003.jpg", 0)] * 10


def _write_calfw(root: Path, lines, images: bool = True) -> Path:
    folder = root / "aligned images"
    folder.mkdir(parents=True, exist_ok=True)
    if images:
        rng = np.random.default_rng(0)
        for name in {n for n, _ in lines}:
            Image.fromarray(rng.integers(0, 256, (112, 112, 3), dtype=np.uint8)).save(folder / name)
    path = root / "pairs_CALFW.txt"
    path.write_text("".join(f"{n} {lab}\n" for n, lab in lines))
    return path


def test_calfw_pair_list_read_as_written(tmp_path):
    from Datasets.pairs import read_pairs

    path = _write_calfw(tmp_path, CALFW_LINES, images=False)
    pairs = read_pairs(path)
    assert len(pairs) == 20
    assert pairs.left[:2] == ["Aaron_0001.jpg", "Bea_0001.jpg"] and pairs.right[:2] == ["Aaron_0002.jpg",
                                                                                         "Cid_0003.jpg"]
    assert pairs.issame.tolist() == [True, False] * 10
    assert pairs.folds.tolist() == [k // 2 for k in range(20)]  # 10 contiguous folds
    assert pairs.base == str(tmp_path / "aligned images") and pairs.lines[1] == f"{path}:3"


@pytest.mark.parametrize("lines,where", [
    ([("a.jpg", 1), ("b.jpg", 0)], ":2: label 0 differs"),
    ([("a.jpg", 1), ("b.jpg", 2)], ":2: label 2 differs"),
    ([("a.jpg", 1), ("b.jpg", 1), ("c.jpg", 0)], "3 lines"),
])
def test_calfw_bad_lists_name_the_line(tmp_path, lines, where):
    from Datasets.errors import DataFormatError
    from Datasets.pairs import read_pairs

    path = _write_calfw(tmp_path, lines, images=False)
    with pytest.raises(DataFormatError, match=where):
        read_pairs(path)
    path.write_text("a.jpg 1\nb.jpg x\n")
    with pytest.raises(DataFormatError, match=r"pairs_CALFW.txt:2: expected 'image_name label'"):
        read_pairs(path)


def test_training_val_sets_take_the_same_list(tmp_path, bins):
    from Config.cli import parse_config
    from Datasets import load_verification_set

    calfw = _write_calfw(tmp_path, CALFW_LINES)
    cfg, _ = parse_config([f"--val_sets={bins / 'lfw.bin'},{calfw}", "--input_size=112,112"])
    assert cfg.val_sets == [str(bins / "lfw.bin"), str(calfw)]
    sets = [load_verification_set(s, cfg) for s in cfg.val_sets]
    assert [s.name for s in sets] == ["lfw", "calfw"]
    assert len(sets[1].images) == 4 and sets[1].issame.tolist() == [True, False] * 10  # distinct images once


def _run(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, *args], cwd=REPO, capture_output=True, text=True, timeout=300, env=env)


@pytest.fixture(scope="module")
def checkpoint(bins):
    from Backbones import get_backbone
    from Utils.checkpoint import backbone_meta, save_checkpoint

    torch.manual_seed(0)
    model = get_backbone("MobileFaceNet", 128, (112, 112))
    save_checkpoint({"backbone": model.state_dict(), "meta": backbone_meta("MobileFaceNet", 128, (112, 112), "RGB"),
                     "config": {}}, bins / "model.pt")
    return bins / "model.pt"


def test_script_table_and_json_match_the_single_set_script(bins, checkpoint, tmp_path):
    common = [f"--checkpoint={checkpoint}", "--device=cpu", "--batch_size=16", "--num_workers=0", "--no_progress",
              "--exact"]
    proc = _run("Verification_Evaluation.py", f"--data={bins / 'lfw.bin'},{bins / 'agedb_30.bin'}",
                f"--output_dir={tmp_path / 'suite'}", *common)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads((tmp_path / "suite" / "verification_face_pytorch.json").read_text())
    assert [r["name"] for r in doc["table"]] == ["lfw", "agedb_30"] and doc["table"][1]["pairs"] == 20
    assert (tmp_path / "suite" / "verification_face_pytorch_roc.png").stat().st_size > 1000
    single = _run("LFW_Evaluation.py", f"--data={bins / 'agedb_30.bin'}", f"--output_dir={tmp_path / 'one'}",
                  *common)
    assert single.returncode == 0, single.stderr
    alone = json.loads((tmp_path / "one" / "lfw_face_pytorch.json").read_text())
    for key in ("accuracy", "std", "threshold", "tar_at_far", "fold_accuracies"):
        assert doc["sets"]["agedb_30"][key] == alone[key], key
    assert "agedb_30" in proc.stdout and "TAR@FAR=1e-04" in proc.stdout


def test_script_bad_data_is_one_line_and_writes_nothing(bins, checkpoint, tmp_path):
    proc = _run("Verification_Evaluation.py", f"--checkpoint={checkpoint}", f"--data={bins / 'lfw.bin'},missing.bin",
                f"--output_dir={tmp_path / 'out'}")
    assert proc.returncode == 2 and proc.stderr.strip().count("\n") == 0 and "missing.bin" in proc.stderr
    assert not (tmp_path / "out").exists()
