"""Partial-FC (An et al., "Partial FC: Training 10 Million Identities on a Single Machine", ICCVW 2021,
https://arxiv.org/abs/2010.05222), after insightface's partial_fc_v2.

The class-centre matrix is split by class over the ranks; each rank keeps only its shard. Every step the ranks
all-gather the embeddings and labels of the global batch; each rank scores them against a sample of its centres
(every positive class present in the batch, plus random negatives up to `sample_rate` of the shard), applies the
head's own `margin()` to that sampled cosine matrix, and the softmax cross-entropy is computed across the shards
(max, sum of exponentials and target logit all-reduced), so no rank ever holds the full (N, C) logits. Memory per
GPU falls as 1 / world_size * sample_rate.
"""
from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn as nn

from .base import MarginHead

__all__ = ["PartialFC", "class_shard", "gather_with_grad", "DistCrossEntropy"]


def class_shard(num_classes: int, rank: int, world_size: int) -> tuple[int, int]:
    """[start, end) of the classes rank `rank` owns; the first C % world_size ranks own one more."""
    base, extra = divmod(num_classes, world_size)
    start = rank * base + min(rank, extra)
    return start, start + base + (1 if rank < extra else 0)


class _AllGather(torch.autograd.Function):
    """all_gather whose backward sums every rank's gradient of this rank's slice.

    The result is multiplied by world_size because DDP then averages the backbone gradients over ranks, while the
    loss below is already the mean over the global batch (insightface does the same).
    """

    @staticmethod
    def forward(ctx, tensor: torch.Tensor) -> torch.Tensor:
        world = dist.get_world_size()
        parts = [torch.empty_like(tensor) for _ in range(world)]
        dist.all_gather(parts, tensor.contiguous())
        return torch.cat(parts, 0)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        world, rank = dist.get_world_size(), dist.get_rank()
        grad = grad.contiguous()
        dist.all_reduce(grad)
        return grad.chunk(world, 0)[rank] * world


class _AllReduceSum(torch.autograd.Function):
    """all_reduce (sum) whose backward is the all-reduced gradient: every rank's use of the sum sends its gradient
    back to the rank whose value made it (here: the target cosine, from the rank owning the class)."""

    @staticmethod
    def forward(ctx, tensor: torch.Tensor) -> torch.Tensor:
        out = tensor.detach().clone()
        dist.all_reduce(out)
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous().clone()
        dist.all_reduce(grad)
        return grad


def gather_with_grad(tensor: torch.Tensor) -> torch.Tensor:
    """Concatenate `tensor` (equal shapes on all ranks) over ranks, rank order; identity in a single process."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return tensor
    return _AllGather.apply(tensor)


def _gather_plain(tensor: torch.Tensor) -> torch.Tensor:
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return tensor
    parts = [torch.empty_like(tensor) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, tensor.contiguous())
    return torch.cat(parts, 0)


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


class DistCrossEntropy(torch.autograd.Function):
    """Mean softmax cross-entropy over logits split by class across ranks.

    `local_target` is the column of each row's class in this rank's logits, -1 where another rank owns it. The
    backward pass needs no communication: softmax(z) - onehot, with the global max and normaliser from forward.
    """

    @staticmethod
    def forward(ctx, logits: torch.Tensor, local_target: torch.Tensor) -> torch.Tensor:
        distributed = _distributed()
        row_max = logits.max(dim=1, keepdim=True).values
        if distributed:
            dist.all_reduce(row_max, dist.ReduceOp.MAX)
        exp = torch.exp(logits - row_max)
        denom = exp.sum(dim=1, keepdim=True)
        if distributed:
            dist.all_reduce(denom)
        prob = exp / denom
        owned = local_target >= 0
        idx = local_target.clamp_min(0)[:, None]
        # in log space: a target probability below float32's range (s = 64, early training) must not clamp
        target_logit = torch.where(owned, (logits - row_max).gather(1, idx).squeeze(1),
                                   torch.zeros_like(denom[:, 0]))
        if distributed:
            dist.all_reduce(target_logit)
        ctx.save_for_backward(prob, local_target)
        return (torch.log(denom[:, 0]) - target_logit).mean()

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        prob, local_target = ctx.saved_tensors
        g = prob.clone()
        owned = (local_target >= 0).nonzero().squeeze(1)
        g[owned, local_target[owned]] -= 1.0
        return g * (grad / prob.shape[0]), None


class PartialFC(nn.Module):
    """This rank's shard of a margin head, with negative-class sampling.

    Args:
        head: a MarginHead built for this rank's `end - start` classes; its `.weight` is the shard and its
            `margin()` turns the sampled cosines into logits.
        num_classes: C over all ranks.
        sample_rate: fraction of the shard's classes scored per step (positives always included).
        rank, world_size: this process's place (1 process: the shard is the whole matrix).
    """

    def __init__(self, head: MarginHead, num_classes: int, sample_rate: float = 1.0, rank: int = 0,
                 world_size: int = 1):
        super().__init__()
        if not isinstance(head, MarginHead):
            raise ValueError(f"partial_fc: needs a normalised margin head (ArcFace, CosFace, ...), "
                             f"not {type(head).__name__}")
        self.start, self.end = class_shard(num_classes, rank, world_size)
        if head.num_classes != self.end - self.start:
            raise ValueError(f"partial_fc: head built for {head.num_classes} classes, rank {rank} owns "
                             f"{self.end - self.start}")
        self.head = head
        self.num_classes = num_classes
        self.sample_rate = float(sample_rate)
        self.num_local = self.end - self.start

    @property
    def weight(self) -> nn.Parameter:
        return self.head.weight

    @torch.no_grad()
    def init_centres(self, seed: int, std: float = 0.01, block: int = 4096) -> None:
        """N(0, std) centres drawn per fixed block of classes from (seed, block index): the same class gets the
        same initial centre whatever the number of ranks, so runs on 1 and N processes start alike."""
        k = self.head.centres_per_class
        w = self.head.weight
        for b in range(self.start // block, (self.end - 1) // block + 1):
            lo, hi = b * block, min((b + 1) * block, self.num_classes)
            g = torch.Generator().manual_seed(seed * 1_000_003 + b)
            values = torch.randn((hi - lo) * k, w.shape[1], generator=g) * std
            a, z = max(lo, self.start), min(hi, self.end)
            w[(a - self.start) * k:(z - self.start) * k] = values[(a - lo) * k:(z - lo) * k].to(w)

    def sample(self, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Indices (sorted) of the local classes to score, and each row's column among them (-1: not local)."""
        owned = (labels >= self.start) & (labels < self.end)
        local = torch.where(owned, labels - self.start, torch.full_like(labels, -1))
        num_sample = int(self.sample_rate * self.num_local)
        if num_sample >= self.num_local:
            return torch.arange(self.num_local, device=labels.device), local
        positives = torch.unique(local[owned])
        num_sample = max(num_sample, positives.numel())
        score = torch.rand(self.num_local, device=labels.device)
        score[positives] = 2.0  # above any random score: always kept
        index = torch.topk(score, k=num_sample).indices.sort().values
        remapped = torch.where(owned, torch.searchsorted(index, local.clamp_min(0)), local)
        return index, remapped

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean loss over the global batch, number of rows whose best sampled centre is their own class)."""
        # a norm regulariser (MagFace) on this rank's rows, before the gather: its local mean, averaged over ranks
        # by DDP like any backbone gradient, is the global mean's gradient (on the gathered rows it would count
        # world_size times through the all-gather's backward)
        with torch.autocast(device_type=embeddings.device.type, enabled=False):
            regulariser = self.head.regulariser(embeddings.float().norm(dim=1, keepdim=True))
        embeddings = gather_with_grad(embeddings)
        labels = _gather_plain(labels.long())
        index, target = self.sample(labels)
        k = self.head.centres_per_class
        weight = self.head.weight
        if index.numel() < self.num_local:
            rows = (index[:, None] * k + torch.arange(k, device=index.device)).reshape(-1)
            weight = weight[rows]
        cos = self.head.cosine(embeddings, weight)
        with torch.autocast(device_type=cos.device.type, enabled=False):
            norms = embeddings.float().norm(dim=1, keepdim=True)
            logits = self._apply_margin(cos, target, norms)
            loss = DistCrossEntropy.apply(logits, target)
            if regulariser is not None:
                loss = loss + regulariser
        correct = self._correct(cos.detach(), index, target, labels)
        return loss, correct

    def _apply_margin(self, cos: torch.Tensor, target: torch.Tensor, norms: torch.Tensor) -> torch.Tensor:
        """head.margin() on the sampled cosines; rows whose class lives on another rank get a stand-in column.

        margin() needs a target per row; an extra last column holding that row's true target cosine (all-reduced
        from the owning rank) serves, so statistics such as CurricularFace's t or AdaFace's norm EMA see the same
        values on every rank, and carries its gradient back to the owner. The column is dropped afterwards: the target
        logit counts once, on its owner.
        """
        owned = target >= 0
        own_cos = torch.where(owned, cos.gather(1, target.clamp_min(0)[:, None]).squeeze(1),
                              torch.zeros_like(cos[:, 0]))
        if _distributed():
            # with its gradient: a head whose other logits depend on the target cosine differentiably gets, on the
            # owning rank, the gradient every rank's logits send through the stand-in (as in one process)
            own_cos = _AllReduceSum.apply(own_cos)
        padded = torch.cat([cos, own_cos[:, None]], dim=1)
        stand_in = torch.where(owned, target, torch.full_like(target, cos.shape[1]))
        logits = self.head.margin(padded, stand_in, norms)
        return logits[:, :-1]

    def _correct(self, cos: torch.Tensor, index: torch.Tensor, target: torch.Tensor,
                 labels: torch.Tensor) -> torch.Tensor:
        """Rows whose highest sampled cosine over all shards belongs to their class."""
        best, col = cos.max(dim=1)
        best_class = index[col] + self.start
        if _distributed():
            all_best = _gather_plain(best[None]).view(dist.get_world_size(), -1)
            all_class = _gather_plain(best_class[None]).view(dist.get_world_size(), -1)
            winner = all_best.argmax(dim=0)
            best_class = all_class.gather(0, winner[None]).squeeze(0)
        return (best_class == labels).sum()
