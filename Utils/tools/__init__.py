"""Command-line tools around the models and data, each runnable as `python -m Utils.tools.<name>`:
model_import (other projects' weights), onnx_export, align_faces (5-point alignment), convert_bin (.bin <-> image
folder), generate_dataset_list (list file of an image folder), visdom_server (the live-curve server, offline)."""
