"""Resume on another number of ranks: 2 gloo processes -> 1 and 1 -> 2, stopped mid-epoch, must end with the weights
of an uninterrupted single-process run with the same global batch (the sampler position re-split, the Partial-FC
class centres and their momentum re-sharded). The reference is the uninterrupted run; the equality of 2 ranks and
1 process on their own is tests/test_train_ddp.py's.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from _train_fixtures import PatternFaces, free_port, tiny_config

import Train

pytestmark = pytest.mark.slow  # spawned gloo pairs: ~1 min on 2 busy cores

# 72 images, global batch 16: 4 steps per epoch on 1 and on 2 ranks; stop after 3 (mid-epoch), run 2 epochs
COMMON = dict(backbone="TinyTestNet", epochs=2, batch_size=16, sync_bn=True, partial_fc=True, momentum=0.9,
              weight_decay=5e-4, log_every=4)
STOP = 3


def _weights(result) -> dict:
    comp = result.components
    return {"backbone": {k: v.clone() for k, v in comp.backbone.state_dict().items()},
            "head": comp.head.head.weight.detach().clone(), "iteration": result.state.iteration}


def _worker(rank: int, world: int, port: int, tmp: str, overrides: dict, tag: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    from Utils.training.distributed import cleanup_distributed

    try:
        res = Train.train(tiny_config(Path(tmp), **overrides), dataset=PatternFaces(classes=9))
        torch.save(_weights(res), Path(tmp) / f"{tag}.rank{rank}.pt")
    finally:
        cleanup_distributed()


def _two_ranks(tmp_path, overrides, tag):
    mp.spawn(_worker, args=(2, free_port(), str(tmp_path), overrides, tag), nprocs=2, join=True)
    return [torch.load(tmp_path / f"{tag}.rank{r}.pt") for r in range(2)]


def _single(tmp_path, **overrides):
    return _weights(Train.train(tiny_config(tmp_path, **COMMON, **overrides), dataset=PatternFaces(classes=9)))


def _assert_same(got_backbone, got_head, ref):
    for k, v in ref["backbone"].items():
        assert torch.allclose(got_backbone[k].float(), v.float(), atol=2e-5, rtol=1e-4), k
    assert torch.allclose(got_head, ref["head"], atol=2e-5, rtol=1e-4)


def test_two_ranks_then_one_and_one_then_two_match_the_uninterrupted_run(tmp_path):
    full = _single(tmp_path, run_name="full")

    # 2 -> 1: the single process gathers both shards (9 classes: 5 on rank 0, 4 on rank 1)
    _two_ranks(tmp_path, dict(COMMON, run_name="a", max_iterations=STOP), "a_first")
    run_a = tmp_path / "runs" / "a"
    assert torch.load(run_a / "last.pt", weights_only=False)["world_size"] == 2
    resumed = _single(tmp_path, resume=str(run_a / "last.pt"))
    assert resumed["iteration"] == full["iteration"] == 8
    _assert_same(resumed["backbone"], resumed["head"], full)
    log = (run_a / "train.log").read_text()
    assert "resumed on 1 processes from a run on 2" in log and "re-sharded" in log

    # 1 -> 2: each rank cuts its range out of the one saved head
    _single(tmp_path, run_name="b", max_iterations=STOP)
    ranks = _two_ranks(tmp_path, dict(COMMON, resume=str(tmp_path / "runs" / "b" / "last.pt")), "b_second")
    assert [r["head"].shape[0] for r in ranks] == [5, 4]
    for r in ranks:
        assert r["iteration"] == 8
        _assert_same(r["backbone"], torch.cat([ranks[0]["head"], ranks[1]["head"]]), full)
