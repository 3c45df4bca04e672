"""A walk through README.md as a new user takes it: every command of its ```bash blocks is run as
written, in a fresh working directory, and the test fails when one does not run. Slow (~3 min on 2 cores).

How a command is made small without changing what it runs (the documented mechanism):
  * Train.py commands get TRAIN_TINY appended (later flags win): a tiny synthetic set, 32x32, a few iterations, no
    torch.compile (its warm-up alone is minutes on CPU). A --resume command gets only the flags a resume accepts.
  * evaluation commands get EVAL_TINY appended (no DataLoader workers, no progress bars).
  * placeholders are filled in (PLACEHOLDERS): runs/<run> -> the run the walk's first `python Train.py` made,
    ../shared -> the project's shared folder, the README's example weights and identity folder -> their copies in
    ../shared/realdata (the commands that need it are skipped where it is absent), my_run.py -> a small settings
    file written here. A command whose --checkpoint the README makes further down runs after the rest; a command
    the README repeats runs once.
Commands that need what a test machine does not have are skipped, each with its reason (SKIP below); they are
printed, so the walk says what it did not run.
"""
from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import REPO, SHARED

TRAIN_TINY = ["--epochs=1", "--max_iterations=3", "--synthetic_identities=6", "--synthetic_images_per_identity=4",
              "--synthetic_val_pairs=40", "--synthetic_probe_identities=2", "--synthetic_distractors=10",
              "--input_size=[32,32]", "--batch_size=8", "--num_workers=0", "--compile=false", "--eval_at_start=false",
              "--eval_batch_size=32"]
RESUME_TINY = ["--num_workers=0", "--compile=false"]
EVAL_TINY = ["--num_workers=0", "--no_progress", "--batch_size=32"]
EVAL_SCRIPTS = ("LFW_Evaluation.py", "AgeDB-30_Evaluation.py", "CFP-FP_Evaluation.py", "MegaFace_Evaluation.py",
                "Identification_Evaluation.py", "Verification_Evaluation.py", "IJB_Evaluation.py")

# the README's example files -> where a test machine has them
PLACEHOLDERS = {"--weights=068.ckpt": "--weights=../shared/realdata/models/mobilefacenet_casia_112x96_068.ckpt",
                "--root=att_faces": "--root=../shared/realdata/orl/att_faces"}

# (regular expression on the command as written, reason it is not run here)
SKIP = [
    (r"pip install", "installs packages (the test runs inside the installed environment)"),
    (r"-m pytest", "runs the test suite itself"),
    (r"/data/|FACESCRUB_ALIGNED|agedb_30\.bin|cfp-dataset|--pairs=lfw/pairs\.txt|backbone\.pth",
     "needs a real data set or foreign weights that are not on a test machine"),
    (r"--device=cuda|--use_multi_gpus|torchrun", "needs GPUs / several processes"),
    (r"\.\.\. |\.\.\.$", "elided in the README (a variation of the command above it)"),
    (r"visdom_server --setup", "downloads the page assets from npm (tests/test_train_visdom.py covers it)"),
    (r"visdom_server --port", "serves until stopped (tests/test_train_visdom.py starts and stops it)"),
    (r"^tensorboard ", "serves until stopped (tests/test_train_tensorboard.py reads the event files it shows)"),
    (r"shared/realdata/lfw", "6,000 real LFW pairs: minutes on CPU; tests/test_real_lfw.py checks the same numbers"),
]


def readme_commands(text: str) -> list[str]:
    """Every command of README's ```bash blocks: continuation lines joined, comments cut, `a && b` split."""
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = re.sub(r"\s+#\s.*$", "", line).strip()
            commands += [c.strip() for c in line.split("&&") if c.strip()] if line else []
    return commands


def _fill(command: str) -> str:
    for written, here in PLACEHOLDERS.items():
        command = command.replace(written, here)
    return command


def _skip_reason(command: str) -> str | None:
    command = _fill(command)
    if "../shared" in command and not SHARED.is_dir():
        return "needs ../shared (absent here)"
    return next((reason for pattern, reason in SKIP if re.search(pattern, command)), None)


def _argv(command: str, first_run: Path | None) -> list[str]:
    text = _fill(command).replace("../shared", str(SHARED))
    if "runs/<run>" in text:
        assert first_run is not None, f"{command}: no run made yet by the walk"
        text = text.replace("runs/<run>", str(first_run))
    words = shlex.split(text)
    env_words = [w for w in words if re.fullmatch(r"[A-Z_]+=\S*", w)]
    words = words[len(env_words):]
    assert words[0] == "python", f"not a python command: {command}"
    words[0] = sys.executable
    script = words[1]
    if script.endswith(".py"):
        words[1] = str(REPO / script)
    if script == "Train.py":
        words += RESUME_TINY if any(w.startswith("--resume=") for w in words) else TRAIN_TINY
    elif script in EVAL_SCRIPTS:
        words += EVAL_TINY
    return words


@pytest.mark.slow
def test_every_runnable_readme_command_runs_as_written(tmp_path):
    commands = readme_commands((REPO / "README.md").read_text())
    assert len(commands) > 20
    (tmp_path / "my_run.py").write_text("head = 'CosFace'\nmargin = 0.35\n")
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    first_run, failed, skipped, ran, seen = None, [], [], [], set()
    queue, deferred, not_made = list(commands), set(), set()
    while queue:
        command = queue.pop(0)
        reason = _skip_reason(command)
        if reason:
            skipped.append(f"{command}  [{reason}]")
            not_made |= set(re.findall(r"--out=(\S+)", command))  # files a skipped command would have written
            continue
        if _fill(command) in seen:  # the same command twice in the README (after filling in): run once
            continue
        ckpt = re.search(r"--checkpoint=(\S+)", _fill(command))
        if ckpt and "<run>" not in ckpt.group(1) and not (tmp_path / ckpt.group(1)).exists() \
                and command not in deferred:
            deferred.add(command)  # a model the README makes further down: run this after the rest
            queue.append(command)
            continue
        if ckpt and ckpt.group(1) in not_made and not (tmp_path / ckpt.group(1)).exists():
            # e.g. mfn.pt comes from the imported real checkpoint in ../shared: not there, not run
            skipped.append(f"{command}  [its {ckpt.group(1)} is written by a command skipped above]")
            continue
        seen.add(_fill(command))
        argv = _argv(command, first_run)
        start = time.perf_counter()
        proc = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
        ran.append(f"{command}  [{time.perf_counter() - start:.0f} s]")
        if proc.returncode != 0:
            failed.append(f"{command}\n    exit {proc.returncode}: {(proc.stderr or proc.stdout).strip()[-600:]}")
        if first_run is None and argv[1].endswith("Train.py") and (tmp_path / "runs").is_dir():
            first_run = next(iter(sorted((tmp_path / "runs").iterdir(), key=lambda p: p.stat().st_mtime)), None)
    print("\nran:\n  " + "\n  ".join(ran) + "\nskipped:\n  " + "\n  ".join(skipped))
    assert not failed, "README commands that do not run as written:\n" + "\n".join(failed)
    assert len(ran) >= 10


def test_readme_commands_are_found_and_classified():
    """The parser itself, on a block written here: continuation, comment, && split; and a skip reason each."""
    text = "x\n```bash\npython a.py --x=1 \\\n    --y=2      # note\nA=1 pip install r && python Train.py\n```\n"
    assert readme_commands(text) == ["python a.py --x=1      --y=2", "A=1 pip install r", "python Train.py"]
    assert _skip_reason("A=1 pip install r") and _skip_reason("python Train.py") is None
    assert _skip_reason("torchrun --nproc_per_node=8 Train.py ...")
