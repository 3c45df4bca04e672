"""MegaFace Challenge 1 evaluation of a checkpoint (or of precomputed features), without the devkit's binaries:
rank-1 / CMC and TAR at FAR down to 1e-6 for every distractor list size, optionally with insightface's noise lists.

    python MegaFace_Evaluation.py --checkpoint=runs/<run>/best.pt \\
        --probe_list=devkit/templatelists/facescrub_features_list.json --probe_root=/data/facescrub_aligned \\
        --distractor_lists=devkit/templatelists --distractor_root=/data/megaface_aligned
    python MegaFace_Evaluation.py --checkpoint=runs/<run>/best.pt --data=synthetic # the generated MegaFace-style set

All flags and the outputs: `python MegaFace_Evaluation.py --help`, Utils/evaluation/megaface_cli.py.
"""
from __future__ import annotations

import sys

from Utils.evaluation.megaface_cli import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:], prog="MegaFace_Evaluation.py"))
