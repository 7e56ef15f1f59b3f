"""Glue between the search space and the compiler's latency model: genome/model -> layer configurations.

Why here: `compiler` must not know the supernet, and `supernet` must not import the compiler; this
module knows both. The mapping mirrors what `compiler.rewrite` makes of a deployed GenomeNet (read
its Relax IR: one kernel per conv chain, conv + bias + act + residual; a channel pad/slice for a skip
across a width change; tail conv + bicubic skip + PixelShuffle left to TVM's lowering):

    head    conv3x3 3->head (+bias)
    conv    conv3x3 cin->w +act                         (deployed: W + identity folded in)
    ecb     conv3x3 cin->w +act                         (deployed: branches collapsed)
    res     conv3x3 cin->l0 +act; [adapter cin->w]; conv3x3 l0->w +residual
    wide    conv1x1 cin->l0 +act; conv1x1 l0->l1; [adapter]; conv3x3 l1->w +residual
    dws     dwconv3x3 cin->cin; [adapter]; conv1x1 cin->w +act +residual
    tail    tail(w, scale)

All cells run at the LR size of the frame: floor(output / scale), as for MACs (DESIGN.md).
"""

from __future__ import annotations

import statistics
from collections.abc import Iterator
from typing import Any

import numpy as np

from compiler.latency.config import LayerConfig
from srprune.errors import InputError
from supernet.space import BLOCKS, Genome, SearchSpace

HD_720P = (720, 1280)  # (H, W) of the output frame


def lr_size(out_hw: tuple[int, int], scale: int) -> tuple[int, int]:
    """The LR input (H, W) of an output frame."""
    h, w = out_hw[0] // scale, out_hw[1] // scale
    if h < 1 or w < 1:
        raise InputError(f"output size {out_hw[1]}x{out_hw[0]} is smaller than one input pixel at x{scale}")
    return h, w


def _conv(cin: int, cout: int, hw: tuple[int, int], k: int = 3, *, groups: int = 1, act: str = "none",
          residual: bool = False, prune: dict | None = None) -> LayerConfig:
    p = prune or {}
    return LayerConfig("conv", cin, cout, hw[0], hw[1], k=k, groups=groups, pad=k // 2, bias=True, act=act,
                       residual=residual, scheme=p.get("scheme", "dense"), ratio=float(p.get("ratio", 0.0)),
                       block=tuple(p.get("block", (0, 0))))


def _cell_layers(block: str, cin: int, width: int, layers: list[int], act: str, hw: tuple[int, int],
                 prefix: str, prune: dict[str, dict]) -> Iterator[tuple[str, LayerConfig]]:
    """(module name in the deployed GenomeNet, config) of one cell's layers, in execution order."""
    def p(name: str) -> dict | None:
        return prune.get(f"{prefix}.{name}")

    if block == "skip":
        return
    adapter = [(f"{prefix}.skip", LayerConfig("adapter", cin, width, hw[0], hw[1], k=1, pad=0, bias=False))] \
        if cin != width else []
    if block in ("conv", "ecb", "plain"):
        yield f"{prefix}.conv", _conv(cin, width, hw, act=act, prune=p("conv"))
    elif block == "res":
        yield f"{prefix}.c1", _conv(cin, layers[0], hw, act=act, prune=p("c1"))
        yield from adapter
        yield f"{prefix}.c2", _conv(layers[0], width, hw, residual=True, prune=p("c2"))
    elif block == "wide":
        yield f"{prefix}.ex", _conv(cin, layers[0], hw, 1, act=act, prune=p("ex"))
        yield f"{prefix}.rd", _conv(layers[0], layers[1], hw, 1, prune=p("rd"))
        yield from adapter
        yield f"{prefix}.c3", _conv(layers[1], width, hw, residual=True, prune=p("c3"))
    elif block == "dws":
        yield f"{prefix}.dw", _conv(cin, cin, hw, groups=cin, prune=p("dw"))
        yield from adapter
        yield f"{prefix}.pw", _conv(cin, width, hw, 1, act=act, residual=True, prune=p("pw"))
    else:
        raise InputError(f"unknown block type {block!r}")


def named_genome_layers(genome: Genome | dict, out_hw: tuple[int, int] = HD_720P,
                        prune: dict[str, dict] | None = None) -> list[tuple[str, LayerConfig]]:
    """(name, config) of every layer of the deployed network of `genome` for an output of `out_hw`.

    `prune` maps deployed module names (e.g. "cells.0.c1") to {"scheme", "ratio", "block"}; layers it
    does not name are dense.
    """
    g = Genome.coerce(genome)
    hw = lr_size(out_hw, g.scale)
    prune = prune or {}
    out = [("head", _conv(3, g.head, hw, prune=prune.get("head")))]
    for i, (cin, c) in enumerate(zip(g.widths_in(), g.cells)):
        out.extend(_cell_layers(c.block, cin, c.width, c.layers, g.activation, hw, f"cells.{i}", prune))
    out.append(("tail", LayerConfig("tail", g.out_width, 3 * g.scale**2, hw[0], hw[1], k=3, pad=1,
                                    scale=g.scale)))
    return out


def latency_prune(prune: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """A searched candidate's {layer: {scheme, ratio, block}} as `named_genome_layers` takes it (ratio 0 = dense)."""
    return {name: {"scheme": p["scheme"], "ratio": p["ratio"], "block": tuple(p.get("block") or (0, 0))}
            for name, p in prune.items() if p.get("ratio", 0) > 0}


def genome_layers(genome: Genome | dict, out_hw: tuple[int, int] = HD_720P,
                  prune: dict[str, dict] | None = None) -> list[LayerConfig]:
    """The layer configurations of `genome` (see `named_genome_layers`)."""
    return [c for _, c in named_genome_layers(genome, out_hw, prune)]


def space_layers(space: SearchSpace, out_hw: tuple[int, int] = HD_720P) -> list[LayerConfig]:
    """Every distinct layer configuration a genome of `space` can produce at `out_hw` (dense), sorted by cost.

    Cheapest first, so an interrupted build has covered as many configurations as it could.
    """
    act = space.activation
    seen: dict[str, LayerConfig] = {}
    for scale in space.scales:
        hw = lr_size(out_hw, scale)
        for w in space.widths:
            for c in [_conv(3, w, hw), LayerConfig("tail", w, 3 * scale**2, hw[0], hw[1], k=3, pad=1, scale=scale)]:
                seen.setdefault(c.key(), c)
        for block in space.blocks:
            if block == "skip":
                continue
            choices = [space.layer_choices(block, i) for i in range(BLOCKS[block])]
            inner = [[]] if not choices else ([[a] for a in choices[0]] if len(choices) == 1
                                               else [[a, b] for a in choices[0] for b in choices[1]])
            for cin in space.widths:
                for width in space.widths:
                    for layers in inner:
                        for _, c in _cell_layers(block, cin, width, layers, act, hw, "x", {}):
                            seen.setdefault(c.key(), c)
    return sorted(seen.values(), key=lambda c: (c.macs() + c.elements(), c.key()))


def model_layers(model: Any, out_hw: tuple[int, int] = HD_720P, meta: dict | None = None) -> list[LayerConfig]:
    """Layer configurations of a GenomeNet (a `genome` model); other architectures are refused.

    Pruned files keep their dense shapes until the compiler has sparse kernels, so they time as dense.
    """
    genome = getattr(model, "genome", None)
    if not isinstance(genome, dict):
        raise InputError(f"latency prediction needs a searched network (a 'genome' model), "
                         f"got {type(model).__name__}")
    return genome_layers(genome, out_hw)


# --- whole-network measurements: calibration and validation ------------------------------------------


def random_genomes(space: SearchSpace, n: int, seed: int, scale: int | None = None) -> list[Genome]:
    """`n` distinct random genomes of `space` (seeded)."""
    rng = np.random.default_rng(seed)
    out, seen = [], set()
    for _ in range(50 * n):
        g = space.sample(rng, scale)
        if g.to_json() not in seen:
            seen.add(g.to_json())
            out.append(g)
        if len(out) == n:
            break
    return out


def measure_genomes(genomes: list[Genome], target: Any, runner: Any, out_hw: tuple[int, int] = HD_720P, *,
                    rounds: int = 5, group: int = 5, progress: bool = True, seed: int = 0) -> list[dict]:
    """Whole-network median milliseconds of each genome's deployed GenomeNet, compiled with compile_model.

    Why groups and rounds: the machine is shared, so networks of a group are timed round-robin (one
    run each per round, `rounds` rounds) and compared by their medians; groups bound the memory of
    the compiled networks held at once.
    """
    import torch

    from compiler.latency.measure import build_model, interleaved
    from srcommon.progress import progress_bar
    from supernet.standalone import GenomeNet

    results: list[dict] = []
    bar = progress_bar(total=len(genomes), desc="networks", unit="net", disable=not progress)
    try:
        for start in range(0, len(genomes), group):
            chunk = genomes[start:start + group]
            built = []
            for g in chunk:
                torch.manual_seed(seed)
                net = GenomeNet(g).deploy().eval()
                h, w = lr_size(out_hw, g.scale)
                built.append(build_model(net, (1, 3, h, w), target))
            timers = [runner.timer(b) for b in built]  # loads and warms up each network once
            samples = interleaved(timers, rounds)
            for g, s in zip(chunk, samples):
                results.append({"genome": g.to_dict(), "measured_ms": statistics.median(s), "samples_ms": s})
            del built, timers
            bar.update(len(chunk))
    finally:
        bar.close()
    return results


def mape(pred: list[float], meas: list[float]) -> float:
    """Mean absolute percentage error, in percent."""
    p, m = np.asarray(pred, float), np.asarray(meas, float)
    return float(np.mean(np.abs(p - m) / m) * 100.0)


def spearman(a: list[float], b: list[float]) -> float:
    """Spearman rank correlation (average ranks for ties), from its definition."""
    def ranks(x: np.ndarray) -> np.ndarray:
        order = np.argsort(x, kind="mergesort")
        r = np.empty(len(x), float)
        r[order] = np.arange(len(x), dtype=float)
        for v in np.unique(x):
            idx = np.where(x == v)[0]
            r[idx] = r[idx].mean()
        return r

    ra, rb = ranks(np.asarray(a, float)), ranks(np.asarray(b, float))
    ra, rb = ra - ra.mean(), rb - rb.mean()
    den = float(np.sqrt((ra**2).sum() * (rb**2).sum()))
    return float((ra * rb).sum() / den) if den else 0.0


# --- run-folder workflows (what `srprune latency build|predict|validate` do) -------------------------


def make_runner(target: Any, rpc: str | None = None, timeout: float = 30.0) -> Any:
    """In-process for host targets; over TVM RPC when `rpc` (rpc://HOST:PORT[/KEY]) is given."""
    from compiler.latency.measure import LocalRunner, RPCRunner

    if rpc:
        runner = RPCRunner.from_url(rpc, threads=target.threads, timeout=timeout)
        runner.session()  # a dead or silent server fails here, before any compiling
        return runner
    if target.cross:
        raise InputError(f"target {target.name} is cross-compiled: measure it on the device with --rpc rpc://HOST:PORT")
    return LocalRunner(target.threads)


def calibration_path(run_dir: Any, target: str) -> Any:
    """RUN/latency/TARGET/predictor.json."""
    from compiler.latency.predict import CALIBRATION_FILE
    from compiler.latency.table import table_path

    return table_path(run_dir, target).parent / CALIBRATION_FILE


def build_table(run_dir: Any, target: Any, runner: Any, space: SearchSpace, out_hw: tuple[int, int] = HD_720P, *,
                repeat: int = 5, progress: bool = True) -> tuple[Any, int]:
    """Measure every layer of `space` at `out_hw` missing from RUN/latency/TARGET/table.json (resumes)."""
    from compiler.latency.measure import measure_into
    from compiler.latency.table import open_table, table_path

    table = open_table(table_path(run_dir, target.name), target.name, target.threads)
    n = measure_into(table, space_layers(space, out_hw), target, runner, repeat=repeat, progress=progress)
    return table, n


def calibrate(run_dir: Any, target: Any, runner: Any, space: SearchSpace, out_hw: tuple[int, int] = HD_720P, *,
              n: int = 6, seed: int = 1000, rounds: int = 5, progress: bool = True) -> Any:
    """Fit the overhead on `n` random networks measured whole; saves RUN/latency/TARGET/predictor.json."""
    from compiler.latency.predict import Predictor, fit_calibration, save_calibration
    from compiler.latency.table import load_table, table_path

    table = load_table(table_path(run_dir, target.name))
    table.check_target(target.name, target.threads)
    pred = Predictor(table)
    genomes = random_genomes(space, n, seed)
    measured = measure_genomes(genomes, target, runner, out_hw, rounds=rounds, progress=progress)
    points = []
    for g, m in zip(genomes, measured):
        layers = genome_layers(g, out_hw)
        points.append((pred.sum_ms(layers), len(layers), m["measured_ms"]))
    cal = fit_calibration(points)
    for point, g, m in zip(cal.points, genomes, measured):  # kept for re-fits and reports
        point.update(genome=g.to_dict(), samples_ms=m["samples_ms"])
    save_calibration(cal, calibration_path(run_dir, target.name), table.header)
    return cal


DEVICE_BENCH_FORMAT = "srprune-device-bench"


def device_bench_points(record: Any, threads: int, what: str = "device bench") -> list[tuple[list, float]]:
    """Calibration inputs from one `srprune android bench --json` record: (layers, measured_ms) per result
    whose thread count is `threads` (the table's).

    The record must be of a searched network (a `genome` model; its pruning from the search's candidate,
    when it has one), so its layers are known.
    """
    if not isinstance(record, dict) or record.get("format") != DEVICE_BENCH_FORMAT:
        raise InputError(f"{what}: not an `srprune android bench --json` file")
    cand = record.get("candidate") or {}
    genome = cand.get("genome") or ((record.get("config") or {}).get("genome") if record.get("model") == "genome"
                                    else None)
    if not isinstance(genome, dict):
        raise InputError(f"{what}: model {record.get('model')!r} is not a searched network (no genome), so its "
                         "layers are unknown; bench a model from `srprune run` or `srprune supernet extract`")
    try:
        _, _, oh, ow = (int(v) for v in record["output_shape"])
        results = list(record["results"])
    except (KeyError, TypeError, ValueError):
        raise InputError(f"{what}: corrupt record (output_shape/results)") from None
    layers = genome_layers(genome, (oh, ow), latency_prune(cand.get("prune") or {}))
    points = []
    for r in results:
        if int(r.get("threads", -1)) == threads and float(r.get("median_ms", 0)) > 0:
            points.append((layers, float(r["median_ms"])))
    if not points:
        have = sorted({int(r.get("threads", -1)) for r in results})
        raise InputError(f"{what}: no result at {threads} threads (the table's); it has {have}")
    return points


def calibrate_from_device(run_dir: Any, target: str, threads: int, records: list[tuple[str, Any]]) -> Any:
    """Re-fit RUN/latency/TARGET's calibration on whole-network times measured on the phone; saves it."""
    from compiler.latency.predict import Predictor, fit_calibration, save_calibration
    from compiler.latency.table import load_table, table_path

    table = load_table(table_path(run_dir, target))
    table.check_target(target, threads)
    for name, record in records:
        if isinstance(record, dict) and record.get("target") not in (None, target):
            raise InputError(f"{name}: measured for target {record.get('target')}, not {target}")
    pred = Predictor(table)
    points, sources = [], []
    for name, record in records:
        for layers, ms in device_bench_points(record, threads, name):
            points.append((pred.sum_ms(layers), len(layers), ms))
            sources.append({"file": str(name), "device": record.get("device")})
    cal = fit_calibration(points)
    for p, src in zip(cal.points, sources):
        p.update(src)
    save_calibration(cal, calibration_path(run_dir, target), table.header)
    return cal


def load_predictor(run_dir: Any, target: str, threads: int) -> Any:
    """The Predictor of RUN/latency/TARGET (table + calibration, both checked against target and threads)."""
    from compiler.latency.predict import Predictor, load_calibration
    from compiler.latency.table import load_table, table_path

    table = load_table(table_path(run_dir, target))
    table.check_target(target, threads)
    return Predictor(table, load_calibration(calibration_path(run_dir, target), table.header))


def validate(predictor: Any, target: Any, runner: Any, space: SearchSpace, out_hw: tuple[int, int] = HD_720P, *,
             n: int = 30, seed: int = 2000, rounds: int = 5, calibrate_n: int = 6, progress: bool = True) -> dict:
    """Predicted vs measured on `n` random networks (a seed apart from the build's calibration): MAPE, Spearman.

    Why a same-session calibration: on a shared machine the load (and so every wall-clock time) shifts
    between sessions by tens of percent, uniformly across networks. With `calibrate_n` > 0, that many
    further random networks are measured in the same interleaved session (spread over the groups), the
    overhead is re-fitted on them alone, and the `n` others are predicted with it. The result also
    reports the numbers with the calibration stored by `build` ("stored").
    """
    from compiler.latency.predict import fit_calibration

    total = n + calibrate_n
    genomes = random_genomes(space, total, seed)
    cal_idx = {int(i * total / calibrate_n) for i in range(calibrate_n)} if calibrate_n else set()
    measured = measure_genomes(genomes, target, runner, out_hw, rounds=rounds, progress=progress)
    rows, cal_points = [], []
    for i, (g, m) in enumerate(zip(genomes, measured)):
        layers = genome_layers(g, out_hw)
        point = (predictor.sum_ms(layers), len(layers), m["measured_ms"])
        if i in cal_idx:
            cal_points.append(point)
            continue
        rows.append({"genome": g.to_dict(), "blocks": [c.block for c in g.cells], "layers": len(layers),
                     "sum_ms": point[0], "predicted_stored_ms": predictor.predict(layers),
                     "measured_ms": m["measured_ms"], "samples_ms": m["samples_ms"]})
    cal = fit_calibration(cal_points) if cal_points else predictor.calibration
    for r in rows:
        r["predicted_ms"] = cal.apply(r["sum_ms"], r["layers"])
    q = [r["measured_ms"] for r in rows]
    p = [r["predicted_ms"] for r in rows]
    ps = [r["predicted_stored_ms"] for r in rows]
    return {"target": target.name, "threads": target.threads, "output_size": [out_hw[1], out_hw[0]], "n": len(rows),
            "mape_pct": mape(p, q), "spearman": spearman(p, q),
            "mape_stored_pct": mape(ps, q), "spearman_stored": spearman(ps, q),
            "calibration": {"alpha": cal.alpha, "beta_ms": cal.beta_ms, "gamma_ms": cal.gamma_ms,
                            "networks": len(cal_points) or len(cal.points), "same_session": bool(cal_points)},
            "rows": rows}


def scatter_plot(result: dict, path: Any) -> None:
    """Predicted vs measured scatter (log axes, y = x line) as a PNG, written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from srcommon.atomic import atomic_path

    from matplotlib.ticker import NullFormatter, ScalarFormatter

    p = [r["predicted_ms"] for r in result["rows"]]
    q = [r["measured_ms"] for r in result["rows"]]
    stored = [r["predicted_stored_ms"] for r in result["rows"] if "predicted_stored_ms" in r]
    same = result.get("calibration", {}).get("same_session", False)
    fig, ax = plt.subplots(figsize=(5, 5), dpi=110)
    ax.scatter(q, p, s=18, label="same-session calibration" if same else "predicted")
    if same and len(stored) == len(q):
        ax.scatter(q, stored, s=18, facecolors="none", edgecolors="tab:gray", label="stored calibration")
    lo, hi = min(p + q + stored) * 0.9, max(p + q + stored) * 1.1
    ax.plot([lo, hi], [lo, hi], "k--", lw=0.8, label="y = x")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ticks = [t * 10**e for e in range(-1, 6) for t in (1, 2, 5) if lo <= t * 10**e <= hi]
    for axis in (ax.xaxis, ax.yaxis):
        axis.set_ticks(ticks)
        axis.set_major_formatter(ScalarFormatter())
        axis.set_minor_formatter(NullFormatter())
    ax.set_xlim(lo, hi)
    ax.set_ylim(lo, hi)
    ax.set_xlabel("measured ms (median)")
    ax.set_ylabel("predicted ms")
    w, h = result["output_size"]
    ax.set_title(f"{result['target']}, {result['threads']} threads, {w}x{h} output, n={result['n']}\n"
                 f"MAPE {result['mape_pct']:.1f}%, Spearman {result['spearman']:.3f}", fontsize=9)
    ax.legend(loc="upper left")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
