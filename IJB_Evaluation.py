"""IJB-C / IJB-B evaluation of a checkpoint: 1:1 TAR at FAR 1e-6 .. 1e-1 and 1:N TPIR at FPIR, rank-1/5/10.

    python IJB_Evaluation.py --checkpoint=runs/<run>/best.pt --data=/data/IJBC --target=IJBC --protocol=1:1,1:N

All flags and the outputs: `python IJB_Evaluation.py --help`, Utils/evaluation/ijb/cli.py.
"""
from __future__ import annotations

import sys

from Utils.evaluation.ijb.cli import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
