"""Pruned layers of the latency table: the compiler's old look-alike weights vs the search pruner's masks.

Issue 17 item 5. The table times a few pruned layers per scheme (srprune.search.latency_stage.sparse_configs)
and the predictor carries their speed factor (pruned / dense twin) to every pruned layer. Until 2026-12-06 the
compiler made the weights of those layers itself (`old_weight` below, kept verbatim: whole random
(rows x cols) blocks zeroed; a fixed list of 6 four-tap patterns); now they come from the search's pruner
(`pruned_weight`: the same columns dropped in every block, balanced over blocks; a learned library of at
most 8 patterns per layer). This builds every pruned layer of the demo's space (configs/demo.yaml) on both
weights, plus the dense twin, times all of them round-robin in one run (one call each per round, after a
warm-up) and reports per layer: median/min/max of each, the per-round ratio new/old, and the speed factors
old/dense and new/dense. The predicted time of any pruned layer of that scheme and ratio changes by
factor_new / factor_old = new / old (the dense twin is the same), estimated by the per-round new/old.

Usage: python benchmarks/latency_masks.py [--rounds R] [--threads N] [--json FILE] [--doc] [--config CFG]
       python benchmarks/latency_masks.py --reuse FILE [--doc]   (report a --json file without measuring)
(--doc rewrites the `latency_masks` section of docs/benchmarks.md.)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._report import add_timing_args, machine, publish  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
# Reading of the run in docs/benchmarks.md (written by hand after it; update it with the numbers when re-running).
NOTES = (
    "Reading (2026-12-06). An earlier run the same day (60 rounds, load average 4.3 to 7.2) gave new/old per ratio: "
    "block 4x8 k3 0.997 / 1.037 / 1.107, pattern k3 1.022 / 0.992, block 4x8 k1 0.989 / 0.934 / 0.970. Where a change "
    "exceeds the controls it has the same sign in both runs. Block 4x8 3x3 at 75%: the pruner's masks run about 8-11% "
    "slower than whole random blocks (likely because balanced pruning keeps 2 of every 8 columns in every block, so "
    "a tile reads rows of every input channel, where whole kept blocks touch fewer; and 324 vs 320 kept columns); "
    "at 50% no change. Pattern: +2-3% at 0.5556, within noise at 0.75. 1x1 block: about 5% faster with the "
    "pruner's masks, but these are the noisiest layers here (bimodal times under load), and at 24 channels their "
    "sparse kernels are not clearly faster than dense at all. So predictions for pruned layers move by up to about "
    "10% (a network's prediction by that times its share of time in pruned layers). Tables built before this change "
    "re-measure their pruned entries on the next build (`pruned_weights` in the table header)."
)


def old_weight(cfg, rng: np.random.Generator) -> np.ndarray:
    """The weight compiler.latency.measure.structured_weight made before 2026-12-06 (kept here as the baseline).

    block: whole (rows x cols) blocks of the (out x in*kh*kw) matrix zeroed at random; pattern: every kept
    3x3 kernel keeps 4 taps from a fixed list of 6 patterns, whole kernels removed at random to the ratio.
    """
    cout, cin, k = cfg.cout, cfg.cin // cfg.groups, cfg.k
    w = rng.standard_normal((cout, cin, k, k)).astype(np.float32)
    keep = 1.0 - cfg.ratio
    if cfg.scheme == "block":
        rows, cols = cfg.block
        mat = w.reshape(cout, -1)
        nb = (cout // rows) * (mat.shape[1] // cols)
        kept = np.zeros(nb, bool)
        kept[rng.permutation(nb)[: max(1, round(keep * nb))]] = True
        mask = np.repeat(np.repeat(kept.reshape(cout // rows, -1), rows, 0), cols, 1)
        return (mat * mask).reshape(w.shape)
    patterns = [(1, 3, 4, 5), (1, 4, 5, 7), (3, 4, 5, 7), (1, 3, 4, 7), (0, 1, 3, 4), (1, 2, 4, 5)]
    taps = np.zeros((cout * cin, 9), bool)
    for i, p in enumerate(rng.integers(len(patterns), size=cout * cin)):
        taps[i, list(patterns[p])] = True
    n_kernels = max(1, round(keep * 9 / 4 * cout * cin))
    taps[rng.permutation(cout * cin)[n_kernels:]] = False
    return w * taps.reshape(cout, cin, 3, 3)


def _kernel(cfg, weight: np.ndarray, target) -> dict:
    """What the compiler makes of this weight: sparse plan (tile, kept columns, code size) or the dense kernel."""
    from compiler import sparse
    from compiler.latency.measure import conv_spec

    plan = sparse.choose_kernel(conv_spec(cfg), weight, target.vec, target.registers)
    if plan is None:
        return {"kernel": "dense"}
    return {"kernel": "sparse", "oc_tile": plan.oc_tile, "nvec": plan.nvec, "kept_columns": plan.kept_columns(),
            "unrolled": plan.unrolled()}


def run(config: Path, rounds: int, threads: int | None) -> dict:
    """Build the dense twins and every pruned layer on both weights, time them interleaved, return the stats."""
    from compiler.latency.config import LayerConfig
    from compiler.latency.measure import build_layer
    from compiler.latency.runners import LocalRunner, interleaved
    from compiler.targets import get_target
    from srprune.frame import parse_size
    from srprune.search.config import load
    from srprune.search.latency_stage import pruned_weight, sparse_configs
    from supernet.space import SearchSpace

    cfg = load(config, run_dir=Path("/tmp/unused"))
    target = get_target(cfg["target"], threads or cfg["threads"])
    w, h = parse_size(cfg["output_size"])
    space = SearchSpace.from_dict(cfg["supernet"]["space"])
    configs = sparse_configs(space, cfg["search"], (h, w))
    items = []  # (config, variant, built, kernel info, compile s)
    load0 = os.getloadavg()
    for c in configs:
        variants = [("dense", None)] if c.scheme == "dense" else \
            [("old", old_weight(c, np.random.default_rng(0))), ("new", pruned_weight(c))]
        for name, weight in variants:
            t0 = time.perf_counter()
            built = build_layer(c, target, weight=weight)
            sec = time.perf_counter() - t0
            info = _kernel(c, weight, target) if weight is not None else {"kernel": "dense"}
            print(f"[build] {c.key()} {name}: {info['kernel']} in {sec:.1f} s", file=sys.stderr, flush=True)
            items.append((c, name, built, info, sec))
    runner = LocalRunner(target.threads)
    timers = [runner.timer(b) for _, _, b, _, _ in items]  # one warm-up call each
    t0 = time.perf_counter()
    samples = interleaved(timers, rounds)
    timing_s = time.perf_counter() - t0
    by = {(c.key(), name): (c, info, sec, np.asarray(s)) for (c, name, _, info, sec), s in zip(items, samples)}

    def stats(s: np.ndarray) -> dict:
        return {"median_ms": float(np.median(s)), "min_ms": float(s.min()), "max_ms": float(s.max())}

    rows = []
    for c in configs:
        if c.scheme == "dense":
            continue
        twin = LayerConfig(**{**c.to_dict(), "scheme": "dense", "ratio": 0.0, "block": (0, 0)})
        dense = by[(twin.key(), "dense")][3]
        (_, old_info, old_s, old), (_, new_info, new_s, new) = by[(c.key(), "old")], by[(c.key(), "new")]
        ratio = new / old
        kind = f"block {c.block[0]}x{c.block[1]}" if c.scheme == "block" else c.scheme
        rows.append({"layer": c.key(), "kind": f"{kind} k{c.k}", "ratio": c.ratio,
                     "old": {**stats(old), **old_info, "compile_s": old_s},
                     "new": {**stats(new), **new_info, "compile_s": new_s}, "dense": stats(dense),
                     "new_over_old": {"median": float(np.median(ratio)), "min": float(ratio.min()),
                                      "max": float(ratio.max())},
                     "factor_old": float(np.median(old) / np.median(dense)),
                     "factor_new": float(np.median(new) / np.median(dense))})
    kinds = {}
    for r in rows:
        kinds.setdefault(r["kind"], []).append(r)
    summary = {}
    for kind, rs in kinds.items():
        per_round = np.concatenate([by[(r["layer"], "new")][3] / by[(r["layer"], "old")][3] for r in rs])
        summary[kind] = {"layers": len(rs), "new_over_old_median": float(np.median(per_round)),
                         "new_over_old_min": float(per_round.min()), "new_over_old_max": float(per_round.max())}
    return {"machine": machine(target.threads), "threads": target.threads, "rounds": rounds,
            "config": str(config), "output_size": [w, h], "lr_size": [configs[0].w, configs[0].h],
            "loadavg_start": list(load0), "loadavg_end": list(os.getloadavg()), "timing_s": timing_s,
            "rows": rows, "kinds": summary}


def _kernel_cell(info: dict) -> str:
    if info["kernel"] == "dense":
        return "dense fallback"
    return f"sparse, tile {info['oc_tile']}x{info['nvec']}v, {info['kept_columns']} cols"


def markdown(res: dict) -> str:
    """The `latency_masks` section of docs/benchmarks.md."""
    w, h = res["output_size"]
    lw, lh = res["lr_size"]
    la, lb = res["loadavg_start"], res["loadavg_end"]
    lines = [
        "## Latency table: pruned layers timed on the pruner's masks vs the old look-alike weights", "",
        f"Machine: {res['machine']}; {res['rounds']} interleaved rounds (one "
        "call of every layer per round, after one warm-up call each). Other processes were running during the "
        f"whole run (two other agents' test suites; load average {la[0]:.1f} at the start, {lb[0]:.1f} at the end), "
        "so absolute times are under load; the ratios are per round of the interleaved timing, so load hits both "
        f"sides of a ratio alike. Command: `python benchmarks/latency_masks.py --rounds {res['rounds']} --doc` "
        f"({res.get('wall_s', 0):.0f} s, of which {res['timing_s']:.0f} s timing and the rest compiling).", "",
        f"Layers: every pruned layer the latency table of `{res['config']}` times (`sparse_configs`: the middle "
        f"trunk width, ReLU, for each kernel size, scheme, block size and ratio the search can pick) at the "
        f"{lw}x{lh} LR size of a {w}x{h} output, each built with `compiler.latency.measure.build_layer` on "
        "`old` = the weights the compiler generated itself until now (whole random 4x8 blocks zeroed; 4-tap "
        "patterns from a fixed list of 6, random kernels removed) and `new` = `pruned_weight` (the search's pruner "
        "on a seeded random weight: the same columns dropped in every block, balanced over blocks; a learned library "
        "of at most 8 patterns). `new/old` = per-round ratio, median [min, max]; `factor` = median pruned / median "
        "dense twin, the speed factor the predictor multiplies a pruned layer's dense time by. A prediction for a "
        "pruned layer of that kind and ratio changes by factor new / factor old = new / old (same dense twin), "
        "best estimated by the per-round `new/old` (a ratio of separate medians is noisier: see the controls).", "",
        "| layer kind | ratio | old kernel | new kernel | dense ms | old ms (median [min, max]) | "
        "new ms (median [min, max]) | new/old | factor old | factor new |",
        "| --- | ---: | --- | --- | ---: | --- | --- | --- | ---: | ---: |",
    ]
    for r in res["rows"]:
        o, n, q = r["old"], r["new"], r["new_over_old"]
        lines.append(
            f"| {r['kind']} | {r['ratio']:.4g} | {_kernel_cell(o)} | {_kernel_cell(n)} | {r['dense']['median_ms']:.2f} | "
            f"{o['median_ms']:.2f} [{o['min_ms']:.2f}, {o['max_ms']:.2f}] | "
            f"{n['median_ms']:.2f} [{n['min_ms']:.2f}, {n['max_ms']:.2f}] | "
            f"{q['median']:.3f} [{q['min']:.2f}, {q['max']:.2f}] | {r['factor_old']:.3f} | {r['factor_new']:.3f} |")
    controls = [r for r in res["rows"] if r["old"]["kernel"] == r["new"]["kernel"] == "dense"]
    if controls:
        lines += ["", "Controls: " + ", ".join(f"{r['kind']} at {r['ratio']:.4g}" for r in controls) + " keep "
                  "too many weights for a sparse kernel, so both weights run the same dense code; their new/old "
                  "(" + ", ".join(f"{r['new_over_old']['median']:.3f}" for r in controls) + ") is the noise of a "
                  "per-round ratio in this run, their factor new / factor old ("
                  + ", ".join(f"{r['factor_new'] / r['factor_old']:.3f}" for r in controls) + ") that of a ratio "
                  "of medians."]
    lines += ["", "Per layer kind (all its ratios; per-round new/old pooled):", ""]
    for kind, s in res["kinds"].items():
        per = ", ".join(f"{r['ratio']:.4g}: {r['new_over_old']['median']:.3f}" for r in res["rows"] if r["kind"] == kind)
        lines.append(f"- {kind}: new/old {s['new_over_old_median']:.3f} [{s['new_over_old_min']:.2f}, "
                     f"{s['new_over_old_max']:.2f}] over {s['layers']} layers x {res['rounds']} rounds; "
                     f"per ratio (median): {per}")
    if NOTES:
        lines += ["", NOTES]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_timing_args(ap, "latency_masks")
    ap.set_defaults(rounds=40)
    ap.add_argument("--config", type=Path, default=ROOT / "configs" / "demo.yaml")
    ap.add_argument("--reuse", type=Path, default=None, help="report this --json file of an earlier run")
    args = ap.parse_args()
    if args.reuse:
        publish(markdown(json.loads(args.reuse.read_text())), None, "latency_masks", None, args.doc)
        return
    t0 = time.time()
    res = run(args.config, args.rounds, args.threads)
    res["config"] = os.path.relpath(args.config, ROOT)
    res["wall_s"] = time.time() - t0
    print(f"[bench] {res['wall_s']:.0f} s in all, {res['timing_s']:.1f} s timing", file=sys.stderr)
    publish(markdown(res), res, "latency_masks", args.json, args.doc)


if __name__ == "__main__":
    main()
