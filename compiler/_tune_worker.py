"""What MetaSchedule's builder workers run: kept apart so that a worker imports TVM and nothing else.

TVM's default build first imports all of its tensor intrinsics (parsing TVMScript: tens of seconds per worker
on a loaded 2-core machine, enough to hit the build timeout). Our float32 CPU workloads use none of them, so
this build skips that import; the rest is TVM's default build.
"""

from __future__ import annotations


def build(mod, target, _params=None):
    """Build one candidate schedule (TVM's `default_build` without the tensor-intrinsic registration)."""
    from tvm.driver import build as tvm_build
    from tvm.s_tir.transform import RemoveWeightLayoutRewriteBlock

    mod = RemoveWeightLayoutRewriteBlock(skip_tensor_rewrite=True)(mod)
    return tvm_build(mod, target=target)
