"""`python -m Backbones --summary [NAME ...]`: parameter count and fp32 state_dict size of every registered backbone,
or of the names given (timm:<model> included)."""
from __future__ import annotations

import argparse
import sys

import torch

from . import check_backbone_name, get_backbone, list_backbones


def state_dict_bytes(model: torch.nn.Module) -> int:
    return sum(t.numel() * t.element_size() for t in model.state_dict().values())


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Defaults in --help, and the module's docstring kept as written."""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m Backbones", description=__doc__,
                                     formatter_class=_HelpFormatter)
    parser.add_argument("--summary", action="store_true", help="print parameters and state_dict size per backbone")
    parser.add_argument("--list", action="store_true", help="print the registered names")
    parser.add_argument("names", nargs="*", help="backbones to summarise (default: every registered one)")
    args = parser.parse_args(argv)
    if args.list or not args.summary:
        print("\n".join(list_backbones()))
        return 0
    names = args.names or list_backbones()
    for name in names:
        try:
            check_backbone_name(name)
        except ValueError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    width = max(16, *(len(n) + 2 for n in names))
    print(f"{'backbone':<{width}}{'embedding':>10}{'parameters':>14}{'fp32 MB':>10}{'fp32 MiB':>10}")
    for name in names:
        with torch.device("meta"):  # shapes only: no memory, no init cost
            model = get_backbone(name)
        n_params = sum(p.numel() for p in model.parameters())
        size = state_dict_bytes(model)
        print(f"{name:<{width}}{model.embedding_size:>10}{n_params:>14,}{size / 1e6:>10.1f}{size / 2**20:>10.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
