"""The house rules of the source tree: the model and data packages stay free of the programs built on them, no file
of product code grows past 400 lines, no folder holds more than 30% of the product code, and every entry script is
thin."""
from __future__ import annotations

import ast
from collections import Counter

import pytest

from tests.conftest import REPO

PRODUCT = ["Config", "Backbones", "Heads", "Datasets", "Utils"]
ENTRY_SCRIPTS = ["Train.py", "LFW_Evaluation.py", "AgeDB-30_Evaluation.py", "CFP-FP_Evaluation.py",
                 "MegaFace_Evaluation.py", "Identification_Evaluation.py", "IJB_Evaluation.py",
                 "Verification_Evaluation.py"]


def _product_files():
    files = [p for top in PRODUCT for p in (REPO / top).rglob("*.py")]
    return files + [REPO / name for name in ENTRY_SCRIPTS]


def _imports(path) -> set[str]:
    """Absolute module names `path` imports (relative imports resolved against its package)."""
    tree = ast.parse(path.read_text())
    package = path.relative_to(REPO).parent.parts
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = list(package[:len(package) - node.level + 1]) if node.level else []
            module = ".".join(base + ([node.module] if node.module else []))
            names.add(module)
            names |= {f"{module}.{a.name}" for a in node.names}
    return names


@pytest.mark.parametrize("package", ["Backbones", "Heads", "Datasets"])
def test_model_and_data_packages_import_no_program(package):
    for path in (REPO / package).rglob("*.py"):
        bad = {m for m in _imports(path) if m.split(".")[:2] in (["Utils", "training"], ["Utils", "evaluation"],
                                                                  ["Utils", "tools"])}
        assert not bad, f"{path.relative_to(REPO)} imports {sorted(bad)}"


def test_the_import_checker_sees_relative_imports():
    # the guard above must not be blind to `from ..evaluation import x` (resolved against the file's package)
    path = REPO / "Utils" / "training" / "policy.py"
    assert "Utils.evaluation.verify" in _imports(path)


def test_no_product_file_over_400_lines():
    long = {str(p.relative_to(REPO)): n for p in _product_files()
            if (n := len(p.read_text().splitlines())) > 400}
    assert not long, long


def test_no_folder_over_30_percent_of_the_product_code():
    lines = Counter()
    for p in _product_files():
        lines[str(p.parent.relative_to(REPO))] += len(p.read_text().splitlines())
    total = sum(lines.values())
    heavy = {folder: f"{100 * n / total:.1f}%" for folder, n in lines.items() if n > 0.3 * total}
    assert not heavy, heavy


@pytest.mark.parametrize("script", ENTRY_SCRIPTS)
def test_entry_scripts_are_thin(script):
    limit = 120 if script == "Train.py" else 30
    assert len((REPO / script).read_text().splitlines()) <= limit
