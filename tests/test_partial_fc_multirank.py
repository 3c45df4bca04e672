"""Partial-FC on 2 gloo ranks (each owning half the class centres and half the batch) against the same head in one
process: loss, embedding gradients and centre gradients, for the heads whose logits depend on batch-level or
target-cosine terms (CurricularFace, AdaFace, MagFace) and for a test head whose non-target logits depend
differentiably on the target cosine - the case where the all-reduced target stand-in must carry its gradient."""
from __future__ import annotations

import os

import pytest
import torch
import torch.multiprocessing as mp
import torch.nn.functional as F

from _train_fixtures import free_port

from Heads import get_head
from Heads.base import MarginHead, target_mask
from Heads.partial_fc import PartialFC, class_shard

pytestmark = pytest.mark.slow  # two spawned interpreters importing torch: ~20-30 s on 2 busy cores

D, C, N, WORLD = 16, 10, 12, 2  # N rows in all, N / WORLD per rank


class TargetCoupled(MarginHead):
    """Non-target logits s cos (1 + target cos / 2): a gradient from every column into the target cosine, so a
    stand-in without gradient on the ranks that do not own the class gives wrong embedding gradients."""

    def margin(self, cos, labels, norms):
        target = cos.gather(1, labels[:, None])
        return self.scale * torch.where(target_mask(cos, labels), cos - 0.2, cos * (1 + 0.5 * target))


def _head(name: str, classes: int) -> MarginHead:
    return TargetCoupled(D, classes, scale=16.0) if name == "TargetCoupled" else get_head(name, D, classes)


HEADS = ["TargetCoupled", "CurricularFace", "AdaFace", "MagFace", "ArcFace"]


def _data():
    g = torch.Generator().manual_seed(0)
    emb = torch.randn(N, D, generator=g) * torch.linspace(5, 60, N)[:, None] / 4  # varied norms (AdaFace, MagFace)
    labels = torch.arange(N) % C  # both ranks own targets of both shards' rows
    labels = labels[torch.randperm(N, generator=g)]
    weights = {name: torch.randn(C, D, generator=g) for name in HEADS}  # not the global RNG: same in every process
    return emb, labels, weights


def _single(name, emb, labels, weight):
    head = _head(name, C).train()
    with torch.no_grad():
        head.weight.copy_(weight)
    x = emb.clone().requires_grad_(True)
    out = head(x, labels)
    loss = F.cross_entropy(out.logits, labels) + (out.regulariser if out.regulariser is not None else 0)
    loss.backward()
    return float(loss), x.grad, head.weight.grad


def _worker(rank: int, port: int, tmp: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    import torch.distributed as dist

    dist.init_process_group("gloo", rank=rank, world_size=WORLD)
    try:
        emb, labels, weights = _data()
        start, end = class_shard(C, rank, WORLD)
        rows = slice(rank * N // WORLD, (rank + 1) * N // WORLD)
        out = {}
        for name in HEADS:
            pfc = PartialFC(_head(name, end - start), C, 1.0, rank, WORLD).train()
            with torch.no_grad():
                pfc.head.weight.copy_(weights[name][start:end])
            x = emb[rows].clone().requires_grad_(True)
            loss, _ = pfc(x, labels[rows])
            loss.backward()
            # the all-gather's backward multiplies by world size for DDP's averaging of backbone gradients
            out[name] = (float(loss), x.grad / WORLD, pfc.head.weight.grad.clone())
        torch.save(out, os.path.join(tmp, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def ranks(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("pfc")
    mp.spawn(_worker, args=(free_port(), str(tmp)), nprocs=WORLD, join=True)
    return [torch.load(tmp / f"rank{r}.pt") for r in range(WORLD)]


@pytest.mark.parametrize("name", HEADS)
def test_two_ranks_equal_one_process(ranks, name):
    emb, labels, weights = _data()
    loss, emb_grad, weight_grad = _single(name, emb, labels, weights[name])
    for rank, got in enumerate(ranks):
        r_loss, r_emb_grad, r_weight_grad = got[name]
        rows = slice(rank * N // WORLD, (rank + 1) * N // WORLD)
        start, end = class_shard(C, rank, WORLD)
        # MagFace's regulariser is each rank's local mean (DDP averages it): the loss value differs, gradients not
        if name != "MagFace":
            assert abs(r_loss - loss) < 1e-5, (name, rank, r_loss, loss)
        torch.testing.assert_close(r_emb_grad, emb_grad[rows], atol=1e-6, rtol=1e-4, msg=f"{name} rank {rank}")
        torch.testing.assert_close(r_weight_grad, weight_grad[start:end], atol=1e-6, rtol=1e-4,
                                   msg=f"{name} rank {rank}")
