"""Every benchmark that writes docs/benchmarks.md takes `--doc [SECTION]` from one home (benchmarks._report), so a
CPU without a feature can add its figures beside a section measured on one with it instead of overwriting them."""

from __future__ import annotations

import argparse
import ast
from pathlib import Path

from benchmarks._report import add_doc_arg, doc_flag, doc_section
from tests.conftest import ROOT

# fma_ceiling's section is always "this machine" (other machines' ceilings stay in the headers measured on them).
OWN_DOC_FLAG = {"_report.py", "fma_ceiling.py"}


def _parse(*argv: str) -> bool | str:
    ap = argparse.ArgumentParser()
    add_doc_arg(ap, "conv_tiles")
    return ap.parse_args(list(argv)).doc


def test_doc_takes_an_optional_section():
    assert _parse() is False
    assert _parse("--doc") is True
    assert _parse("--doc", "conv_tiles_avx2") == "conv_tiles_avx2"
    assert doc_section(True, "conv_tiles") == "conv_tiles"
    assert doc_section("conv_tiles_avx2", "conv_tiles") == "conv_tiles_avx2"
    assert doc_flag("conv_tiles", "conv_tiles") == "--doc"
    assert doc_flag("conv_tiles_avx2", "conv_tiles") == "--doc conv_tiles_avx2"


def test_no_benchmark_declares_its_own_doc_flag():
    own = []
    for path in sorted((ROOT / "benchmarks").glob("*.py")):
        if path.name in OWN_DOC_FLAG:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if (isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "add_argument" and node.args
                    and isinstance(node.args[0], ast.Constant) and node.args[0].value == "--doc"):
                own.append(f"{Path(path).name}:{node.lineno}")
    assert not own, f"--doc declared outside benchmarks._report.add_doc_arg: {own}"
