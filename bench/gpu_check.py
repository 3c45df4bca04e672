"""Every GPU path of the project exercised once on a real GPU, in one table (PASS / FAIL / SKIP, images/s, peak GPU
memory). Meant for the first minutes on a GPU machine: `python bench/gpu_check.py` (under 8 minutes on one GPU).

Checks (each builds the real components and runs the real training step, extraction or search):
    fp16_step        float16 autocast + GradScaler steps: finite loss, the scale stays positive
    bf16_step        bfloat16 autocast steps
    channels_last    bf16 + NHWC steps
    compile          torch.compile'd backbone, bf16 + NHWC (first step = compile time, in the note)
    ddp              under torchrun: 1 process (the single-process path), and 2 (DDP over nccl; gloo on CPU) where
                     2 GPUs exist or on CPU: the ranks end with bitwise-equal backbones
    data_parallel    DataParallel over 2 GPUs (skipped with fewer)
    partial_fc       Partial-FC head steps (one process, sample rate 0.5)
    extraction       evaluation embeddings (image + flip) of random images
    megaface_search  the exact distractor search on the device, checked against a float64 brute force
    resume           a run saved on the GPU resumed on the CPU and back: weights equal after each move, steps finite
    r50_bf16         ResNet50_IR bf16 + NHWC training throughput at batch 128 against arcface_torch's published
                     ~690 samples/s per V100 (fp16; insightface's recognition/arcface_torch README)

Without CUDA only the CPU-safe subset runs, small (`--quick` is implied), so that CI keeps the script from rotting:
    python bench/gpu_check.py --device=cpu
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from Config import Config, apply_overrides, validate  # noqa: E402
from bench.bench_train import RandomFaces, time_steps  # noqa: E402
from bench.common import command_line, device_sync, machine_line, print_table  # noqa: E402

__all__ = ["CHECKS", "CPU_SAFE", "run_checks", "main"]

ARCFACE_TORCH_V100_FP16 = 690.0  # samples/s per V100, ResNet50, fp16 (arcface_torch's published table)


class Skip(Exception):
    """A check that cannot run here (e.g. needs 2 GPUs); the table says why."""


def _cfg(device: str, quick: bool, **overrides) -> Config:
    base = dict(backbone="MobileFaceNet", batch_size=16 if quick else 128, num_workers=0, device=device,
                use_amp=False, channels_last=False, compile=False, val_sets=[], write_nothing=True,
                input_size=[32, 32] if quick else [112, 112], warmup_epochs=0.0, eval_at_start=False, lr=0.01)
    base.update(overrides)
    return validate(apply_overrides(Config(), base, source="gpu_check"))


def _steps(cfg: Config, classes: int, steps: int, warmup: int = 2, comp=None) -> tuple[float, str, object]:
    """(images/s over `steps` real training steps after `warmup`, a note, the components) on pre-made device
    batches; raises if a step is not finite."""
    from Utils.training import build_components
    from Utils.training.loop import train_step

    comp = comp or build_components(cfg, dataset=RandomFaces(cfg.batch_size * (steps + warmup + 2), classes,
                                                              cfg.input_hw))
    g = torch.Generator().manual_seed(0)
    batches = [(torch.randn(comp.per_rank_batch, 3, *cfg.input_hw, generator=g).to(comp.ctx.device),
                torch.randint(0, classes, (comp.per_rank_batch,), generator=g)) for _ in range(2)]
    bad = []

    def step(b):
        result = train_step(comp, [b])
        if not result.finite:
            bad.append(result.loss)
    ips, first = time_steps(step, batches, comp.ctx.device, steps, warmup, comp.per_rank_batch)
    if bad:
        raise AssertionError(f"{len(bad)} non-finite steps (loss {bad[0]})")
    return ips, f"first step {first:.1f} s", comp


def check_fp16_step(device, quick):
    if torch.device(device).type != "cuda":
        raise Skip("float16 autocast needs CUDA")
    ips, note, comp = _steps(_cfg(device, quick, use_amp=True, amp_dtype="float16"), 1000, 5 if quick else 20)
    assert comp.scaler.is_enabled() and comp.scaler.get_scale() > 0
    return ips, f"scale {comp.scaler.get_scale():g}"


def check_bf16_step(device, quick):
    return _steps(_cfg(device, quick, use_amp=True, amp_dtype="bfloat16"), 1000, 3 if quick else 20)[:2]


def check_channels_last(device, quick):
    return _steps(_cfg(device, quick, use_amp=True, amp_dtype="bfloat16", channels_last=True), 1000,
                  3 if quick else 20)[:2]


def check_compile(device, quick):
    return _steps(_cfg(device, quick, use_amp=True, amp_dtype="bfloat16", channels_last=True, compile=True), 1000,
                  3 if quick else 20)[:2]


def check_partial_fc(device, quick):
    return _steps(_cfg(device, quick, partial_fc=True, partial_fc_sample_rate=0.5), 1000, 3 if quick else 20)[:2]


def check_data_parallel(device, quick):
    if torch.device(device).type != "cuda" or torch.cuda.device_count() < 2:
        raise Skip("needs 2 GPUs")
    cfg = _cfg("cuda", quick, use_multi_gpus=True, gpus=[0, 1], use_amp=True, amp_dtype="bfloat16",
               channels_last=True)
    return _steps(cfg, 1000, 5 if quick else 20)[:2]


def check_extraction(device, quick):
    from Backbones import get_backbone
    from Utils.evaluation.features import extract_embeddings

    n, hw = (64, (32, 32)) if quick else (2048, (112, 112))
    images = torch.utils.data.TensorDataset(torch.randn(n, 3, *hw))
    net = get_backbone("MobileFaceNet", input_size=hw).to(device)
    amp = "bf16" if torch.device(device).type == "cuda" else None
    t0 = time.perf_counter()
    emb, emb_flip = extract_embeddings(net, images, batch_size=32 if quick else 256, device=device, amp_dtype=amp,
                                       progress=False)
    seconds = time.perf_counter() - t0
    assert emb.shape == emb_flip.shape == (n, net.embedding_size) and np.isfinite(emb).all()
    return 2 * n / seconds, f"{n} images + flips"


def check_megaface_search(device, quick):
    from Utils.evaluation.megaface_search import search_distractors

    rng = np.random.default_rng(0)
    n, m, d = (20, 500, 64) if quick else (200, 200_000, 512)
    probes = rng.standard_normal((n, d)).astype(np.float32)
    gallery = rng.standard_normal((m, d)).astype(np.float32)
    probes /= np.linalg.norm(probes, axis=1, keepdims=True)
    gallery /= np.linalg.norm(gallery, axis=1, keepdims=True)
    t0 = time.perf_counter()
    res = search_distractors(probes, gallery, k=10, device=device, progress=False, chunk_size=256 if quick else 65536)
    seconds = time.perf_counter() - t0
    exact = probes.astype(np.float64) @ gallery.astype(np.float64).T  # float64 brute force (its own summation order)
    ref_index = np.argsort(-exact, axis=1)[:, :10]
    assert np.array_equal(res.topk_index, ref_index), "top-10 distractors differ from the float64 brute force"
    assert np.allclose(res.topk_scores, np.take_along_axis(exact, ref_index, 1), rtol=0, atol=1e-12)
    return n * m / seconds, f"{n} x {m:,} scores/s (precision {res.precision}), exact top-10"


def check_resume(device, quick):
    from Utils.training.state import TrainState, make_checkpoint, restore_checkpoint

    other = "cpu" if torch.device(device).type == "cuda" else device  # on CPU: the round trip cpu -> cpu
    kw = dict(use_amp=False, batch_size=16)
    ckpt = None
    ips = 0.0
    for where in (device, other, device):
        from Utils.training import build_components

        cfg = _cfg(where, True, **kw)
        comp = build_components(cfg, dataset=RandomFaces(16 * 8, 100, cfg.input_hw))
        if ckpt is not None:
            restore_checkpoint(comp, ckpt)
            saved = ckpt["backbone"]
            for k, v in comp.backbone.state_dict().items():
                assert torch.equal(v.cpu(), saved[k].cpu()), f"{k} changed moving to {where}"
        ips, _, comp = _steps(cfg, 100, 2, warmup=1, comp=comp)
        with tempfile.TemporaryDirectory() as tmp:  # through a file, as a real resume
            torch.save(make_checkpoint(comp, TrainState()), Path(tmp) / "last.pt")
            ckpt = torch.load(Path(tmp) / "last.pt", map_location="cpu", weights_only=False)
    return ips, f"{device} -> {other} -> {device}"


def check_r50_bf16(device, quick):
    if torch.device(device).type != "cuda":
        raise Skip("GPU throughput figure")
    cfg = _cfg(device, False, backbone="ResNet50_IR", batch_size=128, use_amp=True, amp_dtype="bfloat16",
               channels_last=True, compile=True)
    ips, note, _ = _steps(cfg, 10_000, 30, warmup=3)
    return ips, f"{ips / ARCFACE_TORCH_V100_FP16:.2f}x arcface_torch's {ARCFACE_TORCH_V100_FP16:.0f}/s per V100 " \
                f"(fp16); {note}"


def check_ddp(device, quick):
    dev = torch.device(device)
    # torchrun with 1 process runs the single-process path (DDP wraps from 2 ranks); 2 processes need 2 GPUs, or
    # gloo on CPU, where CI thereby keeps the DDP path running
    counts = [1, 2] if dev.type == "cpu" or torch.cuda.device_count() >= 2 else [1]
    results = []
    for n in counts:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={n}",
               str(Path(__file__).resolve()), "--ddp_worker", f"--device={dev.type}"] + (["--quick"] if quick else [])
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=300,
                             env={**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")})
        line = next((l for l in out.stdout.splitlines() if l.startswith("DDP_RESULT ")), None)
        if out.returncode or line is None:
            raise AssertionError(f"torchrun x{n} exited {out.returncode}: {(out.stderr or out.stdout)[-300:]}")
        results.append(json.loads(line[len("DDP_RESULT "):]))
    assert all(r["equal"] for r in results), "ranks' backbones differ"
    return results[-1]["ips"], ", ".join(f"{r['world']} proc {r['backend']} {r['ips']:.0f} img/s" for r in results) \
        + (" (2 processes need 2 GPUs)" if len(counts) == 1 else "")


def _ddp_worker(device: str, quick: bool) -> None:
    """One torchrun rank: a few DDP steps, then whether every rank holds the same backbone (printed by rank 0)."""
    import torch.distributed as dist

    from Utils.training.distributed import cleanup_distributed

    cfg = _cfg(device, quick, use_amp=device == "cuda", amp_dtype="bfloat16", channels_last=device == "cuda")
    try:
        ips, _, comp = _steps(cfg, 1000, 3 if quick else 10)
        flat = torch.cat([p.detach().float().reshape(-1) for p in comp.backbone.parameters()])
        gathered = [torch.empty_like(flat) for _ in range(dist.get_world_size())] if dist.is_initialized() else [flat]
        if dist.is_initialized():
            dist.all_gather(gathered, flat)
        equal = all(torch.equal(g, gathered[0]) for g in gathered)
        if comp.ctx.is_main:
            backend = dist.get_backend() if dist.is_initialized() else "single-process"
            print("DDP_RESULT " + json.dumps(dict(world=comp.ctx.world_size, backend=backend, equal=equal,
                                                  ips=ips * comp.ctx.world_size)), flush=True)
    finally:
        cleanup_distributed()


CHECKS: dict[str, Callable] = {
    "fp16_step": check_fp16_step, "bf16_step": check_bf16_step, "channels_last": check_channels_last,
    "compile": check_compile, "ddp": check_ddp, "data_parallel": check_data_parallel,
    "partial_fc": check_partial_fc, "extraction": check_extraction, "megaface_search": check_megaface_search,
    "resume": check_resume, "r50_bf16": check_r50_bf16,
}
# what runs without a GPU, small: compile is left out (minutes of C++ builds on a CPU), the rest skip themselves
CPU_SAFE = ["bf16_step", "channels_last", "partial_fc", "extraction", "megaface_search", "resume", "ddp"]


def run_checks(names: list[str], device: str, quick: bool) -> list[list[str]]:
    """One table row per check: name, PASS / FAIL / SKIP, images/s, peak GPU MiB, note."""
    rows = []
    cuda = torch.device(device).type == "cuda"
    for name in names:
        if cuda:
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(device)
        t0 = time.perf_counter()
        try:
            ips, note = CHECKS[name](device, quick)
            device_sync(device)
            status, rate = "PASS", f"{ips:.1f}"
        except Skip as why:
            status, rate, note = "SKIP", "-", str(why)
        except Exception as exc:  # a failing check is a table row, not the end of the run
            first_line = str(exc).splitlines()[0][:160] if str(exc) else ""
            status, rate, note = "FAIL", "-", f"{type(exc).__name__}: {first_line}"
        peak = f"{torch.cuda.max_memory_allocated(device) / 2 ** 20:.0f}" if cuda and status != "SKIP" else "-"
        rows.append([name, status, rate, peak, f"{note} [{time.perf_counter() - t0:.0f} s]"])
        print(f"  {name}: {status} {note}", file=sys.stderr, flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="auto", help="auto (cuda if available), cuda, cuda:N or cpu")
    p.add_argument("--checks", default="", help=f"comma-separated subset of: {', '.join(CHECKS)} (default: all on a "
                                                f"GPU, the CPU-safe ones on CPU)")
    p.add_argument("--quick", action="store_true", help="small sizes (implied on CPU)")
    p.add_argument("--ddp_worker", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    if device.startswith("cuda") and not torch.cuda.is_available():
        print(f"error: --device: '{device}' requested but CUDA is not available (use --device=cpu)", file=sys.stderr)
        return 2
    quick = args.quick or device == "cpu"
    if args.ddp_worker:
        _ddp_worker(device, quick)
        return 0
    names = args.checks.split(",") if args.checks else (list(CHECKS) if device != "cpu" else CPU_SAFE)
    unknown = [n for n in names if n not in CHECKS]
    if unknown:
        print(f"error: --checks: unknown check '{unknown[0]}' (choose from {', '.join(CHECKS)})", file=sys.stderr)
        return 2
    print(f"# {command_line()}")
    print(f"# {machine_line()}")
    if device.startswith("cuda"):
        print(f"# GPU: {torch.cuda.get_device_name(device)}, {torch.cuda.device_count()} visible, "
              f"CUDA {torch.version.cuda}")
    rows = run_checks(names, device, quick)
    print_table(["check", "result", "images/s", "peak GPU MiB", "note"], rows)
    return 1 if any(r[1] == "FAIL" for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
