"""How steady this machine times a compiled network, and how often the compile stage's rule would replan on noise.

Records a trace: a c-lib (`--clib FOLDER` with its srmodel_bench: RUN/compiled/host of an int8 run) run back to back
for `--seconds`, each run a fresh process as the compile stage times it (compiler.clib.runner.process_timer), with
the fp32 FMA probe (benchmarks/fma_ceiling.py) timed after every tenth run: a probe that stays steady while the
network does not says the noise is not the core's clock or stolen cycles (so scaling by the probe cannot remove it).

From the trace, for windows of 10 s: the network's median, 25th percentile and minimum, and the probe's median; for
estimators over many start times: the spread of the median and of the minimum of 25 runs back to back, of 25 runs
paced over a span, and of 50 over two spans; and the share of start times at which each rule of the compile stage
finds a network whose true (whole-trace) median fills 88%, 92% or 96% of a budget outside the search window
[min_fill, 1] x budget, i.e. would replan although the prediction was right:
- one burst: the median of 25 runs back to back (the stage before `latency.span_s`);
- span: the median of 25 runs paced over `--span` seconds (the stage's first timing);
- span + again: as span, and when outside the window, pooled with 25 more paced over the next span (the stage now).

Usage: python benchmarks/measurement_noise.py --clib RUN/compiled/host [--seconds 240] [--span 20] [--threads N]
                                              [--json FILE] [--doc]
(--doc rewrites the `measurement_noise` section of docs/benchmarks.md.)
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._report import add_doc_arg, machine, publish  # noqa: E402

ROUNDS = 25  # the compile stage's rounds (srprune.search.stages.compile.compile_final)
FILLS = (0.88, 0.92, 0.96)
MIN_FILL = 0.85  # search.min_fill's default
WINDOW_S = 10.0


def record(clib: Path, seconds: float, threads: int, probe_every: int = 10) -> dict:
    """(t, ms) of every network run and of every probe run over `seconds`."""
    from benchmarks.fma_ceiling import ProbeTimer
    from compiler.clib.runner import process_timer

    net = process_timer(clib, threads)
    probe = ProbeTimer(threads)
    runs, probes = [], []
    start = time.monotonic()
    while time.monotonic() - start < seconds:
        runs.append((time.monotonic() - start, net(1)[0]))
        if len(runs) % probe_every == 0:
            probes.append((time.monotonic() - start, probe(1)[0]))
        if len(runs) % 200 == 0:
            print(f"  {time.monotonic() - start:.0f}/{seconds:g} s, {len(runs)} runs", file=sys.stderr, flush=True)
    return {"runs": runs, "probes": probes}


def paced(runs: list[tuple[float, float]], start: int, n: int, span_s: float) -> list[float] | None:
    """The n runs from index `start` on that come first at or after start + span x r / (n - 1), r = 0..n-1 (the
    compile stage's pacing), or None when the trace ends first."""
    t0 = runs[start][0]
    out, i = [], start
    for r in range(n):
        due = t0 + span_s * r / (n - 1)
        while i < len(runs) and runs[i][0] < due:
            i += 1
        if i >= len(runs):
            return None
        out.append(runs[i][1])
        i += 1
    return out


def rules(runs: list[tuple[float, float]], span_s: float, lo: float, hi: float) -> dict[str, list[float]]:
    """Each rule's measured median from every tenth start index (where the trace is long enough for it)."""
    out: dict[str, list[float]] = {"one burst": [], "span": [], "span + again": []}
    for s in range(0, len(runs), 10):
        burst = [ms for _, ms in runs[s:s + ROUNDS]]
        first = paced(runs, s, ROUNDS, span_s)
        # the stage's second timing: 25 more at the first's pace (span / 24 apart), so 50 over 49 / 24 spans
        both = paced(runs, s, 2 * ROUNDS, span_s * (2 * ROUNDS - 1) / (ROUNDS - 1))
        if len(burst) < ROUNDS or first is None or both is None:
            break
        out["one burst"].append(statistics.median(burst))
        m = statistics.median(first)
        out["span"].append(m)
        out["span + again"].append(m if lo <= m <= hi else statistics.median(both))
    return out


def spread(values: list[float]) -> dict[str, float]:
    v = sorted(values)
    return {"median": statistics.median(v), "p5": v[len(v) // 20], "p95": v[-len(v) // 20 - 1], "min": v[0],
            "max": v[-1]}


def analyse(trace: dict, span_s: float) -> dict:
    runs, probes = trace["runs"], trace["probes"]
    ms = [m for _, m in runs]
    truth = statistics.median(ms)
    windows = []
    for w0 in range(0, int(runs[-1][0]), int(WINDOW_S)):
        seg = [m for t, m in runs if w0 <= t < w0 + WINDOW_S]
        pseg = [m for t, m in probes if w0 <= t < w0 + WINDOW_S]
        if len(seg) >= 8:
            windows.append({"start_s": w0, "runs": len(seg), "median_ms": statistics.median(seg),
                            "p25_ms": statistics.quantiles(seg, n=4)[0], "min_ms": min(seg),
                            "probe_ms": statistics.median(pseg) if pseg else None})
    estimators = {}
    for name, n, pick in (("25 back to back", ROUNDS, lambda s: [m for _, m in runs[s:s + ROUNDS]]),
                          (f"25 over {span_s:g} s", ROUNDS, lambda s: paced(runs, s, ROUNDS, span_s)),
                          (f"50 over {2 * span_s:g} s", 2 * ROUNDS, lambda s: paced(runs, s, 2 * ROUNDS, 2 * span_s))):
        picks = [p for p in (pick(s) for s in range(0, len(runs), 10)) if p is not None and len(p) == n]
        estimators[name] = {"median": spread([statistics.median(p) for p in picks]),
                            "min": spread([min(p) for p in picks]), "starts": len(picks)}
    replans = []
    for fill in FILLS:
        budget = truth / fill
        lo, hi = MIN_FILL * budget, budget
        got = rules(runs, span_s, lo, hi)
        replans.append({"fill": fill, **{k: sum(not lo <= m <= hi for m in v) / len(v) for k, v in got.items()},
                        "starts": len(got["span"])})
    probe_ms = [m for _, m in probes]
    return {"truth_ms": truth, "runs": len(ms), "seconds": runs[-1][0], "min_ms": min(ms), "max_ms": max(ms),
            "probe": spread(probe_ms) if probe_ms else None, "windows": windows, "estimators": estimators,
            "replans": replans}


def to_markdown(res: dict) -> str:
    a = res["analysis"]
    lines = ["## Measurement noise: timing a compiled network on this machine, and the compile stage's rule", "",
             f"Machine: {res['machine']}. {res['clib_note']} run back to back for "
             f"{a['seconds']:.0f} s ({a['runs']} runs, each a fresh process as the compile stage times it: "
             f"median {a['truth_ms']:.2f} ms, min {a['min_ms']:.2f}, max {a['max_ms']:.2f}), the fp32 FMA probe "
             f"timed after every tenth run. Command: `python benchmarks/measurement_noise.py --clib RUN/compiled/host "
             f"--seconds {res['seconds']:g} --span {res['span_s']:g} --doc`.", "",
             "| window (s) | runs | network median ms | p25 | min | FMA probe median ms |",
             "| ---: | ---: | ---: | ---: | ---: | ---: |"]
    for w in a["windows"]:
        probe = f"{w['probe_ms']:.2f}" if w["probe_ms"] is not None else "-"
        lines.append(f"| {w['start_s']}-{w['start_s'] + WINDOW_S:g} | {w['runs']} | {w['median_ms']:.2f} | "
                     f"{w['p25_ms']:.2f} | {w['min_ms']:.2f} | {probe} |")
    lines += ["", "Estimators from every tenth start of the trace (value at the median start [5th, 95th percentile "
              "of starts]):", "", "| runs | their median | their minimum |", "| --- | --- | --- |"]
    for name, e in a["estimators"].items():
        m, n = e["median"], e["min"]
        lines.append(f"| {name} | {m['median']:.2f} [{m['p5']:.2f}, {m['p95']:.2f}] | "
                     f"{n['median']:.2f} [{n['p5']:.2f}, {n['p95']:.2f}] |")
    lines += ["", f"Share of starts at which a rule measures a network outside the window [{MIN_FILL:g}, 1] x budget "
              "(a replan) although its true median (the whole trace's) fills the given share of the budget:", "",
              "| true fill | one burst (before) | span | span + again (the compile stage now) | starts |",
              "| ---: | ---: | ---: | ---: | ---: |"]
    for r in a["replans"]:
        lines.append(f"| {r['fill']:.0%} | {r['one burst']:.0%} | {r['span']:.0%} | {r['span + again']:.0%} | "
                     f"{r['starts']} |")
    p = a["probe"]
    if p:
        lines += ["", f"FMA probe over the trace: median {p['median']:.2f} ms [5th, 95th percentile {p['p5']:.2f}, "
                  f"{p['p95']:.2f}]."]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clib", type=Path, required=True, help="a host c-lib folder (libsrmodel.so + srmodel_bench)")
    ap.add_argument("--seconds", type=float, default=240.0)
    ap.add_argument("--span", type=float, default=20.0, help="latency.span_s to simulate")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", type=Path, default=None)
    add_doc_arg(ap, "measurement_noise")
    args = ap.parse_args()
    if not (args.clib / "srmodel_bench").is_file():
        sys.exit(f"error: {args.clib}: no srmodel_bench (a host c-lib folder, e.g. RUN/compiled/host of an int8 run)")
    import json

    manifest = json.loads((args.clib / "manifest.json").read_text()) if (args.clib / "manifest.json").is_file() else {}
    trace = record(args.clib, args.seconds, args.threads)
    res = {"machine": machine(args.threads), "threads": args.threads, "seconds": args.seconds, "span_s": args.span,
           "clib_note": f"A c-lib ({manifest.get('precision', 'fp32')}{' + fp32' if manifest.get('fp32_layers') else ''}"
                        f", {manifest.get('kernels', '?')} kernels, input "
                        f"{'x'.join(map(str, manifest.get('input', {}).get('shape', [])))})",
           "trace": trace, "analysis": analyse(trace, args.span)}
    publish(to_markdown(res), res, "measurement_noise", args.json, args.doc)


if __name__ == "__main__":
    main()
