"""Import weights published by other PyTorch face-recognition projects into this project's backbones.

The networks are the same, the key names are not. Each source format is a list of rename rules (a regex over the
foreign module path -> our module path; the parameter name is carried over) plus, where the foreign network is an
exact special case of ours, the tensors that make ours compute the same function (identity BatchNorms, identity 1x1
shortcuts). Anything that does not map - a foreign key with no rule or no counterpart, one of our keys left
unfilled, a shape that disagrees - is an `ImportMismatchError` naming every such key.

    python -m Utils.tools.model_import --source=xiaoccer_mobilefacenet --weights=068.ckpt \
        --backbone=MobileFaceNet --input_size=112,96 --color_order=RGB --out=mfn.pt

The output is a project checkpoint (Utils.checkpoint): every evaluation script takes it via --checkpoint. The user
states the colour order and the normalisation the model was trained with. The colour order is recorded in the
checkpoint (evaluation feeds the channels in that order); a normalisation other than ours, (x - 127.5) / 128, is
folded into the first convolution so that the imported network expects our input exactly.

    layouts.py   the foreign key layouts (SourceFormat registry: rename rules and identity fillers)
    mapping.py   reading a foreign file, mapping it onto our backbone, folding the normalisation
    cli.py       the command line (`python -m Utils.tools.model_import`)
"""
from .layouts import SourceFormat, get_source, list_sources, register_source
from .mapping import (ImportMismatchError, ImportReport, build_import_checkpoint, fold_input_normalization,
                      import_backbone, map_state_dict, read_foreign_weights)

__all__ = ["SourceFormat", "ImportMismatchError", "ImportReport", "register_source", "get_source", "list_sources",
           "read_foreign_weights", "map_state_dict", "fold_input_normalization", "import_backbone",
           "build_import_checkpoint"]
