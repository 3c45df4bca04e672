"""DistributedDataParallel on CPU (gloo, 2 processes) against one process with the same global batch.

With BatchNorm, per-rank batches give per-rank statistics, so equality needs the statistics of the global batch:
`sync_bn=true` (torch's SyncBatchNorm on GPU; on CPU, where SyncBatchNorm refuses to run, an all-reduce
BatchNorm). Partial-FC on 2 ranks, each holding half the class centres, must match the same head in one process.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from _train_fixtures import PatternFaces, free_port, tiny_config

import Train

pytestmark = pytest.mark.slow  # two spawned interpreters importing torch: ~30 s on 2 busy cores


def _weights(result) -> dict:
    comp = result.components
    head = comp.head.head if comp.partial_fc else comp.head
    return {"backbone": {k: v.clone() for k, v in comp.backbone.state_dict().items()},
            "head": head.weight.detach().clone(), "loss": result.state.last_loss}


def _worker(rank: int, world: int, port: int, tmp: str, overrides: dict) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    from Utils.training.distributed import cleanup_distributed

    try:
        res = Train.train(tiny_config(Path(tmp), run_name="ddp", **overrides), dataset=PatternFaces(classes=9))
        torch.save(_weights(res), Path(tmp) / f"rank{rank}.pt")
    finally:
        cleanup_distributed()


def _run_pair(tmp_path, overrides):
    mp.spawn(_worker, args=(2, free_port(), str(tmp_path), overrides), nprocs=2, join=True)
    single = Train.train(tiny_config(tmp_path, run_name="single", **overrides), dataset=PatternFaces(classes=9))
    return [torch.load(tmp_path / f"rank{r}.pt") for r in range(2)], _weights(single)


@pytest.mark.parametrize("partial_fc", [False, True], ids=["ddp", "ddp_partial_fc"])
def test_two_processes_equal_one_process_with_the_same_global_batch(tmp_path, partial_fc):
    overrides = dict(backbone="TinyTestNet", epochs=2, batch_size=16, sync_bn=True, partial_fc=partial_fc,
                     momentum=0.9, weight_decay=5e-4, log_every=4)
    ranks, single = _run_pair(tmp_path, overrides)
    for k, ref in single["backbone"].items():
        for r in ranks:  # every rank holds the same backbone as the single process
            assert torch.allclose(r["backbone"][k].float(), ref.float(), atol=2e-5, rtol=1e-4), k
    if partial_fc:  # rank r holds its half of the class centres (9 classes: 5 + 4)
        got = torch.cat([ranks[0]["head"], ranks[1]["head"]])
    else:
        got = ranks[0]["head"]
        assert torch.allclose(ranks[1]["head"], got)
    assert torch.allclose(got, single["head"], atol=2e-5, rtol=1e-4)
    assert abs(ranks[0]["loss"] - single["loss"]) < 1e-3
    # rank 0 alone wrote the run; rank 1 only its sidecar
    names = sorted(p.name for p in (tmp_path / "runs" / "ddp").iterdir())
    assert "last.pt" in names and "last.rank1.pt" in names and "train.log" in names
