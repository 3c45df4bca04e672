"""Train a face-recognition model: backbone + margin head, evaluated on verification sets while it trains.

    python Train.py                                           # defaults: MobileFaceNet + ArcFace on the synthetic set
    python Train.py --backbone=ResNet50_IR --head=CosFace --lr=0.05 --use_amp=true
    python Train.py --preset=casia --train_root=/data/faces_webface_112x112 --val_sets=/data/lfw.bin
    python Train.py --resume=runs/MobileFaceNet_ArcFace_20240101-120000      # continue, mid-epoch if need be, with
                                                                              # the run's own settings
    python Train.py --config=runs/MobileFaceNet_ArcFace_20240101-120000/config.json --run_name=again
    torchrun --nproc_per_node=8 Train.py --partial_fc=true --partial_fc_sample_rate=0.2 ...

Every setting is a field of Config/config.py, overridable as --key=value. A run writes its directory under
output_dir (config.json, train.log, history.jsonl, curves.png, last.pt, best.pt) unless write_nothing is on.
The engine lives in Utils/training; `Train.train(cfg, dataset=...)` is the same run from a notebook.
"""
from __future__ import annotations

import sys

from Config import ConfigError, help_text, parse_config
from Utils.checkpoint import CheckpointWriteError
from Utils.training import RunResult, StopReason, build_components, run, setup, train
from Utils.training.distributed import cleanup_distributed

__all__ = ["build_components", "setup", "run", "train", "main", "RunResult", "StopReason"]

# exit status per stop reason: 0 when the run did what was asked, 1 when it had to give up, 3 when a signal
# (SIGTERM: pre-emption) stopped it with a resumable checkpoint, so a job script can requeue it with --resume
EXIT_STATUS = {StopReason.FINISHED: 0, StopReason.MAX_ITERATIONS: 0, StopReason.BAD_STEPS: 1,
               StopReason.INTERRUPTED: 3}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if {"-h", "--help"} & set(argv):
        print(__doc__.strip() + "\n\n" + help_text())
        return 0
    try:
        cfg, _ = parse_config(argv)
        session = setup(cfg)
    except (ConfigError, ValueError, FileNotFoundError) as exc:  # bad settings or data: one line, exit status 2
        print(f"error: {exc}", file=sys.stderr)
        cleanup_distributed()
        return 2
    try:
        result = run(session)
    except CheckpointWriteError as exc:  # disk full while saving: the previous checkpoint is still there
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        run_dir = session.policy.run_dir
        print(f"\ninterrupted; the last checkpoint is in {run_dir}" if run_dir else "\ninterrupted", file=sys.stderr)
        return 130
    finally:
        cleanup_distributed()
    return EXIT_STATUS[result.stop_reason]


if __name__ == "__main__":
    sys.exit(main())
