"""AgeDB-30 verification of a checkpoint: 6,000 pairs 30 years apart, 10 folds (agedb_30.bin, or a pair
list + image folder).

    python AgeDB-30_Evaluation.py --checkpoint=runs/<run>/best.pt --data=/data/agedb_30.bin \\
        [--protocol=face_pytorch|insightface]

All flags and the outputs: `python AgeDB-30_Evaluation.py --help`, Utils/evaluation/verification_cli.py.
"""
from __future__ import annotations

import sys

from Utils.evaluation.verification_cli import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:], dataset="AgeDB-30"))
