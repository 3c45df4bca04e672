"""Resume on another number of ranks (clusters change GPU counts between jobs; insightface refuses to).

Two things depend on the world size. The sampler position does not need saving: it is the epoch's optimizer steps
times the global batch, so a run with W' ranks continues at the same global sample, each rank taking every W'-th of
the rest (Utils/training/sampler.py). The Partial-FC class centres do: rank i saved the rows of its class range
(last.pt for rank 0, last.rank<i>.pt for the others, each with its `head_range`), and here each new rank cuts its
own range out of the saved shards, together with the optimizer state of those rows (momentum, Adam moments). Every
other tensor (backbone, its optimizer state, head buffers) is the same on all ranks and comes from last.pt.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from Heads.partial_fc import class_shard

from ..checkpoint import read_torch_file

__all__ = ["reshard_partial_fc", "shard_range"]


def shard_range(saved: dict[str, Any], rank: int, num_classes: int, world_size: int) -> tuple[int, int]:
    """[start, end) of the classes a saved shard holds (checkpoints before `head_range` follow class_shard)."""
    rng = saved.get("head_range")
    return (int(rng[0]), int(rng[1])) if rng is not None else class_shard(num_classes, rank, world_size)


def _load_shards(ckpt: dict[str, Any], run_dir: Path, saved_world: int, trust: bool) -> list[dict[str, Any]]:
    shards = [ckpt]
    for i in range(1, saved_world):
        path = Path(run_dir) / f"last.rank{i}.pt"
        if not path.is_file():
            raise ValueError(f"resume: {path} is missing (rank {i}'s Partial-FC class centres of the {saved_world}-"
                             f"process run); it is needed to re-shard them")
        # mmap: a rank reads only the rows it keeps, not every shard of a million-class head
        side = read_torch_file(path, trust, mmap=True)
        if side.get("iteration", ckpt.get("iteration")) != ckpt.get("iteration"):
            raise ValueError(f"resume: {path} is from iteration {side.get('iteration')}, last.pt from "
                             f"{ckpt.get('iteration')} (a stale shard)")
        shards.append(side)
    return shards


def _param_index(optimizer: torch.optim.Optimizer, param: torch.nn.Parameter) -> int | None:
    """Position of `param` in the optimizer's state_dict numbering (groups in order, params in order)."""
    i = 0
    for group in optimizer.param_groups:
        for p in group["params"]:
            if p is param:
                return i
            i += 1
    return None


def _cut(pieces: list[tuple[torch.Tensor, int, int]], k: int) -> torch.Tensor:
    return torch.cat([t[a * k:z * k].clone() for t, a, z in pieces])


def reshard_partial_fc(comp, ckpt: dict[str, Any], run_dir: Path, trust: bool = False) -> dict[str, Any]:
    """This rank's {"head", "optimizer"} cut from the shards a run on `ckpt["world_size"]` ranks saved."""
    saved_world = int(ckpt.get("world_size", 1))
    num_classes = comp.num_classes
    pfc = comp.head
    start, end = pfc.start, pfc.end
    k = int(getattr(pfc.head, "centres_per_class", 1))
    shards = _load_shards(ckpt, run_dir, saved_world, trust)
    ranges = [shard_range(s, i, num_classes, saved_world) for i, s in enumerate(shards)]
    if ranges[0][0] != 0 or ranges[-1][1] != num_classes or any(a[1] != b[0] for a, b in zip(ranges, ranges[1:])):
        raise ValueError(f"resume: the saved Partial-FC shards cover classes {ranges}, not 0..{num_classes}")

    def rows(state_of) -> dict[str, list]:
        """name -> [(tensor, first row, end row)] of the saved tensors that are sharded by class."""
        out: dict[str, list] = {}
        for (s, e), shard in zip(ranges, shards):
            a, z = max(s, start), min(e, end)
            for name, t in state_of(shard).items():
                if torch.is_tensor(t) and t.dim() >= 1 and t.shape[0] == (e - s) * k:
                    out.setdefault(name, [])
                    if a < z:
                        out[name].append((t, a - s, z - s))
        return out

    head = dict(ckpt["head"])
    for name, pieces in rows(lambda s: s["head"]).items():
        head[name] = _cut(pieces, k)

    opt = {"state": dict(ckpt["optimizer"]["state"]), "param_groups": ckpt["optimizer"]["param_groups"]}
    for pname, param in pfc.head.named_parameters():
        idx = _param_index(comp.optimizer, param)
        if idx is None or idx not in opt["state"]:
            continue
        per_param = dict(opt["state"][idx])
        for name, pieces in rows(lambda s: s["optimizer"]["state"].get(idx, {})).items():
            per_param[name] = _cut(pieces, k)
        opt["state"][idx] = per_param
    return {"head": head, "optimizer": opt, "rng": ckpt["rng"]}
