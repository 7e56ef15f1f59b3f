"""The latency model of a run folder: build (dense table, pruned kernels, calibration), load, validate.

Why one module: `srprune run`'s latency stage and `srprune latency build|predict|validate|calibrate`
do the same things to RUN/latency/TARGET/, so they call the same functions here; in particular
`build_latency_model` is the one build both use, so a table built by the CLI holds the same entries
(pruned-kernel speed factors included) as one built by the stage. What the search can prune (which
pruned layers to time, on which weights) is the search's knowledge and comes in as `PrunedKernels`
(srprune.search.latency_stage.pruned_kernels); this module knows nothing of the search.
"""

from __future__ import annotations

import dataclasses
import statistics
from dataclasses import dataclass
from pathlib import Path
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from compiler.latency.config import LayerConfig
from compiler.latency.predict import Calibration, Predictor
from compiler.latency.runners import Runner, make_runner
from compiler.latency.table import LatencyTable
from srprune.layout import calibration_path, table_path
from srprune.errors import InputError
from srprune.latency.layers import (HD_720P, fused_in_c_lib, genome_layers, latency_prune, lr_size,
                                    named_genome_layers, space_layers)
from srprune.latency.stats import mape, spearman
from supernet.space import Genome, SearchSpace

if TYPE_CHECKING:  # the compiler modules that import TVM load when something is measured, not on import
    from torch import nn

    from compiler.latency.measure import WeightFor
    from compiler.latency.parallel import BuildPool
    from compiler.targets import TargetSpec

__all__ = ["DEVICE_BENCH_FORMAT", "LatencyBuild", "Network", "PrunedKernels", "build_latency_model", "build_table", "calibrate",
           "calibrate_from_device", "calibration_path", "device_bench_points", "load_predictor", "make_runner",
           "measure_networks", "own_layer_builds", "random_genomes", "random_networks", "table_path", "validate"]


CALIBRATION_SEED = 1000  # the random networks of a build's calibration (validation's are a seed apart)


@dataclass(frozen=True)
class PrunedKernels:
    """The pruned layers a table times beside their dense twins, and the weights to time them on.

    `source` names the weight generator; it is stored in the table's header, and a table whose
    pruned entries came from another source has them measured again (`LatencyTable.use_pruned_weights`).
    """

    configs: list[LayerConfig]
    weight_for: WeightFor
    source: str
    # A deployed network of a genome pruned at random as the search prunes ({deployed layer: prune} and the masked
    # model), or None. Why: the calibration and the validation must include networks like those a run deploys
    # (pruned ones, whose sparse kernels behave unlike dense layers in a network), not only dense ones.
    prune_network: Callable[[Genome, np.random.Generator], tuple[dict[str, dict], nn.Module]] | None = None


@dataclass
class Network:
    """A network the calibration or validation times whole: its genome, its pruning ({} = dense) and its model;
    with `precision` ({layer: int8}, the others fp32) the model is the quantised one, run as the int8 c-lib."""

    genome: Genome
    prune: dict[str, dict]
    model: nn.Module
    precision: dict[str, str] = dataclasses.field(default_factory=dict)

    def layers(self, out_hw: tuple[int, int]) -> list[LayerConfig]:
        """Its layer configurations, as the predictor sums them."""
        return genome_layers(self.genome, out_hw, latency_prune(self.prune), self.precision)

    def named_layers(self, out_hw: tuple[int, int]) -> list[tuple[str, LayerConfig]]:
        """(deployed name, configuration) of each layer that runs as a kernel of its own (an int8 c-lib's adapters
        are no kernels: the consumer's write-back slices or pads the residual)."""
        named = named_genome_layers(self.genome, out_hw, latency_prune(self.prune), self.precision)
        return [(n, c) for n, c in named if not (self.precision and fused_in_c_lib(c))]


@dataclass
class LatencyBuild:
    """What `build_latency_model` did: the table, entries measured now / dropped as stale, the calibration."""

    table: LatencyTable
    measured: int
    dropped: int
    calibration: Calibration | None
    calibrated_now: bool


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


def spread_genomes(space: SearchSpace, n: int, seed: int, out_hw: tuple[int, int] = HD_720P,
                   accept: Callable[[Genome], bool] | None = None) -> list[Genome]:
    """`n` distinct random genomes spread evenly over the MACs of a pool of random ones (`accept`ed ones only), the
    pool's smallest and largest included.

    Why: a calibration on purely random networks rarely sees the top of the space (wide cells of heavy blocks),
    and a fit extrapolated there predicted the largest networks 20-35% low (issue 20's search benchmark, 40 ms),
    which is where a budget near the space's top searches.
    """
    pool = [g for g in random_genomes(space, 40 * n, seed) if accept is None or accept(g)]
    if len(pool) <= n:
        return pool
    macs = np.array([sum(c.macs() for c in genome_layers(g, out_hw)) for g in pool], dtype=float)
    chosen: list[int] = []
    for t in np.linspace(macs.min(), macs.max(), n):
        chosen.append(min((i for i in range(len(pool)) if i not in chosen), key=lambda i: abs(macs[i] - t)))
    return [pool[i] for i in chosen]


def random_networks(space: SearchSpace, n: int, seed: int, pruned: PrunedKernels | None = None,
                    genomes: list[Genome] | None = None) -> list[Network]:
    """`n` distinct random genomes' deployed networks (or `genomes`'), seeded weights; with `pruned.prune_network`,
    every second one pruned at random as the search prunes."""
    import torch

    from supernet.standalone import GenomeNet

    rng = np.random.default_rng(seed + 1)
    out = []
    for i, g in enumerate(random_genomes(space, n, seed) if genomes is None else genomes):
        if pruned is not None and pruned.prune_network is not None and i % 2:
            prune, model = pruned.prune_network(g, rng)
        else:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                prune, model = {}, GenomeNet(g).deploy()
        out.append(Network(g, prune, model.eval()))
    return out


def calibration_networks(space: SearchSpace, n: int, out_hw: tuple[int, int], pruned: PrunedKernels | None = None,
                         seed: int = CALIBRATION_SEED) -> list[Network]:
    """The fp32 networks a build's calibration times: `n` spread over the space (`spread_genomes`), every second
    one pruned as the search prunes."""
    return random_networks(space, n, seed, pruned, spread_genomes(space, n, seed, out_hw))


def int8_calibration_networks(space: SearchSpace, n: int, out_hw: tuple[int, int],
                              pruned: PrunedKernels | None = None, seed: int = CALIBRATION_SEED + 1,
                              spread: bool = True) -> list[Network]:
    """Networks with int8 layers for the int8 calibration: `n` spread over the space (`spread`; else random) among
    genomes with an int8 form, every second one pruned; even ones all int8, odd ones a random mix (each layer int8
    with probability 1/2, at least one), as the search mixes them; each quantised by PTQ on 4 random images (the
    ranges do not change the code or its speed)."""
    from srprune.quant.plan import precision_layers
    from srprune.quant.quantize import QuantConfig, quantize_model
    from supernet.standalone import GenomeNet

    def has_int8(g: Genome) -> bool:
        return bool(precision_layers(GenomeNet(g).deploy()))

    rng = np.random.default_rng(seed + 2)
    images = [rng.integers(0, 256, (48, 48, 3), dtype=np.uint8) for _ in range(4)]
    out = []
    genomes = (spread_genomes(space, n, seed, out_hw, has_int8) if spread
               else [g for g in random_genomes(space, 40 * n, seed) if has_int8(g)][:n])
    for i, net in enumerate(random_networks(space, n, seed, pruned, genomes)):
        names = precision_layers(net.model)
        chosen = names if i % 2 == 0 else [m for m in names if rng.random() < 0.5] or [names[int(rng.integers(len(names)))]]
        precision = {m: "int8" for m in chosen}
        q, _ = quantize_model(net.model, images, QuantConfig(calib_images=4), progress=False, precisions=precision)
        out.append(Network(net.genome, net.prune, q.eval(), precision))
    return out


def conv_weights(model: nn.Module) -> dict[str, np.ndarray]:
    """Each conv's weight by its deployed name (numpy float32), the names `named_genome_layers` gives: a float
    model's Conv2d modules, or a quantised model's layers (int8 codes as floats: the zeros its int8 kernels skip)."""
    from torch import nn as torch_nn

    from srprune.quant.qmodel import is_quantized

    if is_quantized(model):
        return {spec["name"]: layer.weight.detach().float().numpy() for spec, layer in zip(model.specs, model.layers)}
    return {name: m.weight.detach().numpy() for name, m in model.named_modules() if isinstance(m, torch_nn.Conv2d)}


def _as_pruned(c: LayerConfig, weight: np.ndarray) -> LayerConfig:
    """The layer's config with the zero fraction its weight really has where that differs from the searched ratio
    by more than the measurement's tolerance (int8 rounding turns the smallest kept weights into zeros too)."""
    from compiler.latency.measure import RATIO_TOLERANCE

    zeros = 1.0 - np.count_nonzero(weight) / weight.size
    return c if abs(zeros - c.ratio) <= RATIO_TOLERANCE else dataclasses.replace(c, ratio=round(float(zeros), 3))


def own_layer_builds(model: nn.Module, named: list[tuple[str, LayerConfig]], target: TargetSpec, *,
                     dense: dict[str, Any] | None = None, progress: bool = False, pool: BuildPool | None = None
                     ) -> list[Any]:
    """Each layer of `model` (`named`: `named_genome_layers` of its genome and pruning) compiled alone as the table
    compiles it (`build_layer`), a pruned one on the model's own weight: a sparse kernel's code follows the zeros
    of the weight it is built from. `dense` caches dense builds by key across calls (their code does not depend
    on the weight, so networks sharing a layer share one build). `pool`: compile in its workers (default: here)."""
    from compiler.latency.measure import build_layer
    from compiler.latency.parallel import BuildPool
    from srcommon.progress import progress_bar

    weights = conv_weights(model)
    dense = {} if dense is None else dense
    out: list[Any] = [None] * len(named)
    calls, slots, first = [], [], {}  # what to build, the layers each build fills, the first slot of each dense key
    for i, (name, c) in enumerate(named):
        if c.scheme != "dense":
            weight = weights[name]
            calls.append((build_layer, (_as_pruned(c, weight), target, 0, weight)))
            slots.append([i])
        elif c.key() in dense:
            out[i] = dense[c.key()]
        elif c.key() in first:
            slots[first[c.key()]].append(i)
        else:
            first[c.key()] = len(calls)
            calls.append((build_layer, (c, target)))
            slots.append([i])
    builder = pool if pool is not None else BuildPool(target, 1)  # a one-worker pool builds in this process
    for k, built in progress_bar(builder.map(calls), total=len(calls), desc="layers", unit="layer",
                                 disable=not progress):
        for i in slots[k]:
            out[i] = built
        c = named[slots[k][0]][1]
        if c.scheme == "dense":
            dense[c.key()] = built
    return out


def measure_networks(networks: list[Network], target: TargetSpec, runner: Runner, out_hw: tuple[int, int] = HD_720P,
                     *, rounds: int = 5, group: int = 5, with_layers: bool = False,
                     dense: dict[str, Any] | None = None, progress: bool = True) -> list[dict]:
    """Whole-network median milliseconds of each network, compiled with compile_model (a network with
    `precision`: built as the int8 c-lib and timed a fresh process per run, `process_timer`, as the compile stage
    times it; host targets only); with `with_layers`, also the sum of its layers timed alone in the same rounds
    (`layers_sum_ms`: the median over rounds of each round's sum; `layers_ms`: each layer's median). `dense`: dense
    layers already built, by key (see `own_layer_builds`).

    Why groups and rounds: the machine is shared, so networks of a group are timed round-robin (one
    run each per round, `rounds` rounds) and compared by their medians; groups bound the memory of
    the compiled networks held at once. Why layers in the same rounds: a network's time over its layers' sum is
    what the calibration fits, and both halves of that ratio must see the same machine: timed in another phase
    (the table minutes before), a shift in load or clock between the phases lands in the ratio.
    """
    import tempfile

    from compiler.latency.parallel import BuildPool, workers_for
    from compiler.latency.runners import interleaved
    from srcommon.progress import progress_bar

    results: list[dict] = []
    dense = dict(dense or {})
    bar = progress_bar(total=len(networks), desc="networks", unit="net", disable=not progress)
    jobs = len(networks) + (sum(len(net.named_layers(out_hw)) for net in networks) if with_layers else 0)
    try:
        with tempfile.TemporaryDirectory(prefix="srprune-networks-") as tmp, \
                BuildPool(target, workers_for(runner, jobs)) as pool:
            for start in range(0, len(networks), group):
                chunk = networks[start:start + group]
                folders = [Path(tmp) / f"net{start + i}" for i in range(len(chunk))]
                builds = dict(pool.map([(build_timed_network, (net.model, net.precision, net.genome.scale, out_hw,
                                                               target, folder)) for net, folder in zip(chunk, folders)]))
                net_timers = [_network_timer(builds[i], target, runner, folders[i]) for i in range(len(chunk))]
                layer_built = [own_layer_builds(net.model, net.named_layers(out_hw), target, dense=dense, pool=pool)
                               for net in chunk] if with_layers else []
                distinct = list({id(b): b for bs in layer_built for b in bs}.values())  # a shared build: timed once
                slot = {id(b): i for i, b in enumerate(distinct)}
                timers = net_timers + [runner.timer(b) for b in distinct]  # loads and warms up each once
                samples = interleaved(timers, rounds)
                for i, (net, s) in enumerate(zip(chunk, samples)):
                    r = {"genome": net.genome.to_dict(), "prune": net.prune, "measured_ms": statistics.median(s),
                         "samples_ms": s}
                    if net.precision:
                        r["precision"] = net.precision
                    if with_layers:
                        own = [samples[len(chunk) + slot[id(b)]] for b in layer_built[i]]
                        r["layers_sum_ms"] = statistics.median(sum(x[k] for x in own) for k in range(rounds))
                        r["layers_ms"] = [statistics.median(x) for x in own]
                    results.append(r)
                del net_timers, layer_built, distinct, timers
                later = {c.key() for net in networks[start + group:] for c in net.layers(out_hw)}
                dense = {k: b for k, b in dense.items() if k in later}  # a build no later network needs is let go
                bar.update(len(chunk))
    finally:
        bar.close()
    return results


def build_timed_network(model: nn.Module, precision: str | None, scale: int, out_hw: tuple[int, int],
                        target: TargetSpec, folder: Path) -> Any:
    """A network built to be timed whole (in a BuildPool worker or here): its TVM build (checked against PyTorch on
    the host), or with `precision` (int8 layers) its int8 c-lib written into `folder` (returned)."""
    from compiler.errors import CompilerError
    from compiler.latency.measure import build_network

    h, w = lr_size(out_hw, scale)
    if not precision:
        return build_network(model, (1, 3, h, w), target)
    from compiler.int8.network import build_int8_clib
    from srprune.quant.deploy import to_int8_network

    if target.cross:
        raise CompilerError(f"an int8 c-lib cannot be timed on {target.name} from here (TVM's RPC server loads TVM "
                            "modules, not a C library)")
    build_int8_clib(to_int8_network(model), (1, 3, h, w), target, folder, check=False, name=folder.name)
    return folder


def _network_timer(built: Any, target: TargetSpec, runner: Runner, folder: Path):
    """A timer of a network whole (`build_timed_network`'s result): its TVM build in `runner`, or its int8 c-lib."""
    if not isinstance(built, Path):
        return runner.timer(built)
    from compiler.clib.runner import process_timer
    from compiler.latency.runners import POOL_SETTLE_S

    return process_timer(folder, target.threads, settle_s=POOL_SETTLE_S)  # after TVM-timed layers: their pool asleep


def build_table(run_dir: str | Path, target: TargetSpec, runner: Runner, space: SearchSpace,
                out_hw: tuple[int, int] = HD_720P, *, pruned: PrunedKernels | None = None, repeat: int = 5,
                progress: bool = True, precisions: tuple[str, ...] | list[str] = ("fp32",),
                keep: dict[str, Any] | None = None) -> tuple[LatencyTable, int, int]:
    """Measure what RUN/latency/TARGET/table.json lacks: every dense layer of `space` at `out_hw` in each of
    `precisions`, then `pruned` (whose configurations carry their precisions: `pruned_kernels(..., precisions)`).

    Resumes a killed build. Returns (table, entries measured now, pruned entries dropped as stale).
    A precision the target cannot run is refused before anything is measured. `keep`: see `measure_into`.
    """
    from compiler.latency.measure import check_precision, measure_into
    from compiler.latency.table import open_table

    for p in dict.fromkeys([*precisions, *(c.precision for c in (pruned.configs if pruned else []))]):
        check_precision(target, p)
    table = open_table(table_path(run_dir, target.name), target.name, target.threads)
    dropped = table.use_pruned_weights(pruned.source) if pruned else 0
    n = measure_into(table, space_layers(space, out_hw, precisions), target, runner, repeat=repeat, progress=progress,
                     keep=keep)
    if pruned:
        n += measure_into(table, pruned.configs, target, runner, repeat=repeat, progress=progress,
                          weight_for=pruned.weight_for)
    if dropped and not n:
        table.save()  # nothing new to measure, but the stale entries must not come back
    return table, n, dropped


def build_latency_model(run_dir: str | Path, target: TargetSpec, runner: Runner, space: SearchSpace,
                        out_hw: tuple[int, int] = HD_720P, *, pruned: PrunedKernels | None = None,
                        repeat: int = 5, calibrate_n: int = 6, recalibrate: bool = False,
                        progress: bool = True, precisions: tuple[str, ...] | list[str] = ("fp32",)) -> LatencyBuild:
    """Build or complete RUN/latency/TARGET: the table (`build_table`, dense layers in `precisions`) and the
    calibration (`calibrate`; with int8 among `precisions` on a host target, the int8 c-lib's fit too).

    The calibration is fitted again when `recalibrate`, when entries were measured now, or when none is
    stored; `calibrate_n` 0 skips it. Used by both the run's latency stage and `srprune latency build`.
    """
    from compiler.latency.predict import load_calibration

    networks = calibration_set(space, calibrate_n, out_hw, target, pruned, precisions) if calibrate_n else []
    # the calibration networks' dense layers, kept as the table builds them (the calibration times them again)
    keep = {c.key(): None for net in networks for c in net.layers(out_hw) if c.scheme == "dense"} if networks else None
    table, n, dropped = build_table(run_dir, target, runner, space, out_hw, pruned=pruned, repeat=repeat,
                                    progress=progress, precisions=precisions, keep=keep)
    cpath = calibration_path(run_dir, target.name)
    now = bool(calibrate_n) and (recalibrate or n > 0 or not cpath.exists())
    if now:
        cal = calibrate(run_dir, target, runner, space, out_hw, n=calibrate_n, pruned=pruned, progress=progress,
                        dense={k: b for k, b in (keep or {}).items() if b is not None}, networks=networks)
    else:
        cal = load_calibration(cpath, table.header) if calibrate_n else None
    return LatencyBuild(table, n, dropped, cal, now)


def calibration_set(space: SearchSpace, n: int, out_hw: tuple[int, int], target: TargetSpec,
                    pruned: PrunedKernels | None = None, precisions: tuple[str, ...] | list[str] = ("fp32",),
                    seed: int = CALIBRATION_SEED) -> list[Network]:
    """The networks a build's calibration times: `n` fp32 ones (`calibration_networks`) and, where the search may
    pick int8 and the target is this host (an int8 c-lib cannot be timed over RPC), `n` with int8 layers."""
    nets = calibration_networks(space, n, out_hw, pruned, seed)
    if "int8" in precisions and not target.cross:
        nets += int8_calibration_networks(space, n, out_hw, pruned, seed + 1)
    return nets


def calibrate(run_dir: str | Path, target: TargetSpec, runner: Runner, space: SearchSpace,
              out_hw: tuple[int, int] = HD_720P, *, n: int = 6, seed: int = CALIBRATION_SEED, rounds: int = 5,
              pruned: PrunedKernels | None = None, progress: bool = True,
              dense: dict[str, Any] | None = None, networks: list[Network] | None = None,
              precisions: tuple[str, ...] | list[str] = ("fp32",)) -> Calibration:
    """Fit the overhead on `n` networks spread over the space (every second one pruned as the search prunes, where
    `pruned` says how), each measured whole in the same interleaved rounds as its own layers alone; networks with
    int8 layers (`calibration_set`) get a fit of their own (`Calibration.int8`); saves
    RUN/latency/TARGET/predictor.json. `networks`: the set to time (default `calibration_set(..., precisions)`).

    Why its own layers and not the table's times: the fit is a network's time over its layers' sum, and the
    table was timed minutes earlier; a phase that ran faster or slower than the table's (clock, load, what else
    the machine was doing) lands in that ratio. Fitted on table sums, the demo's 8 networks ran at 0.81-1.03 of
    them (0.79 x sum + 1.95 ms) and its first deployments were predicted 14-19% low, while the
    compile stage, timing the deployed network beside its own layers, found it at 0.98-1.0 of their sum. Each
    point keeps its table sum (`table_sum_ms`), which shows the phase shift. `dense`: dense layers already built
    (by key; `build_latency_model` keeps them from the table's build).
    """
    from compiler.latency.predict import save_calibration
    from compiler.latency.table import load_table

    table = load_table(table_path(run_dir, target.name))
    table.check_target(target.name, target.threads)
    pred = Predictor(table)
    if networks is None:
        networks = calibration_set(space, n, out_hw, target, pruned, precisions, seed)
    measured = measure_networks(networks, target, runner, out_hw, rounds=rounds, with_layers=True, dense=dense,
                                progress=progress)
    fp32 = [(net, m) for net, m in zip(networks, measured) if not net.precision]
    int8 = [(net, m) for net, m in zip(networks, measured) if net.precision]
    cal = _fit(fp32, pred, out_hw)
    if int8:
        cal.int8 = _fit(int8, pred, out_hw)
    save_calibration(cal, calibration_path(run_dir, target.name), table.header)
    return cal


def _fit(timed: list[tuple[Network, dict]], pred: Predictor, out_hw: tuple[int, int]) -> Calibration:
    """The calibration of networks timed with their layers (`measure_networks(..., with_layers=True)`), each point
    kept with what re-fits and reports need."""
    from compiler.latency.predict import fit_calibration

    cal = fit_calibration([(m["layers_sum_ms"], len(m["layers_ms"]), m["measured_ms"]) for _, m in timed])
    for point, (net, m) in zip(cal.points, timed):
        point.update(table_sum_ms=pred.sum_ms(net.layers(out_hw)), genome=net.genome.to_dict(),
                     samples_ms=m["samples_ms"], layers_ms=m["layers_ms"])
        if net.prune:
            point["prune"] = net.prune
        if net.precision:
            point["precision"] = net.precision
    return cal


DEVICE_BENCH_FORMAT = "srprune-device-bench"


def device_bench_points(record: Any, threads: int,
                        what: str = "device bench") -> list[tuple[list[LayerConfig], float]]:
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
    layers = genome_layers(genome, (oh, ow), latency_prune(cand.get("prune") or {}), cand.get("precision") or "fp32")
    points = []
    for r in results:
        if int(r.get("threads", -1)) == threads and float(r.get("median_ms", 0)) > 0:
            points.append((layers, float(r["median_ms"])))
    if not points:
        have = sorted({int(r.get("threads", -1)) for r in results})
        raise InputError(f"{what}: no result at {threads} threads (the table's); it has {have}")
    return points


def calibrate_from_device(run_dir: str | Path, target: str, threads: int,
                          records: list[tuple[str, Any]]) -> Calibration:
    """Re-fit RUN/latency/TARGET's calibration on whole-network times measured on the phone; saves it. Networks with
    int8 layers (an int8 / mixed c-lib) re-fit `Calibration.int8`, the others the fp32 fit."""
    from compiler.latency.predict import fit_calibration, load_calibration, save_calibration
    from compiler.latency.table import load_table

    table = load_table(table_path(run_dir, target))
    table.check_target(target, threads)
    for name, record in records:
        if isinstance(record, dict) and record.get("target") not in (None, target):
            raise InputError(f"{name}: measured for target {record.get('target')}, not {target}")
    pred = Predictor(table)
    timed: dict[bool, list[tuple[tuple[float, int, float], dict]]] = {False: [], True: []}  # by "has int8 layers"
    for name, record in records:
        for layers, ms in device_bench_points(record, threads, name):
            timed[any(c.precision == "int8" for c in layers)].append(
                ((pred.sum_ms(layers), len(layers), ms), {"file": str(name), "device": record.get("device")}))
    fits = {}
    for int8, points in timed.items():
        if points:
            fits[int8] = fit_calibration([p for p, _ in points])
            for p, (_, src) in zip(fits[int8].points, points):
                p.update(src)
    # the part no record measured (fp32 networks, or networks with int8 layers) stays as it was
    old = load_calibration(calibration_path(run_dir, target), table.header) or Calibration()
    cal = fits.get(False) or dataclasses.replace(old, int8=None)
    cal.int8 = fits.get(True) or old.int8
    save_calibration(cal, calibration_path(run_dir, target), table.header)
    return cal


def load_predictor(run_dir: str | Path, target: str, threads: int) -> Predictor:
    """The Predictor of RUN/latency/TARGET (table + calibration, both checked against target and threads)."""
    from compiler.latency.predict import load_calibration
    from compiler.latency.table import load_table

    table = load_table(table_path(run_dir, target))
    table.check_target(target, threads)
    return Predictor(table, load_calibration(calibration_path(run_dir, target), table.header))


def validate(predictor: Predictor, target: TargetSpec, runner: Runner, space: SearchSpace, out_hw: tuple[int, int] = HD_720P, *,
             n: int = 30, seed: int = 2000, rounds: int = 5, calibrate_n: int = 6, pruned: PrunedKernels | None = None,
             progress: bool = True, precision: str = "fp32") -> dict:
    """Predicted vs measured on `n` random networks (a seed apart from the build's calibration): MAPE, Spearman.
    With `pruned`, every second network is pruned at random as the search prunes (as in the calibration). With
    `precision` int8, networks with int8 layers (all int8 or mixed, as `int8_calibration_networks`) run as int8 c-libs.

    Why a same-session calibration: on a shared machine the load (and so every wall-clock time) shifts
    between sessions by tens of percent, uniformly across networks. With `calibrate_n` > 0, that many
    further random networks are measured in the same interleaved session (spread over the groups), the
    overhead is re-fitted on them alone, and the `n` others are predicted with it. The result also
    reports the numbers with the calibration stored by `build` ("stored").
    """
    from compiler.latency.predict import fit_calibration

    total = n + calibrate_n
    if precision == "int8":
        networks = int8_calibration_networks(space, total, out_hw, pruned, seed, spread=False)
    elif precision == "fp32":
        networks = random_networks(space, total, seed, pruned)
    else:
        raise InputError(f"validate: precision {precision!r}: fp32 or int8")
    cal_idx = {int(i * total / calibrate_n) for i in range(calibrate_n)} if calibrate_n else set()
    measured = measure_networks(networks, target, runner, out_hw, rounds=rounds, progress=progress)
    rows, cal_points = [], []
    for i, (net, m) in enumerate(zip(networks, measured)):
        layers = net.layers(out_hw)
        point = (predictor.sum_ms(layers), len(layers), m["measured_ms"])
        if i in cal_idx:
            cal_points.append(point)
            continue
        g = net.genome
        rows.append({"genome": g.to_dict(), "prune": net.prune, "precision": net.precision,
                     "blocks": [c.block for c in g.cells],
                     "layers": len(layers),
                     "sum_ms": point[0], "predicted_stored_ms": predictor.predict(layers),
                     "measured_ms": m["measured_ms"], "samples_ms": m["samples_ms"]})
    cal = fit_calibration(cal_points) if cal_points else predictor.calibration.for_layers(networks[0].layers(out_hw))
    for r in rows:
        r["predicted_ms"] = cal.apply(r["sum_ms"], r["layers"])
    q = [r["measured_ms"] for r in rows]
    p = [r["predicted_ms"] for r in rows]
    ps = [r["predicted_stored_ms"] for r in rows]
    return {"target": target.name, "threads": target.threads, "output_size": [out_hw[1], out_hw[0]], "n": len(rows),
            "precision": precision,
            "mape_pct": mape(p, q), "spearman": spearman(p, q),
            "mape_stored_pct": mape(ps, q), "spearman_stored": spearman(ps, q),
            "calibration": {"alpha": cal.alpha, "beta_ms": cal.beta_ms, "gamma_ms": cal.gamma_ms,
                            "networks": len(cal_points) or len(cal.points), "same_session": bool(cal_points)},
            "rows": rows}
