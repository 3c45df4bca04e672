"""CFP-FP verification of a checkpoint: 7,000 frontal-profile pairs, 10 folds (cfp_fp.bin, or the CFP
Protocol/Split/FP folder + image root).

    python CFP-FP_Evaluation.py --checkpoint=runs/<run>/best.pt --data=/data/cfp_fp.bin \
        [--protocol=face_pytorch|insightface]

All flags and the outputs: `python CFP-FP_Evaluation.py --help`, Utils/evaluation/verification_cli.py.
"""
from __future__ import annotations

import sys

from Utils.evaluation.verification_cli import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:], dataset="CFP-FP"))
