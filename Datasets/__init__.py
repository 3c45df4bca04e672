"""Datasets: training sets (synthetic, image folder + list, insightface RecordIO), verification sets (insightface
.bin, LFW pairs.txt, two-path pair lists, CFP-FP protocol), MegaFace lists, and the image lists every evaluation
reads through - all without mxnet.

    from Datasets import build_train_dataset, load_verification_set
    train = build_train_dataset(cfg)                  # item: (image (3,H,W), label, n_bad); train.num_classes
    vset = load_verification_set("lfw.bin", cfg)      # or "synthetic", or "pairs.txt::image_root"
"""
from .align import ARCFACE_TEMPLATE, SPHEREFACE_TEMPLATE, align_face, similarity_transform
from .binfile import load_bin, save_bin
from .errors import BadImageWarning, DataFormatError, DataPathError
from .folder import read_list_file, write_list_file
from .images import IMAGE_EXTENSIONS, IdentityFolder, ImageList, scan_identity_folders
from .pairs import PairList, read_pairs
from .recordio import IRHeader, RecordIOReader, RecordIOWriter, pack_record, unpack_record
from .synthetic import SyntheticPaths, ensure_synthetic
from .train_sets import (FaceTrainDataset, FolderTrainDataset, RecordIOTrainDataset, build_train_dataset,
                         list_train_formats, register_train_format)
from .transforms import decode_image, fit_image, normalize_image
from .verification import VerificationSet, load_verification_set, resolve_val_sets

__all__ = [
    "ARCFACE_TEMPLATE", "SPHEREFACE_TEMPLATE", "align_face", "similarity_transform",
    "load_bin", "save_bin", "BadImageWarning", "DataFormatError", "DataPathError",
    "read_list_file", "write_list_file", "IMAGE_EXTENSIONS", "IdentityFolder", "ImageList", "scan_identity_folders",
    "PairList", "read_pairs", "IRHeader", "RecordIOReader", "RecordIOWriter", "pack_record", "unpack_record",
    "SyntheticPaths", "ensure_synthetic",
    "FaceTrainDataset", "FolderTrainDataset", "RecordIOTrainDataset", "build_train_dataset", "list_train_formats",
    "register_train_format", "decode_image", "fit_image", "normalize_image", "VerificationSet",
    "load_verification_set", "resolve_val_sets",
]
