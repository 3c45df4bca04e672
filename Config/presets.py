"""Named presets: the published recipes of the original project (Pytorch_Face_Recognition), as overrides of the
defaults.

`python Train.py --preset=casia --train_root=/data/faces_webface_112x112` applies a preset, then any other overrides.
"""
from __future__ import annotations

__all__ = ["PRESETS"]

PRESETS: dict[str, dict] = {
    # CASIA-WebFace (10,575 identities, ~494k images): batch 256, lr 0.05, 36 epochs, decay at 22 and 31, s = 32.
    "casia": dict(
        train_format="rec", batch_size=256, lr=0.05, epochs=36, milestones=[22, 31], lr_schedule="multistep",
        scale=32.0, warmup_epochs=0.0, weight_decay=5e-4,
    ),
    # MS-Celeb-1M (MS1M-ArcFace, ~85k identities, 5.8M images): batch 256, lr 0.05, 25 epochs, decay at 13 and 21,
    # s = 32.
    "ms1m": dict(
        train_format="rec", batch_size=256, lr=0.05, epochs=25, milestones=[13, 21], lr_schedule="multistep",
        scale=32.0, warmup_epochs=0.0, weight_decay=5e-4,
    ),
}
