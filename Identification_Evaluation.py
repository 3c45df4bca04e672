"""Closed-set identification of a checkpoint on a plain folder of identities (root/<identity>/<image>).

    python Identification_Evaluation.py --checkpoint=mfn.pt --root=orl/att_faces --protocol=loo

Leave-one-out rank-1 (each image against all others) or a gallery/probe split, image + flip features, cosine.
All flags and the outputs: `python Identification_Evaluation.py --help`, Utils/evaluation/identification_cli.py.
"""
from __future__ import annotations

import sys

from Utils.evaluation.identification_cli import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:], prog="Identification_Evaluation.py"))
