"""Optional MetaSchedule tuning: a persistent per-target database that later compiles apply."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from compiler.build import compile_model
from compiler.errors import CompilerError
from compiler.targets import get_target
from compiler.tune import database_dir, has_records, tune
from conftest import assert_one_line_error


class SkipNet(nn.Module):
    """conv (our kernel) + PixelShuffle + nearest-upsampled skip: the last two are MetaSchedule's to tune."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 12, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return nn.functional.pixel_shuffle(self.conv(x), 2) + nn.functional.interpolate(x, scale_factor=2)


def test_database_is_per_target_not_per_thread_count(tmp_path):
    host1, host2 = database_dir(tmp_path, get_target("host", 1)), database_dir(tmp_path, get_target("host", 2))
    arm = database_dir(tmp_path, get_target("linux-arm64"))
    assert host1 == host2 and host1 != arm and host1.parent == tmp_path
    assert not has_records(host1) and not has_records(None)


def test_bad_requests_are_one_line_errors(tmp_path):
    with pytest.raises(CompilerError, match="cannot be tuned here"):
        tune(SkipNet().eval(), (1, 3, 8, 8), "linux-arm64", 1, tmp_path)
    with pytest.raises(CompilerError, match="positive minutes"):
        tune(SkipNet().eval(), (1, 3, 8, 8), "host", 0, tmp_path)


def test_cli_refuses_tuning_a_cross_target(run_cli, tmp_path):
    res = run_cli("compile", "espcn", "--scale", "2", "--size", "32x32", "--target", "linux-arm64", "--tune", "1",
                  "-o", tmp_path / "out")
    assert_one_line_error(res, "linux-arm64", "cannot be tuned")
    assert not (tmp_path / "out").exists()


def test_tuned_records_persist_and_later_compiles_apply_them(tmp_path):
    torch.manual_seed(0)
    model = SkipNet().eval()
    report = tune(model, (1, 3, 16, 24), "host", 0.01, tmp_path, trials_per_round=2, population=16)
    assert report.tasks and all("srconv" not in t for t in report.tasks)  # our kernels are never handed over
    assert report.records >= 1 and report.measured >= 1, report
    assert has_records(report.db_dir)
    compiled = compile_model(model, (1, 3, 16, 24), "host", tuning_root=str(tmp_path))
    assert compiled.tuning_db == str(report.db_dir)
    assert compiled.check["max_abs_diff"] <= 1e-4
    other = SkipNet().eval()  # another model with the same workloads reuses the database
    assert compile_model(other, (1, 3, 16, 24), "host", tuning_root=str(tmp_path)).check["max_abs_diff"] <= 1e-4
    assert compile_model(model, (1, 3, 16, 24), "host").tuning_db is None
