"""The GPU input path of the training loader: pinned host memory on CUDA, workers kept across epochs, prefetch."""
from __future__ import annotations

import pytest
import torch

from _train_fixtures import PatternFaces, tiny_config

from Config import ConfigError, apply_overrides, validate
from Utils.training.build import make_loader


@pytest.mark.parametrize("device,workers", [("cuda", 2), ("cpu", 2), ("cuda", 0)])
def test_loader_pins_on_cuda_and_keeps_workers_with_prefetch(tmp_path, device, workers):
    cfg = tiny_config(tmp_path, num_workers=workers, prefetch_factor=3)
    loader = make_loader(PatternFaces(), cfg, torch.device(device), 4, drop_last=True)
    assert loader.pin_memory is (device == "cuda")  # the step's non_blocking copies overlap only from pinned memory
    assert loader.num_workers == workers and loader.drop_last
    if workers:
        assert loader.persistent_workers is True and loader.prefetch_factor == 3
    else:  # DataLoader refuses both without workers
        assert loader.persistent_workers is False and loader.prefetch_factor is None


def test_persistent_workers_can_be_turned_off_and_prefetch_must_be_positive(tmp_path):
    cfg = tiny_config(tmp_path, num_workers=1, persistent_workers=False)
    assert make_loader(PatternFaces(), cfg, torch.device("cpu"), 4).persistent_workers is False
    with pytest.raises(ConfigError, match="prefetch_factor"):
        validate(apply_overrides(cfg, {"prefetch_factor": 0}, source="test"))
