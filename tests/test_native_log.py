"""TVM's C++ log noise ("Warning: Scope Saving", executable.cc) goes to the `compiler.tvm` logger, not the terminal."""

from __future__ import annotations

import logging
import os
import re

import pytest

from compiler.native_log import native_log
from tests.conftest import srprune_subprocess

TVM_LINE = re.compile(r"\[\d\d:\d\d:\d\d\] \S+\.cc:\d+:")


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@pytest.fixture
def tvm_records():
    logger = logging.getLogger("compiler.tvm")
    handler, old = _Records(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield handler.lines
    logger.removeHandler(handler)
    logger.setLevel(old)


def test_tvm_lines_go_to_the_log_and_other_lines_stay(capfd, tvm_records):
    with native_log():
        os.write(2, b"[12:00:00] /project/src/runtime/vm/executable.cc:276: Warning: Scope Saving: global\n")
        os.write(2, b"ld: cannot find -lfoo\n")  # not TVM's: must still reach the user
    err = capfd.readouterr().err
    assert "Scope Saving" not in err and "ld: cannot find -lfoo" in err
    assert tvm_records == ["[12:00:00] /project/src/runtime/vm/executable.cc:276: Warning: Scope Saving: global"]


def test_a_real_export_logs_the_scope_warnings_and_prints_none(capfd, tvm_records, tmp_path):
    import torch

    from compiler.artifact import write_artifact
    from compiler.build import compile_model
    from srprune.models import build_model

    torch.manual_seed(0)
    compiled = compile_model(build_model("espcn", 2).eval(), (1, 3, 16, 16), "host")
    write_artifact(compiled, tmp_path / "a")
    err = capfd.readouterr().err
    assert not TVM_LINE.search(err), err
    assert any("Scope Saving" in line for line in tvm_records)  # TVM did warn: the capture can fail


def test_compile_command_prints_no_tvm_warnings(tmp_path):
    r = srprune_subprocess("compile", "espcn", "--scale", "2", "--size", "32x32", "-o", tmp_path / "c", timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "Warning" not in r.stderr and not TVM_LINE.search(r.stderr), r.stderr
