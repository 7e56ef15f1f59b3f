"""fp16 vs fp32 c-lib on the built-in validation images under qemu-aarch64 -cpu max (docs/benchmarks.md `fp16`).

Accuracy, not timing (qemu timings mean nothing): MODEL (a model file or a registered name, untrained seeded weights)
is built for android-arm64 (fp32) and android-arm64-fp16 at each validation image's own size, both run under
qemu-aarch64 through glibc shims, and their outputs are scored by the protocol (PSNR-Y against HR, crop = scale)
and compared (max |diff| of the float outputs).

    python benchmarks/fp16_accuracy.py [MODEL ...] [--scale 2] [--doc [SECTION]]   # --doc rewrites the `fp16` section
"""

from __future__ import annotations

import argparse
import datetime
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from benchmarks._report import add_doc_arg, publish
from compiler.clib.export import build_clib
from compiler.clib.toolchain import GNU_SYSROOT, glibc_shims
from srprune.data.datasets import load_dataset
from srprune.imresize import to_uint8
from srprune.metrics import psnr
from srprune.models import deploy
from srprune.models.resolve import resolve_model

TARGETS = ("android-arm64", "android-arm64-fp16")


def run_qemu(lib: Path, shims: Path, x: np.ndarray, out_shape: tuple[int, ...], work: Path) -> np.ndarray:
    """The library's own srmodel_bench under qemu-aarch64 -cpu max on input x; its float32 output."""
    (work / "in.f32").write_bytes(np.ascontiguousarray(x, np.float32).tobytes())
    cmd = ["qemu-aarch64", "-cpu", "max", "-L", GNU_SYSROOT, f"{GNU_SYSROOT}/lib/ld-linux-aarch64.so.1",
           "--library-path", str(shims), str(lib.parent / "srmodel_bench"), str(lib), "-n", "1", "-w", "0",
           "-t", "2", "-i", str(work / "in.f32"), "-o", str(work / "out.f32")]
    subprocess.run(cmd, check=True, capture_output=True, timeout=1800)
    return np.fromfile(work / "out.f32", np.float32).reshape(out_shape)


def rows(spec: str, scale: int, work: Path, shims: Path) -> list[str]:
    """One markdown row per validation image for MODEL `spec`."""
    net, info = resolve_model(spec, scale)
    net = deploy(net).eval()
    s, out = info.scale, []
    label = f"{info.name} x{s} " + ("(untrained, seed 0)" if info.path is None else
                                    f"(trained, {((info.meta or {}).get('train') or {}).get('steps', '?')} steps)")
    for k, pair in enumerate(load_dataset("builtin", s, "val")):
        lr, hr = pair.lr, pair.hr
        x = lr.transpose(2, 0, 1)[None].astype(np.float32) / 255
        out_shape = (1, 3, lr.shape[0] * s, lr.shape[1] * s)
        outs = {}
        for target in TARGETS:
            folder = work / f"{Path(spec).stem}-{k}-{target}"
            build_clib(net, x.shape, target, folder, check=False)
            outs[target] = run_qemu(folder / "libsrmodel.so", shims, x, out_shape, work)
        scores = [psnr(to_uint8(outs[t][0].transpose(1, 2, 0) * 255), hr, s) for t in TARGETS]
        diff = float(np.abs(outs[TARGETS[1]] - outs[TARGETS[0]]).max())
        out.append(f"| {label} | {pair.name} | {lr.shape[1]}x{lr.shape[0]} | {scores[0]:.4f} | {scores[1]:.4f} | "
                   f"{scores[1] - scores[0]:+.4f} | {diff:.2e} |")
        print(out[-1], flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="*", default=["ecbsr"])
    ap.add_argument("--scale", type=int, default=2)
    add_doc_arg(ap, "fp16")
    args = ap.parse_args()
    table = ["| model | image | LR size | PSNR-Y fp32 (dB) | PSNR-Y fp16 (dB) | fp16 - fp32 (dB) | max abs diff |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        shims = glibc_shims(work / "shims")
        for spec in args.models:
            table += rows(spec, args.scale, work, shims)
    text = (f"## fp16 vs fp32 c-lib under qemu-aarch64 -cpu max (accuracy)\n\n"
            f"`benchmarks/fp16_accuracy.py`, {datetime.date.today()}: android-arm64-fp16 (fp16 multiply-adds "
            "accumulating in fp16, fp32 epilogue) against android-arm64 (fp32), each built at the built-in validation "
            "image's own size and run under qemu-aarch64 -cpu max; PSNR-Y by the protocol against HR. Accuracy only: "
            "qemu timings mean nothing. A registered name means its seeded untrained weights; the trained model is "
            "`srprune train espcn --scale 2 --data builtin --steps 300`.\n\n" + "\n".join(table) +
            "\n\nThe choice this measures: every multiply-add accumulates in fp16 (no fp32 accumulators, which would "
            "halve the lanes per instruction); its cost is the `fp16 - fp32` column (goal: within 0.02 dB). "
            "tests/test_fp16.py asserts the same on 128x128 crops of both images (max abs diff <= 1e-2).")
    publish(text, None, "fp16", None, args.doc)


if __name__ == "__main__":
    main()
