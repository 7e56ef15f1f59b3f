"""srprune (our TVM kernels) against the engines users deploy SR networks with, on the same networks.

Peers: ONNX Runtime, OpenVINO (f32 inference precision forced), ncnn (via pnnx, fp32 weights), MNN (mnnconvert,
precision high), LiteRT (litert-torch, XNNPACK delegate), ExecuTorch (XNNPACK partitioner), and PyTorch eager.
Each network is exported once (ONNX, torch.export .pt2, TorchScript), converted by each installed peer, its
output checked against PyTorch (max abs diff in the table), then all engines are timed interleaved: one
persistent process per engine (benchmarks/peer_worker.py), the same input and thread count, a pause before each
call (compiler.bench.SETTLE_MS), the order rotated every round. Ratios are srprune / engine per round (below 1:
srprune is faster). Peers live in their own virtual environment: `make peers` builds .venv-peers from
benchmarks/peers-requirements.txt (no srprune or TVM in it: see that file); this script runs in srprune's venv
and starts the workers with --peers-python.

Usage: python benchmarks/peers.py [--threads 1,2] [--rounds 15] [--networks a,b] [--engines a,b]
                                  [--run RUN] [--peers-python PY] [--json FILE] [--doc [SECTION]]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks._report import add_doc_arg, doc_flag, doc_section, fma_ceiling_gflops, machine, of_ceiling, publish  # noqa: E402
from compiler.bench import SETTLE_MS, graph_macs  # noqa: E402

PEERS = ("onnxruntime", "openvino", "ncnn", "mnn", "litert", "executorch")
OURS = ("srprune", "torch")
# The packages behind the peers (benchmarks/peers-requirements.txt), whose versions the section's header names.
PACKAGES = ("onnxruntime", "openvino", "ncnn", "pnnx", "MNN", "ai-edge-litert", "litert-torch", "executorch", "torch")
LOCAL = OURS + ("clib",)  # engines run with srprune's own interpreter (clib: benchmarks/int8_networks.py)
WORKER = Path(__file__).with_name("peer_worker.py")


def select(nets: dict[str, nn.Module], names: str | None) -> dict[str, nn.Module]:
    """The networks a comma-separated `--networks` names (all when empty); an unknown name is a one-line exit."""
    if not names:
        return nets
    want = names.split(",")
    missing = [n for n in want if n not in nets]
    if missing:
        sys.exit(f"error: unknown network {missing[0]!r}; known: {', '.join(nets)}")
    return {n: nets[n] for n in want}


def networks(run: Path | None) -> dict[str, nn.Module]:
    """The engines benchmark's networks (seeded, untrained), plus the searched model of `run` when given."""
    from benchmarks.engines import networks as reference_networks

    nets = dict(reference_networks())
    if run is not None:
        from srprune.export import deployable

        nets[f"searched ({run.name})"] = deployable(str(run / "final" / "model.pt"), None)[0].eval()
    return nets


class CroppedDeconv(nn.Module):
    """A padded ConvTranspose2d as the unpadded one followed by a crop: the same numbers (litert-torch cannot
    legalise a transposed convolution with padding, e.g. FSRCNN's 9x9 stride-2 deconv with padding 4)."""

    def __init__(self, deconv: nn.ConvTranspose2d) -> None:
        super().__init__()
        self.pad, self.extra = deconv.padding, deconv.output_padding
        self.inner = nn.ConvTranspose2d(deconv.in_channels, deconv.out_channels, deconv.kernel_size,
                                        stride=deconv.stride, groups=deconv.groups, bias=deconv.bias is not None,
                                        dilation=deconv.dilation)
        self.inner.load_state_dict(deconv.state_dict())

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        y = self.inner(x)
        (ph, pw), (eh, ew) = self.pad, self.extra
        return y[:, :, ph:y.shape[2] - ph + eh, pw:y.shape[3] - pw + ew]


def _repeat_channels(x: torch.Tensor, repeats: int, dim: int = 1) -> torch.Tensor:
    """x.repeat_interleave(repeats, dim=1) as unsqueeze/expand/reshape (ncnn has no repeat_interleave)."""
    assert dim == 1, "only the channel dimension is rewritten"
    n, c, h, w = x.shape
    return x.unsqueeze(2).expand(n, c, repeats, h, w).reshape(n, c * repeats, h, w)


def peer_rewrites(model: nn.Module) -> tuple[nn.Module, list[str]]:
    """The network with exact, documented rewrites for converters that lack an operator, and what was rewritten.

    - padded ConvTranspose2d -> unpadded + crop (litert-torch); - repeat_interleave on channels -> expand +
    reshape (pnnx/ncnn). The max-diff column checks that the rewritten network still matches PyTorch.
    """
    import copy

    import torch.fx

    model = copy.deepcopy(model)
    done: list[str] = []
    for name, mod in list(model.named_modules()):
        for child_name, child in list(mod.named_children()):
            if isinstance(child, nn.ConvTranspose2d) and any(child.padding):
                setattr(mod, child_name, CroppedDeconv(child))
                done.append("padded deconv -> deconv + crop")
    try:
        gm = torch.fx.symbolic_trace(model)
    except Exception:  # noqa: BLE001 - not traceable: the module as it is
        return model, done
    for node in gm.graph.nodes:
        if node.op == "call_method" and node.target == "repeat_interleave":
            node.op, node.target = "call_function", _repeat_channels
            done.append("repeat_interleave -> expand + reshape")
    gm.recompile()
    return gm, sorted(set(done))


def export_all(model: nn.Module, shape: tuple[int, ...], folder: Path) -> list[str]:
    """model.pkl / .onnx / .pt2, the rewritten model_peer.ts / .pt2 (pnnx, litert-torch), input.npy and PyTorch's
    ref.npy: each engine converts from one of these. Returns the rewrites applied for the peers."""
    folder.mkdir(parents=True, exist_ok=True)
    x = torch.from_numpy(np.random.default_rng(0).random(shape, dtype=np.float32))
    torch.save(model, folder / "model.pkl")
    peer_model, rewrites = peer_rewrites(model)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (x,), folder / "model.onnx", input_names=["input"], output_names=["output"],
                          dynamo=False, opset_version=17)
        torch.export.save(torch.export.export(model, (x,)), folder / "model.pt2")
        torch.export.save(torch.export.export(peer_model, (x,)), folder / "model_peer.pt2")
        torch.jit.trace(peer_model, (x,)).save(str(folder / "model_peer.ts"))
        np.save(folder / "input.npy", x.numpy())
        np.save(folder / "ref.npy", model(x).numpy())
    return rewrites


@dataclass
class Worker:
    """One engine's persistent process; `fail` holds why it could not convert or run the network."""

    engine: str
    proc: subprocess.Popen | None = None
    diff: float = float("nan")
    convert_s: float = float("nan")
    fail: str = ""
    times_ms: list[float] = field(default_factory=list)

    def time_one(self) -> float:
        assert self.proc and self.proc.stdin and self.proc.stdout
        self.proc.stdin.write("time\n")
        self.proc.stdin.flush()
        return float(self.proc.stdout.readline()) * 1e3

    def close(self) -> None:
        if self.proc and self.proc.poll() is None:
            try:
                self.proc.stdin.write("quit\n")  # type: ignore[union-attr]
                self.proc.stdin.flush()  # type: ignore[union-attr]
                self.proc.wait(timeout=30)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()


def start(engine: str, folder: Path, threads: int, peers_python: str, log: Path) -> Worker:
    """Start `engine`'s worker and wait until it has converted and checked the network."""
    python = sys.executable if engine in LOCAL else peers_python
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS=str(threads), TVM_NUM_THREADS=str(threads))
    w = Worker(engine)
    with open(log, "a") as err:
        w.proc = subprocess.Popen([python, str(WORKER), engine, str(folder), str(threads)], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, stderr=err, text=True, env=env, cwd=folder)
    line = w.proc.stdout.readline().split(maxsplit=2) if w.proc.stdout else []  # type: ignore[union-attr]
    if line[:1] == ["ready"]:
        w.diff, w.convert_s = float(line[1]), float(line[2])
    else:
        w.fail = " ".join(line[1:]) if line else f"worker exited ({w.proc.wait()}); see {log}"
        w.close()
    return w


def time_interleaved(workers: list[Worker], rounds: int, warmup: int = 2) -> None:
    """Round-robin timing with a pause before each call; the order rotates so no engine always follows another."""
    live = [w for w in workers if not w.fail]
    for r in range(warmup + rounds):
        order = live[r % len(live):] + live[:r % len(live)] if live else []
        for w in order:
            time.sleep(SETTLE_MS / 1e3)
            ms = w.time_one()
            if r >= warmup:
                w.times_ms.append(ms)
        print(f"  round {r + 1}/{warmup + rounds}", end="\r", file=sys.stderr, flush=True)
    print(file=sys.stderr)


def summarise(workers: list[Worker], macs: int) -> dict:
    """Per engine: median/min/max ms, GFLOP/s, max abs diff, and srprune/engine per-round ratio stats."""
    ours = next((w for w in workers if w.engine == "srprune" and not w.fail), None)
    out: dict = {}
    for w in workers:
        if w.fail:
            out[w.engine] = {"fail": w.fail}
            continue
        ms = np.asarray(w.times_ms)
        row = {"median_ms": float(np.median(ms)), "min_ms": float(ms.min()), "max_ms": float(ms.max()),
               "gflops": 2 * macs / (float(np.median(ms)) / 1e3) / 1e9, "max_abs_diff": w.diff,
               "convert_s": w.convert_s}
        if ours is not None:
            ratio = np.asarray(ours.times_ms) / ms
            row.update(ratio_median=float(np.median(ratio)), ratio_min=float(ratio.min()),
                       ratio_max=float(ratio.max()))
        out[w.engine] = row
    return out


def engine_versions(peers_python: str) -> str:
    """The installed version of each peer engine's package in the peers venv ("" where it cannot be asked)."""
    code = ("import importlib.metadata as m\n"
            f"for p in {PACKAGES!r}:\n"
            "    try: print(p, m.version(p))\n"
            "    except m.PackageNotFoundError: pass")
    try:
        out = subprocess.run([peers_python, "-c", code], capture_output=True, text=True, timeout=60, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return ""
    return ", ".join(out.splitlines())


def table(results: dict, ceilings: dict[int, float | None], rounds: int, input_shape: str, versions: str = "",
          section: str = "peers") -> str:
    """The markdown section: one row per network x threads x engine, then the best peer per row."""
    lines = ["## Peers: srprune vs the engines users deploy with", "",
             f"Machine: {machine(max(ceilings))}. FMA ceilings: "
             + ", ".join(f"{t} thread{'s' if t > 1 else ''} {c:.0f} GFLOP/s" if c else f"{t}: ?"
                         for t, c in ceilings.items())
             + f". Input {input_shape}, untrained seeded weights, median of {rounds} interleaved rounds, "
             "one persistent process per engine. Ratio = srprune / engine per round, median [min, max]: below 1 "
             "srprune is faster. Max diff = max |output - PyTorch|. GFLOP/s above the ceiling means the engine does "
             "fewer multiplications (Winograd). Command: `python benchmarks/peers.py --json peers.json "
             + doc_flag(section, "peers") + "` (peers from `make peers`"
             + (f": {versions}" if versions else "") + ").", "",
             "| network | threads | engine | median ms | min | max | GFLOP/s | % of ceiling | srprune / engine | "
             "max diff |", "| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    best: list[str] = []
    for net, by_threads in results.items():
        for threads, res in by_threads.items():
            for eng, r in res["engines"].items():
                if "fail" in r:
                    lines.append(f"| {net} | {threads} | {eng} | - | - | - | - | - | - | failed: {r['fail'].strip()} |")
                    continue
                ratio = (f"{r['ratio_median']:.2f} [{r['ratio_min']:.2f}, {r['ratio_max']:.2f}]"
                         if "ratio_median" in r else "-")
                lines.append(f"| {net} | {threads} | {eng} | {r['median_ms']:.1f} | {r['min_ms']:.1f} | "
                             f"{r['max_ms']:.1f} | {r['gflops']:.0f} | {of_ceiling(r['gflops'], ceilings[threads])} "
                             f"| {ratio} | {r['max_abs_diff']:.1e} |")
            peers = {e: r for e, r in res["engines"].items() if e in PEERS and "fail" not in r}
            if peers and "ratio_median" in next(iter(peers.values())):
                e, r = min(peers.items(), key=lambda kv: kv[1]["median_ms"])
                verdict = "<= 0.8 met" if r["ratio_median"] <= 0.8 else (
                    "<= 1.0 met, <= 0.8 not" if r["ratio_median"] <= 1.0 else "NOT met")
                best.append(f"- {net}, {threads} thread{'s' if threads > 1 else ''}: best peer {e}, srprune / {e} "
                            f"{r['ratio_median']:.2f} [{r['ratio_min']:.2f}, {r['ratio_max']:.2f}] ({verdict}).")
    return "\n".join(lines + ["", "Best peer per network (the kernel issue's goal: srprune / best peer <= 0.8):", *best])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", default="1,2", help="comma-separated thread counts")
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--networks", default=None, help="comma-separated subset of the networks")
    ap.add_argument("--engines", default=",".join(OURS + PEERS))
    ap.add_argument("--run", type=Path, default=None, help="also benchmark RUN/final/model.pt (a searched model)")
    ap.add_argument("--input", default="360x640", help="HxW of the low-resolution input")
    ap.add_argument("--peers-python", default=os.environ.get("SRPRUNE_PEERS_PYTHON", str(ROOT / ".venv-peers" / "bin"
                                                                                         / "python")))
    ap.add_argument("--json", type=Path, default=None)
    add_doc_arg(ap, "peers")
    args = ap.parse_args()

    threads = [int(t) for t in args.threads.split(",")]
    engines = [e for e in args.engines.split(",") if e]
    unknown = [e for e in engines if e not in OURS + PEERS]
    if unknown:
        sys.exit(f"error: unknown engine {unknown[0]!r}; known: {', '.join(OURS + PEERS)}")
    if "srprune" not in engines:
        sys.exit("error: --engines must include srprune (ratios are to srprune)")
    if any(e in PEERS for e in engines) and not Path(args.peers_python).exists():
        sys.exit(f"error: {args.peers_python}: no peers interpreter; run `make peers` or pass --peers-python")
    h, w = (int(v) for v in args.input.split("x"))
    shape = (1, 3, h, w)
    nets = select(networks(args.run), args.networks)

    results: dict = {}
    notes: list[str] = []
    with tempfile.TemporaryDirectory(prefix="srprune-peers-") as tmp:
        log = Path(tmp) / "workers.log"
        for name, model in nets.items():
            folder = Path(tmp) / name.replace(" ", "_").replace("(", "").replace(")", "")
            rewrites = export_all(model.eval(), shape, folder)
            macs = graph_macs(model, shape)
            results[name] = {}
            if rewrites:
                notes.append(f"- {name}: for ncnn and LiteRT, {'; '.join(rewrites)} (exact; see peer_rewrites).")
            for t in threads:
                print(f"== {name}, {t} thread{'s' if t > 1 else ''}", file=sys.stderr, flush=True)
                workers = []
                try:
                    for eng in engines:
                        workers.append(start(eng, folder, t, args.peers_python, log))
                        st = workers[-1]
                        print(f"  {eng}: {'failed: ' + st.fail if st.fail else f'ready, max diff {st.diff:.1e}'}",
                              file=sys.stderr, flush=True)
                    time_interleaved(workers, args.rounds)
                finally:
                    for wk in workers:
                        wk.close()
                results[name][t] = {"macs": macs, "engines": summarise(workers, macs)}
        if log.exists() and log.stat().st_size:
            print(f"(worker logs: {len(log.read_text().splitlines())} lines, not kept)", file=sys.stderr)
    ceilings = {t: fma_ceiling_gflops(t) for t in threads}
    text = table(results, ceilings, args.rounds, f"1x3x{h}x{w}", engine_versions(args.peers_python),
                 doc_section(args.doc, "peers"))
    if notes:
        text += "\n\nRewrites (equivalent graphs for converters that lack an operator):\n" + "\n".join(notes)
    publish(text, results, "peers", args.json, args.doc)


if __name__ == "__main__":
    main()
