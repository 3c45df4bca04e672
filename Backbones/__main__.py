"""`python -m Backbones --summary`: parameter count and fp32 state_dict size of every backbone."""
from __future__ import annotations

import argparse

import torch

from . import get_backbone, list_backbones


def state_dict_bytes(model: torch.nn.Module) -> int:
    return sum(t.numel() * t.element_size() for t in model.state_dict().values())


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Defaults in --help, and the module's docstring kept as written."""


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m Backbones", description=__doc__,
                                     formatter_class=_HelpFormatter)
    parser.add_argument("--summary", action="store_true", help="print parameters and state_dict size per backbone")
    parser.add_argument("--list", action="store_true", help="print the registered names")
    args = parser.parse_args(argv)
    if args.list or not args.summary:
        print("\n".join(list_backbones()))
        return
    print(f"{'backbone':<16}{'embedding':>10}{'parameters':>14}{'fp32 MB':>10}{'fp32 MiB':>10}")
    for name in list_backbones():
        with torch.device("meta"):  # shapes only: no memory, no init cost
            model = get_backbone(name)
        n_params = sum(p.numel() for p in model.parameters())
        size = state_dict_bytes(model)
        print(f"{name:<16}{model.embedding_size:>10}{n_params:>14,}{size / 1e6:>10.1f}{size / 2**20:>10.1f}")


if __name__ == "__main__":
    main()
