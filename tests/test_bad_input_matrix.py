"""Every command line x every kind of bad input file -> one line naming the file, exit status 2, no traceback,
nothing written.

Rows name a command and the flag whose file is spoiled; the command is run in-process through its `main` (the
entry scripts are thin wrappers of these, tests/test_layout.py keeps them so). `test_every_command_has_a_row` fails
for an entry script or tool without rows, so a new command line cannot skip this matrix.
"""
from __future__ import annotations

import io
import json
import os
import pkgutil
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import torch
from PIL import Image

import _train_fixtures  # noqa: F401  registers TinyTestNet

REPO = Path(__file__).resolve().parents[1]

CASES = ["missing", "empty", "directory", "unreadable", "truncated", "non_utf8", "wrong_format"]
BINARY_CASES = ["missing", "empty", "directory", "unreadable", "truncated", "wrong_format"]
LIST_CASES = ["missing", "empty", "directory", "unreadable", "non_utf8", "wrong_format"]


def _png(rng, hw=(32, 32)) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (*hw, 3), dtype=np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def good(tmp_path_factory) -> dict[str, Path]:
    """Valid inputs of every kind; a row spoils one of them."""
    from Backbones import get_backbone
    from Datasets.binfile import save_bin
    from Utils.checkpoint import backbone_meta, save_checkpoint

    root = tmp_path_factory.mktemp("good")
    rng = np.random.default_rng(0)
    images = root / "images"
    for ident in range(4):
        for k in range(3):
            (images / f"id{ident}").mkdir(parents=True, exist_ok=True)
            (images / f"id{ident}" / f"{k}.png").write_bytes(_png(rng))
    (images / "train_list.txt").write_text("".join(f"id{i}/{k}.png {i}\n" for i in range(4) for k in range(3)))
    save_bin(root / "val.bin", [_png(rng) for _ in range(40)], [k % 2 == 0 for k in range(20)])
    (root / "pairs.txt").write_text("".join(f"id{k % 4}/0.png id{(k + k % 2) % 4}/1.png {1 - 2 * (k % 2)}\n"
                                            for k in range(20)))
    torch.manual_seed(0)
    model = get_backbone("TinyTestNet", 16, (32, 32))
    save_checkpoint({"backbone": model.state_dict(), "meta": backbone_meta("TinyTestNet", 16, (32, 32), "RGB")},
                    root / "model.pt")
    torch.save({"conv": torch.zeros(2)}, root / "foreign.pth")
    (root / "probes.json").write_text(json.dumps({"path": ["id0/0.png", "id0/1.png"], "id": ["a", "a"]}))
    (root / "landmarks.txt").write_text("id0/0.png 10 12 22 12 16 18 11 24 21 24\n")
    from test_ijb import write_ijb  # the IJB layout, written as tests/test_ijb.py writes it

    write_ijb(root / "IJBC")
    return {"ijb": root / "IJBC", "images": images, "bin": root / "val.bin", "pairs": root / "pairs.txt", "checkpoint": root / "model.pt",
            "foreign": root / "foreign.pth", "probes": root / "probes.json", "landmarks": root / "landmarks.txt",
            "png": images / "id0" / "0.png"}


def _spoil(case: str, good_file: Path, where: Path) -> Path:
    """A bad stand-in for `good_file` under `where` (same suffix)."""
    bad = where / f"bad_{case}{good_file.suffix}"
    if case == "missing":
        return bad
    if case == "directory":
        bad.mkdir()
    elif case == "empty":
        bad.write_bytes(b"")
    elif case == "truncated":
        data = good_file.read_bytes()
        bad.write_bytes(data[: len(data) // 2])
    elif case == "non_utf8":
        bad.write_bytes(b"id0/0.png \xff\xfe\xfa 1\n\x80\x81 2\n")
    elif case == "wrong_format":  # valid bytes of another kind: text for a binary, a wrong layout for a list
        bad.write_text({".json": '{"paths": 3}', ".txt": "only-one-field\n"}.get(good_file.suffix,
                                                                                 "a line of text\n"))
    elif case == "unreadable":
        bad.write_bytes(good_file.read_bytes())
        bad.chmod(0)
    return bad


def _train(g, bad, out):
    from Train import main

    return main(["--train_format=folder", f"--train_root={g['images']}", "--backbone=TinyTestNet",
                 "--input_size=[32,32]", "--compile=false", "--use_amp=false", "--num_workers=0", "--epochs=1",
                 "--batch_size=4", "--eval_at_start=false", f"--output_dir={out}", f"--data_root={out / 'data'}"]
                + bad)


def _verification(dataset):
    def run(g, bad, out):
        from Utils.evaluation.verification_cli import main

        return main([f"--output_dir={out}", "--device=cpu", "--num_workers=0", "--no_progress", *bad],
                    dataset=dataset)
    return run


def _suite(g, bad, out):
    from Utils.evaluation.verification_suite import main

    return main([f"--output_dir={out}", "--device=cpu", "--num_workers=0", "--no_progress", *bad])


def _ijb(g, bad, out):
    from Utils.evaluation.ijb.cli import main

    return main([f"--output_dir={out}", "--device=cpu", "--num_workers=0", "--no_progress",
                 "--feature_cache=none", *bad])


def _identification(g, bad, out):
    from Utils.evaluation.identification_cli import main

    return main([f"--root={g['images']}", f"--output_dir={out}", "--device=cpu", "--num_workers=0", "--no_progress",
                 "--max_rank=1", "--gallery_per_identity=1", *bad])


def _megaface(g, bad, out):
    from Utils.evaluation.megaface_cli import main

    return main([f"--probe_root={g['images']}", f"--distractor_root={g['images']}", f"--output_dir={out}",
                 "--device=cpu", "--num_workers=0", "--no_progress", "--feature_cache=none", *bad])


def _tool(module: str):
    def run(g, bad, out):
        return __import__(module, fromlist=["main"]).main(bad)
    return run


# command -> [(flag builder: (good files, bad path, out) -> the argv part naming the bad file, good file key, cases)]
Row = tuple[Callable, str, list[str]]
VAL = lambda g, bad, out: [f"--val_sets={bad}"]  # noqa: E731
ROWS: dict[str, tuple[Callable, list[Row]]] = {
    "Train.py": (_train, [(VAL, "bin", BINARY_CASES),
                          (lambda g, bad, out: [f"--val_sets={bad}::{g['images']}"], "pairs", LIST_CASES),
                          (lambda g, bad, out: [f"--train_list={bad}", "--val_sets=[]"], "pairs", LIST_CASES),
                          (lambda g, bad, out: [f"--resume={bad}", "--val_sets=[]"], "checkpoint", BINARY_CASES)]),
    **{script: (_verification(name), [
        (lambda g, bad, out: [f"--checkpoint={g['checkpoint']}", f"--data={bad}"], "bin", BINARY_CASES),
        (lambda g, bad, out: [f"--checkpoint={g['checkpoint']}", f"--pairs={bad}", f"--images={g['images']}"],
         "pairs", LIST_CASES),
        (lambda g, bad, out: [f"--checkpoint={bad}", f"--data={g['bin']}"], "checkpoint", BINARY_CASES)])
       for script, name in (("LFW_Evaluation.py", "LFW"), ("AgeDB-30_Evaluation.py", "AgeDB-30"),
                            ("CFP-FP_Evaluation.py", "CFP-FP"))},
    "Verification_Evaluation.py": (_suite, [
        (lambda g, bad, out: [f"--checkpoint={g['checkpoint']}", f"--data={g['bin']},{bad}"], "bin", BINARY_CASES),
        (lambda g, bad, out: [f"--checkpoint={bad}", f"--data={g['bin']}"], "checkpoint", BINARY_CASES)]),
    # the IJB meta files (missing, a template without images, a landmark line of the wrong length) are spoiled in
    # tests/test_ijb.py, whose errors name the meta file and line
    "IJB_Evaluation.py": (_ijb, [
        (lambda g, bad, out: [f"--checkpoint={bad}", f"--data={g['ijb']}"], "checkpoint", BINARY_CASES)]),
    "Identification_Evaluation.py": (_identification, [
        (lambda g, bad, out: [f"--checkpoint={bad}"], "checkpoint", BINARY_CASES)]),
    "MegaFace_Evaluation.py": (_megaface, [
        (lambda g, bad, out: [f"--checkpoint={g['checkpoint']}", f"--probe_list={bad}",
                              f"--distractor_lists={g['probes']}"], "probes", LIST_CASES),
        (lambda g, bad, out: [f"--checkpoint={bad}", f"--probe_list={g['probes']}",
                              f"--distractor_lists={g['probes']}"], "checkpoint", BINARY_CASES)]),
    "Utils.tools.convert_bin": (_tool("Utils.tools.convert_bin"), [
        (lambda g, bad, out: ["to-folder", str(bad), str(out)], "bin", BINARY_CASES),
        (lambda g, bad, out: ["to-bin", f"{bad}::{g['images']}", str(out / "x.bin")], "pairs", LIST_CASES)]),
    "Utils.tools.align_faces": (_tool("Utils.tools.align_faces"), [
        (lambda g, bad, out: [f"--input_dir={g['images']}", f"--landmark_file={bad}", f"--output_dir={out}"],
         "landmarks", LIST_CASES),
        (lambda g, bad, out: [f"--image={bad}", "--landmarks=10,12,22,12,16,18,11,24,21,24",
                              f"--output={out / 'a.jpg'}"], "png", BINARY_CASES)]),
    "Utils.tools.model_import": (_tool("Utils.tools.model_import.cli"), [
        (lambda g, bad, out: ["--source=ordered", f"--weights={bad}", "--backbone=MobileFaceNet",
                              "--color_order=RGB", f"--out={out / 'x.pt'}"], "foreign", BINARY_CASES)]),
    "Utils.tools.onnx_export": (_tool("Utils.tools.onnx_export"), [
        (lambda g, bad, out: [f"--checkpoint={bad}", f"--out={out / 'x.onnx'}"], "checkpoint", BINARY_CASES)]),
    "Utils.tools.generate_dataset_list": (_tool("Utils.tools.generate_dataset_list"), [
        (lambda g, bad, out: [str(bad), f"--output={out / 'list.txt'}"], "images", ["missing", "empty"])]),
}
# commands that read no input file, with the reason
NO_INPUT_FILES = {"Utils.tools.visdom_server": "serves a dashboard; reads no input file"}

PARAMS = [pytest.param(cmd, k, case, id=f"{cmd}-{spec[1]}{k}-{case}")
          for cmd, (_, rows) in ROWS.items() for k, spec in enumerate(rows) for case in spec[2]]


@pytest.mark.parametrize("command,row,case", PARAMS)
def test_bad_input_is_one_line_exit_2_nothing_written(good, tmp_path, capsys, command, row, case):
    run, rows = ROWS[command]
    build, key, _ = rows[row]
    if case == "unreadable" and os.geteuid() == 0:
        pytest.skip("running as root: chmod 000 does not stop reading")
    spoiled = tmp_path / "in"
    spoiled.mkdir()
    bad = _spoil(case, good[key], spoiled) if key != "images" else \
        (spoiled / "missing" if case == "missing" else _spoil("empty", good["bin"], spoiled))
    out = tmp_path / "out"
    capsys.readouterr()
    try:
        status = run(good, build(good, bad, out), out)
    except SystemExit as exc:  # argparse-level errors
        status = exc.code
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("error")]
    assert status == 2, (status, err[-1500:])
    assert len(errors) == 1 and "Traceback" not in err, err[-1500:]
    assert bad.name in errors[0], errors[0]
    assert not out.exists() or not any(p for p in out.rglob("*") if p.is_file() and "data" not in p.parts), \
        sorted(str(p) for p in out.rglob("*"))


def _discovered_commands() -> set[str]:
    scripts = {p.name for p in REPO.glob("*.py") if p.name == "Train.py" or p.name.endswith("_Evaluation.py")}
    import Utils.tools

    tools = {f"Utils.tools.{m.name}" for m in pkgutil.iter_modules(Utils.tools.__path__)}
    return scripts | tools


def test_every_command_has_a_row():
    missing = sorted(_discovered_commands() - set(ROWS) - set(NO_INPUT_FILES))
    assert not missing, (f"command lines without rows in tests/test_bad_input_matrix.py ROWS: {', '.join(missing)} "
                         f"(add the flags that read files, or list it in NO_INPUT_FILES with the reason)")
