"""Every setting of training and evaluation, in one dataclass.

Edit the defaults here, or override any field without touching this file:

    python Train.py --backbone=ResNet50_IR --head=CosFace --lr=0.05
    python Train.py --config=my_overrides.py          # a .py holding only the differences
    python Train.py --preset=casia --train_root=/data/faces_webface_112x112

Each field is `setting(default, help)`: the help text is the field's metadata, which `python Train.py --help`
prints. Nothing is parsed at import time; `Config/cli.py` turns argv into a validated `Config`.
The defaults run on a fresh machine with no dataset: the embedded synthetic face set is generated on first use.
"""
from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Config", "setting", "ALIASES", "VALUE_ALIASES"]


def setting(default: Any, help: str, section: str = "") -> Any:
    """A dataclass field with its help text; `section` on the first field of a group titles the group in --help.
    List defaults get a fresh copy per Config."""
    metadata = {"help": help, "section": section}
    if isinstance(default, list):
        return field(default_factory=lambda: copy.copy(default), metadata=metadata)
    return field(default=default, metadata=metadata)

# Old names still accepted, for configs and checkpoints written with them: {old key: new key}, and
# {key: {old value: new value}}.
ALIASES = {"para_adj_mode": "write_nothing"}
VALUE_ALIASES = {"eval_protocol": {"seed": "face_pytorch"}}


@dataclass
class Config:
    run_name: str = setting("", 'run directory name under output_dir; "" -> <backbone>_<head>_<timestamp>',
                            section="run")
    output_dir: str = setting("./runs", 'parent folder of all run directories (checkpoints, logs, plots)')
    seed: int = setting(0, 'seeds python, numpy and torch RNGs; the sampler order derives from it')
    write_nothing: bool = setting(False, "train and evaluate but write nothing to disk: no run directory, log file "
                                         "or checkpoint (the original project's para_adj_mode, still accepted)")
    resume: str = setting("", 'checkpoint file or run directory to continue from ("" = fresh run)')
    trust_checkpoint: bool = setting(False, 'resume from a checkpoint that needs full unpickling (it can run code it '
                                            'holds: only files you trust); ours load with weights_only')
    device: str = setting("auto", '"auto" (cuda if available else cpu), "cpu", "cuda", "cuda:1"')
    log_every: int = setting(20, 'iterations between log-file lines and visdom points')

    train_format: str = setting("synthetic", '"synthetic" | "folder" (image folder + list file) | "rec" '
                                             '(train.rec/train.idx)', section="training data")
    train_root: str = setting("", 'image folder root, or the folder holding train.rec + train.idx')
    train_list: str = setting("", 'folder format: list file of "relative/path label" lines ("" -> '
                                  '<train_root>/train_list.txt)')
    train_sets: list[str] = setting([], 'several training sets in one run, each "format:root" (folder: '
                                         '"folder:root::list_file"), e.g. "rec:/data/ms1m,folder:/data/casia"; labels '
                                         'of each set follow the previous sets\' classes; replaces '
                                         'train_format/train_root')
    data_root: str = setting("./data", 'where the embedded synthetic set is generated and cached')
    synthetic_identities: int = setting(300, 'identities in the synthetic training set')
    synthetic_images_per_identity: int = setting(20, 'images per synthetic training identity')
    synthetic_val_pairs: int = setting(3000, 'pairs in the synthetic verification set (10 folds, half matched)')
    synthetic_difficulty: float = setting(0.6, '0 = clean frontal faces .. 1 = strong pose/light/occlusion/blur '
                                               'nuisances')
    synthetic_seed: int = setting(2024, 'seed of the synthetic generator (identities and their images)')
    synthetic_probe_identities: int = setting(40, 'synthetic MegaFace-style probe identities (10 images each)')
    synthetic_distractors: int = setting(1000, 'synthetic MegaFace-style distractors (one image, one identity each)')
    color_order: str = setting("RGB", 'channel order the network sees: "RGB" (our models) or "BGR" (models trained on '
                                      'BGR)')
    input_size: list[int] = setting([112, 112], 'network input [height, width]; [112, 96] too')
    num_workers: int = setting(2, 'DataLoader worker processes')
    persistent_workers: bool = setting(True, 'keep the DataLoader workers alive across epochs (no restart cost per '
                                             'epoch; the sampler hands each index its epoch, so the augmentation '
                                             'still changes per epoch)')
    prefetch_factor: int = setting(2, 'batches each DataLoader worker prepares ahead (with num_workers > 0)')
    gpu_decode: bool = setting(False, 'decode the JPEGs of .rec / folder sets on the GPU (torchvision.io.decode_jpeg '
                                      'on CUDA); CPU decoding where CUDA or the codec is absent')
    bad_image_policy: str = setting("skip", 'a corrupt training image: "skip" (warn, count, use another) or "error"')
    random_flip: bool = setting(True, 'horizontal-flip augmentation during training (false drops "flip" from augment)')
    augment: list[str] = setting(["flip:0.5"], 'training augmentation in order, "name:probability[:strength]" items '
                                               'of flip crop jitter grey blur lowres erase, e.g. flip:0.5,lowres:0.2 '
                                               '(README "Augmentation"; python -m Datasets.augment --preview)')

    backbone: str = setting("MobileFaceNet", 'a name from Backbones (see `python -m Backbones --list`), or '
                                             'timm:<model> for any timm image model',
                            section="model")
    embedding_size: int = setting(0, "embedding dimension; 0 -> the backbone's default (MobileFaceNet 128, *_IR 512)")
    dropout: float = setting(0.0, 'dropout before the embedding FC of the IR networks (insightface uses 0.0 / 0.4)')
    activation_checkpointing: bool = setting(False, 'recompute each IR unit / ViT block in the backward pass instead '
                                                    'of storing its activations: less memory, ~1 extra forward '
                                                    '(BENCHMARKS.md)')

    head: str = setting("ArcFace", 'a name from Heads: Softmax ArcFace CosFace SphereFace CombinedMargin '
                                   'CurricularFace AdaFace SubCenterArcFace MagFace ElasticArcFace[Plus] '
                                   'ElasticCosFace[Plus]', section="head (margin)")
    scale: float = setting(32.0, "s, the logit scale of normalised heads (the original project's recipes: 32; "
                                 "insightface: 64)")
    margin: float = setting(0.5, 'm: ArcFace/SubCenter/CurricularFace angular margin, CosFace cosine margin, AdaFace m')
    easy_margin: bool = setting(False, 'ArcFace: apply the margin only where cos > 0 (instead of the theta + m > pi '
                                       'fallback)')
    combined_margins: list[float] = setting([1.0, 0.3, 0.2], 'CombinedMargin m1, m2, m3')
    sphereface_m: int = setting(4, 'SphereFace multiplicative margin')
    sphereface_lambda: list[float] = setting([1000.0, 5.0, 0.12, 1.0], 'base, min, gamma, power')
    subcenters: int = setting(3, 'SubCenterArcFace: centres per class (K)')
    adaface_h: float = setting(0.333, 'AdaFace: concentration of the norm-adaptive margin')
    adaface_t_alpha: float = setting(0.01, 'AdaFace: EMA rate of the batch norm statistics')
    magface_norm_range: list[float] = setting([10.0, 110.0], 'MagFace: [l_a, u_a], the embedding norms between which '
                                                             'the margin rises (and a is clipped)')
    magface_margin_range: list[float] = setting([0.45, 0.8], 'MagFace: [l_m, u_m], the margins at norms l_a and u_a')
    magface_lambda_g: float = setting(35.0, 'MagFace: weight of the norm regulariser g(a) = 1/a + a/u_a^2 in the loss')
    elastic_sigma: float = setting(0.05, 'ElasticFace: std of the per-sample margins drawn from N(margin, sigma) '
                                         '(the paper: 0.05; 0.0175 Arc+ / 0.025 Cos+)')

    epochs: int = setting(4, 'passes over the training set', section="optimisation")
    batch_size: int = setting(64, 'global batch size (split across GPUs / ranks)')
    grad_accum_steps: int = setting(1, 'micro-batches per optimizer step (loss divided accordingly)')
    optimizer: str = setting("sgd", '"sgd" | "adamw"')
    lr: float = setting(0.1, 'peak learning rate (after warmup)')
    momentum: float = setting(0.9, 'SGD momentum')
    nesterov: bool = setting(False, 'SGD Nesterov momentum')
    weight_decay: float = setting(5e-4, 'decay of conv/linear weights and class centres; none for BN, PReLU, biases')
    lr_schedule: str = setting("multistep", '"multistep" | "cosine" | "poly"; stepped every iteration')
    milestones: list[int] = setting([3], 'multistep: epochs where lr *= lr_gamma')
    lr_gamma: float = setting(0.1, 'multistep decay factor')
    warmup_epochs: float = setting(0.5, 'linear warmup from 0 to lr over this many epochs (fractions allowed)')
    poly_power: float = setting(2.0, 'poly schedule exponent')
    grad_clip: float = setting(0.0, 'max global gradient norm; 0 = no clipping')
    max_bad_steps: int = setting(10, 'consecutive non-finite losses that stop the run (after saving)')
    max_iterations: int = setting(0, 'stop (saving a resumable checkpoint) after this many iterations in all; 0 = run '
                                     'every epoch')

    use_amp: bool = setting(True, 'automatic mixed precision (torch.amp); the fast path on CPU and GPU '
                                  '(BENCHMARKS.md)', section="devices and precision")
    amp_dtype: str = setting("auto", '"auto" (bf16 where the device runs it natively, else fp16 on GPU / off on CPU) '
                                     '| "bfloat16" | "float16" (CUDA, GradScaler)')
    channels_last: bool = setting(True, 'NHWC memory format for the conv backbones (faster with autocast on CPU and '
                                        'GPU)')
    compile: bool = setting(True, 'torch.compile the backbone (~1 min warm-up on 2 CPU cores; 1.44x over '
                                  'bf16+channels_last, BENCHMARKS.md)')
    use_multi_gpus: bool = setting(False, "DataParallel over `gpus` in one process (the original project's option)")
    gpus: list[int] = setting([0], 'GPU ids for DataParallel')
    dist_backend: str = setting("auto", 'DistributedDataParallel under torchrun: "auto" (nccl on GPU, gloo on CPU) | '
                                        '"nccl" | "gloo"')
    sync_bn: bool = setting(False, 'DDP: BatchNorm statistics over the global batch (SyncBatchNorm; an all-reduce '
                                   'version on CPU)')
    partial_fc: bool = setting(False, 'Partial-FC head: class centres sharded over ranks, negatives sampled')
    partial_fc_sample_rate: float = setting(1.0, 'fraction of class centres used per step (positives always kept)')

    val_sets: list[str] = setting(["auto"], '"auto" (the synthetic set when training on it, else the lfw.bin, '
                                            'cfp_fp.bin, agedb_30.bin found in train_root, else none), "synthetic", '
                                            'a .bin, or "pairs_file::image_root"', section="evaluation during training")
    eval_every: int = setting(0, 'iterations between verification runs; 0 = at each epoch end only')
    eval_at_start: bool = setting(True, 'also evaluate before the first step: the untrained baseline the curves start '
                                        'from')
    eval_protocol: str = setting("face_pytorch", '"face_pytorch" (concat + flip, mean-subtracted cosine; "seed" '
                                                 'accepted) | "insightface" (sum + flip, L2 distance)')
    eval_batch_size: int = setting(128, 'batch size of feature extraction')
    save_every: int = setting(0, 'iterations between checkpoints; 0 = at each epoch end only')

    use_visdom: bool = setting(False, 'live curves (loss, accuracy, lr, verification) on a visdom server',
                               section="visdom")
    visdom_server: str = setting("http://127.0.0.1", 'visdom server address')
    visdom_port: int = setting(8097, 'visdom server port')
    visdom_timeout: float = setting(2.0, 'seconds a visdom call may take before plotting is given up for the run')
    use_tensorboard: bool = setting(False, 'also write the curves (loss, accuracy, lr, images/s, each val set) as '
                                           'TensorBoard events', section="tensorboard")
    tensorboard_dir: str = setting("", 'folder of the TensorBoard event files ("" -> the run directory)')

    # derived values (properties, not settings)
    @property
    def input_hw(self) -> tuple[int, int]:
        """Network input as (height, width)."""
        return int(self.input_size[0]), int(self.input_size[1])

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]
