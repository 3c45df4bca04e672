"""LFW verification of a checkpoint: 6,000 pairs in 10 folds (lfw.bin, or pairs.txt + image folder).

    python LFW_Evaluation.py --checkpoint=runs/<run>/best.pt --data=/data/lfw.bin [--protocol=face_pytorch|insightface]

All flags and the outputs: `python LFW_Evaluation.py --help`, Utils/evaluation/verification_cli.py.
"""
from __future__ import annotations

import sys

from Utils.evaluation.verification_cli import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:], dataset="LFW"))
