"""bench/gpu_check.py on CPU: its CPU-safe subset runs and passes, GPU-only checks say SKIP, bad input exits 2."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from conftest import REPO

from bench import gpu_check


def _table(out: str) -> dict[str, list[str]]:
    rows = [l.strip("|").split("|") for l in out.splitlines() if l.startswith("| ") and "---" not in l]
    return {r[0].strip(): [c.strip() for c in r[1:]] for r in rows[1:]}


def test_cpu_subset_without_ddp_passes_and_gpu_only_checks_skip(capsys):
    names = [n for n in gpu_check.CPU_SAFE if n != "ddp"] + ["fp16_step", "data_parallel", "r50_bf16"]
    assert gpu_check.main(["--device=cpu", f"--checks={','.join(names)}"]) == 0
    table = _table(capsys.readouterr().out)
    assert list(table) == names
    for name in names:
        status, rate = table[name][0], table[name][1]
        if name in gpu_check.CPU_SAFE:
            assert status == "PASS" and float(rate) > 0, (name, table[name])
        else:
            assert status == "SKIP" and rate == "-", (name, table[name])


def test_a_failing_check_is_a_row_and_the_exit_status(monkeypatch, capsys):
    def broken(device, quick):
        raise AssertionError("weights differ")
    monkeypatch.setitem(gpu_check.CHECKS, "extraction", broken)
    assert gpu_check.main(["--device=cpu", "--checks=extraction"]) == 1
    table = _table(capsys.readouterr().out)
    assert table["extraction"][0] == "FAIL" and "weights differ" in table["extraction"][3]


@pytest.mark.parametrize("argv,word", [(["--device=cpu", "--checks=bf16_step,warp_drive"], "warp_drive"),
                                       (["--device=cuda:3"], "cuda:3")], ids=["unknown_check", "no_cuda"])
def test_bad_input_is_one_line_and_exit_2(capsys, argv, word):
    if word == "cuda:3" and torch.cuda.is_available():
        pytest.skip("CUDA present")
    assert gpu_check.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and word in err[0]


@pytest.mark.slow  # torchrun with 1 and 2 gloo processes: ~1 min on 2 cores
def test_whole_cpu_subset_as_ci_runs_it():
    out = subprocess.run([sys.executable, "bench/gpu_check.py", "--device=cpu"], cwd=REPO, capture_output=True,
                         text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert out.returncode == 0, out.stderr[-2000:]
    table = _table(out.stdout)
    assert list(table) == gpu_check.CPU_SAFE and all(r[0] == "PASS" for r in table.values()), table
    assert "2 proc gloo" in table["ddp"][3]
