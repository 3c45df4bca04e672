"""Every setting of training and evaluation, in one dataclass.

Edit the defaults here, or override any field without touching this file:

    python Train.py --backbone=ResNet50_IR --head=CosFace --lr=0.05
    python Train.py --config=my_overrides.py          # a .py holding only the differences
    python Train.py --preset=casia --train_root=/data/faces_webface_112x112

Nothing is parsed at import time; `Config/cli.py` turns argv into a validated `Config`.
The defaults run on a fresh machine with no dataset: the embedded synthetic face set is generated on first use.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

__all__ = ["Config"]


@dataclass
class Config:
    # ---------------------------------------------------------------- run
    run_name: str = ""  # run directory name under output_dir; "" -> <backbone>_<head>_<timestamp>
    output_dir: str = "./runs"  # parent folder of all run directories (checkpoints, logs, plots)
    seed: int = 0  # seeds python, numpy and torch RNGs; the sampler order derives from it
    para_adj_mode: bool = False  # the seed's parameter-adjustment mode: train and evaluate, write nothing to disk
    resume: str = ""  # checkpoint file or run directory to continue from ("" = fresh run)
    device: str = "auto"  # "auto" (cuda if available else cpu), "cpu", "cuda", "cuda:1"
    log_every: int = 20  # iterations between log-file lines and visdom points

    # ---------------------------------------------------------------- training data
    train_format: str = "synthetic"  # "synthetic" | "folder" (image folder + list file) | "rec" (train.rec/train.idx)
    train_root: str = ""  # image folder root, or the folder holding train.rec + train.idx
    train_list: str = ""  # folder format: list file of "relative/path label" lines ("" -> <train_root>/train_list.txt)
    data_root: str = "./data"  # where the embedded synthetic set is generated and cached
    synthetic_identities: int = 300  # identities in the synthetic training set
    synthetic_images_per_identity: int = 20  # images per synthetic training identity
    synthetic_val_pairs: int = 3000  # pairs in the synthetic verification set (10 folds, half matched)
    synthetic_difficulty: float = 0.6  # 0 = clean frontal faces .. 1 = strong pose/light/occlusion/blur nuisances
    synthetic_seed: int = 2024  # seed of the synthetic generator (identities and their images)
    synthetic_probe_identities: int = 40  # synthetic MegaFace-style probe identities (10 images each)
    synthetic_distractors: int = 1000  # synthetic MegaFace-style distractors (one image, one identity each)
    color_order: str = "RGB"  # channel order the network sees: "RGB" (our models) or "BGR" (models trained on BGR)
    input_size: list[int] = field(default_factory=lambda: [112, 112])  # network input [height, width]; [112, 96] too
    num_workers: int = 2  # DataLoader worker processes
    bad_image_policy: str = "skip"  # a corrupt training image: "skip" (warn, count, use another) or "error"
    random_flip: bool = True  # horizontal-flip augmentation during training

    # ---------------------------------------------------------------- model
    backbone: str = "MobileFaceNet"  # a name from Backbones (see `python -m Backbones --list`)
    embedding_size: int = 0  # embedding dimension; 0 -> the backbone's default (MobileFaceNet 128, *_IR 512)
    dropout: float = 0.0  # dropout before the embedding FC of the IR networks (insightface uses 0.0 / 0.4)

    # ---------------------------------------------------------------- head (margin)
    head: str = "ArcFace"  # a name from Heads: Softmax ArcFace CosFace SphereFace CombinedMargin CurricularFace AdaFace SubCenterArcFace
    scale: float = 32.0  # s, the logit scale of normalised heads (seed recipes: 32; insightface: 64)
    margin: float = 0.5  # m: ArcFace/SubCenter/CurricularFace angular margin, CosFace cosine margin, AdaFace m
    easy_margin: bool = False  # ArcFace: apply the margin only where cos > 0 (instead of the theta + m > pi fallback)
    combined_margins: list[float] = field(default_factory=lambda: [1.0, 0.3, 0.2])  # CombinedMargin m1, m2, m3
    sphereface_m: int = 4  # SphereFace multiplicative margin
    sphereface_lambda: list[float] = field(default_factory=lambda: [1000.0, 5.0, 0.12, 1.0])  # base, min, gamma, power
    subcenters: int = 3  # SubCenterArcFace: centres per class (K)
    adaface_h: float = 0.333  # AdaFace: concentration of the norm-adaptive margin
    adaface_t_alpha: float = 0.01  # AdaFace: EMA rate of the batch norm statistics

    # ---------------------------------------------------------------- optimisation
    epochs: int = 4  # passes over the training set
    batch_size: int = 64  # global batch size (split across GPUs / ranks)
    grad_accum_steps: int = 1  # micro-batches per optimizer step (loss divided accordingly)
    optimizer: str = "sgd"  # "sgd" | "adamw"
    lr: float = 0.1  # peak learning rate (after warmup)
    momentum: float = 0.9  # SGD momentum
    nesterov: bool = False  # SGD Nesterov momentum
    weight_decay: float = 5e-4  # decay of conv/linear weights and class centres; none for BN, PReLU, biases
    lr_schedule: str = "multistep"  # "multistep" | "cosine" | "poly"; stepped every iteration
    milestones: list[int] = field(default_factory=lambda: [3])  # multistep: epochs where lr *= lr_gamma
    lr_gamma: float = 0.1  # multistep decay factor
    warmup_epochs: float = 0.5  # linear warmup from 0 to lr over this many epochs (fractions allowed)
    poly_power: float = 2.0  # poly schedule exponent
    grad_clip: float = 0.0  # max global gradient norm; 0 = no clipping
    max_bad_steps: int = 10  # consecutive non-finite losses that stop the run (after saving)
    max_iterations: int = 0  # stop (saving a resumable checkpoint) after this many iterations in all; 0 = run every epoch

    # ---------------------------------------------------------------- devices and precision
    use_amp: bool = True  # automatic mixed precision (torch.amp); the fast path on CPU and GPU (BENCHMARKS.md)
    amp_dtype: str = "auto"  # "auto" (bf16 where the device runs it natively, else fp16 on GPU / off on CPU) | "bfloat16" | "float16" (CUDA, GradScaler)
    channels_last: bool = True  # NHWC memory format for the conv backbones (faster with autocast on CPU and GPU)
    compile: bool = True  # torch.compile the backbone (~1 min warm-up on 2 CPU cores; 1.44x over bf16+channels_last, BENCHMARKS.md)
    use_multi_gpus: bool = False  # DataParallel over `gpus` in one process (the seed's option)
    gpus: list[int] = field(default_factory=lambda: [0])  # GPU ids for DataParallel
    dist_backend: str = "auto"  # DistributedDataParallel under torchrun: "auto" (nccl on GPU, gloo on CPU) | "nccl" | "gloo"
    sync_bn: bool = False  # DDP: BatchNorm statistics over the global batch (SyncBatchNorm; an all-reduce version on CPU)
    partial_fc: bool = False  # Partial-FC head: class centres sharded over ranks, negatives sampled
    partial_fc_sample_rate: float = 1.0  # fraction of class centres used per step (positives always kept)

    # ---------------------------------------------------------------- evaluation during training
    val_sets: list[str] = field(default_factory=lambda: ["synthetic"])  # "synthetic", a .bin, or "pairs_file::image_root"
    eval_every: int = 0  # iterations between verification runs; 0 = at each epoch end only
    eval_at_start: bool = True  # also evaluate before the first step: the untrained baseline the curves start from
    eval_protocol: str = "seed"  # "seed" (Face_Pytorch, concat + flip, mean-subtracted cosine) | "insightface"
    eval_batch_size: int = 128  # batch size of feature extraction
    save_every: int = 0  # iterations between checkpoints; 0 = at each epoch end only

    # ---------------------------------------------------------------- visdom
    use_visdom: bool = False  # live curves (loss, accuracy, lr, verification) on a visdom server
    visdom_server: str = "http://127.0.0.1"  # visdom server address
    visdom_port: int = 8097  # visdom server port
    visdom_timeout: float = 2.0  # seconds a visdom call may take before plotting is given up for the run

    # ---------------------------------------------------------------- derived values
    @property
    def input_hw(self) -> tuple[int, int]:
        """Network input as (height, width)."""
        return int(self.input_size[0]), int(self.input_size[1])

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]
