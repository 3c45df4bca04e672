"""Shared ground floor: the registry, checkpoint files, device and precision rules, and the plot style.

The rooms above it each hold one program's library: `Utils.training` (the training engine behind Train.py),
`Utils.evaluation` (extraction, protocols and the command lines of the *_Evaluation.py scripts) and `Utils.tools`
(model import, ONNX export, alignment, .bin conversion, list files, the offline visdom server).
"""
