"""Train.py's command line over a run's life: resume with only --resume, start from a run's config.json, and a
start whose checks fail writes nothing. Tiny runs on the generated synthetic set, in process."""
from __future__ import annotations

import json

import pytest
import torch

import Train
from _train_fixtures import TinyTestNet  # noqa: F401  (registers the TinyTestNet backbone)


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    """One generated synthetic set for the module: generation dominates these tiny runs."""
    return tmp_path_factory.mktemp("synthetic")


def _args(tmp_path, data_root, run_name="a", **extra):
    """Non-default settings throughout (head, lr, set size): a resume that fell back to the defaults would differ."""
    flags = dict(backbone="TinyTestNet", head="CosFace", lr=0.02, input_size="[32,32]", synthetic_identities=6,
                 synthetic_images_per_identity=4, synthetic_val_pairs=40, synthetic_probe_identities=2,
                 synthetic_distractors=10, batch_size=8, epochs=1, num_workers=0,
                 compile="false", use_amp="false", eval_at_start="false", data_root=data_root,
                 output_dir=tmp_path / "runs", run_name=run_name, log_every=1)
    flags.update(extra)
    return [f"--{k}={v}" for k, v in flags.items()]


def test_resume_with_only_the_run_directory_continues_with_the_runs_own_settings(tmp_path, data_root, capsys):
    assert Train.main(_args(tmp_path, data_root)) == 0
    run = tmp_path / "runs" / "a"
    assert Train.main([f"--resume={run}", "--epochs=2"]) == 0  # epochs: a flag a resume may change
    ckpt = torch.load(run / "last.pt", weights_only=False)
    # 24 images / batch 8 = 3 iterations per epoch; the run went on from 3 to 6 with its own head and lr
    assert ckpt["iteration"] == 6 and ckpt["num_classes"] == 6
    assert ckpt["config"]["head"] == "CosFace" and ckpt["config"]["lr"] == 0.02 and ckpt["config"]["epochs"] == 2
    assert json.loads((run / "config.json").read_text())["epochs"] == 2  # config.json tracks the run
    capsys.readouterr()
    # a flag that changes the training is refused in one line naming every such key; nothing trained
    assert Train.main([f"--resume={run}", "--epochs=3", "--head=ArcFace", "--lr=0.1"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "head: run has 'CosFace'" in err and "lr: run has 0.02" in err
    assert "epochs" not in err.split(":", 2)[2]
    assert torch.load(run / "last.pt", weights_only=False)["iteration"] == 6
    # a missing run is one line too
    assert Train.main([f"--resume={tmp_path / 'runs' / 'nope'}"]) == 2
    assert "no such run directory" in capsys.readouterr().err


def test_a_runs_config_json_starts_a_new_run_with_its_settings(tmp_path, data_root, capsys):
    assert Train.main(_args(tmp_path, data_root)) == 0
    cfg_json = tmp_path / "runs" / "a" / "config.json"
    assert Train.main([f"--config={cfg_json}", "--run_name=b"]) == 0
    saved = json.loads((tmp_path / "runs" / "b" / "config.json").read_text())
    assert saved["head"] == "CosFace" and saved["synthetic_identities"] == 6 and saved["run_name"] == "b"
    capsys.readouterr()
    # without --run_name the new run gets a fresh name, not the old run's (which would be refused)
    assert Train.main([f"--config={cfg_json}", "--epochs=1", "--max_iterations=1"]) == 0
    assert len(list((tmp_path / "runs").iterdir())) == 3
    bad = tmp_path / "settings.txt"
    bad.write_text("lr = 0.1\n")
    capsys.readouterr()
    assert Train.main([f"--config={bad}"]) == 2
    assert capsys.readouterr().err.strip().count("\n") == 0


def test_failed_checks_write_nothing_so_the_same_run_name_works_after_the_fix(tmp_path, data_root, capsys):
    missing = tmp_path / "lfw.bin"
    assert Train.main(_args(tmp_path, data_root, val_sets=missing)) == 2
    assert "lfw.bin" in capsys.readouterr().err
    assert not (tmp_path / "runs" / "a").exists()
    assert Train.main(_args(tmp_path, data_root, val_sets="synthetic")) == 0
    assert (tmp_path / "runs" / "a" / "best.pt").is_file()


def _face_folder(root, classes=4, per_class=4):
    """A tiny image folder training set with its train_list.txt, written here with PIL."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    lines = []
    for c in range(classes):
        (root / f"id{c}").mkdir(parents=True)
        for k in range(per_class):
            Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(root / f"id{c}" / f"{k}.png")
            lines.append(f"id{c}/{k}.png {c}")
    (root / "train_list.txt").write_text("\n".join(lines) + "\n")
    return root


def _folder_args(tmp_path, root, run_name):
    return [f"--train_format=folder", f"--train_root={root}", "--backbone=TinyTestNet", "--input_size=[32,32]",
            "--batch_size=8", "--epochs=1", "--num_workers=0", "--compile=false", "--use_amp=false",
            f"--data_root={tmp_path / 'data'}", f"--output_dir={tmp_path / 'runs'}", f"--run_name={run_name}"]


def test_real_training_data_validates_on_the_bins_beside_it_or_says_it_skips(tmp_path, capsys):
    root = _face_folder(tmp_path / "faces")
    assert Train.main(_folder_args(tmp_path, root, "none")) == 0
    out = capsys.readouterr().out
    assert out.count("training without validation") == 1
    assert not (tmp_path / "data").exists()  # no synthetic set generated for a real-data run
    history = (tmp_path / "runs" / "none" / "history.jsonl").read_text()
    assert '"eval"' not in history

    # insightface's layout: lfw.bin beside the training set (written here with the insightface pickle layout)
    import io
    import pickle

    import numpy as np
    from PIL import Image

    rng, bins = np.random.default_rng(1), []
    for _ in range(40):
        buf = io.BytesIO()
        Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(buf, format="PNG")
        bins.append(buf.getvalue())
    with open(root / "lfw.bin", "wb") as f:
        pickle.dump((bins, [i % 2 == 0 for i in range(20)]), f)
    assert Train.main(_folder_args(tmp_path, root, "bins")) == 0
    assert "validating on lfw.bin found beside the training set" in capsys.readouterr().out
    evals = [json.loads(l) for l in (tmp_path / "runs" / "bins" / "history.jsonl").read_text().splitlines()
             if '"eval"' in l]
    assert evals and set(evals[-1]["accuracies"]) == {"lfw"}
    assert json.loads((tmp_path / "runs" / "bins" / "config.json").read_text())["val_sets"] == [str(root / "lfw.bin")]
    assert not (tmp_path / "data").exists()
