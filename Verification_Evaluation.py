"""Verification of a checkpoint on several sets at once, one table (a row per set) and one JSON.

    python Verification_Evaluation.py --checkpoint=runs/<run>/best.pt \
        --data=lfw.bin,cfp_fp.bin,cfp_ff.bin,agedb_30.bin,calfw.bin,cplfw.bin,vgg2_fp.bin

All flags and the outputs: `python Verification_Evaluation.py --help`, Utils/evaluation/verification_suite.py.
"""
from __future__ import annotations

import sys

from Utils.evaluation.verification_suite import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
