"""Latency model on host: predicted vs measured for random supernet sub-networks at 720p output.

Usage:
    python benchmarks/latency_validate.py [--run runs/latency-host] [--n 30] [--reuse] [--doc]
    python benchmarks/latency_validate.py --precision int8 --config configs/demo.yaml --run runs/latency-int8 \
        [--n 12] [--doc]

Builds (or resumes) the layer table and calibration of RUN/latency/host with the default search
space (or --config's space and search), validates on N random networks (seeded, apart from the calibration's),
writes RUN/latency/host/validate.json, the scatter plot docs/latency_host.png and, with --doc, the `latency`
section of docs/benchmarks.md. `--reuse` reports an existing validate.json without measuring again.
With `--precision int8` the table also holds int8 entries, the calibration has its int8 fit (networks with int8
layers timed as int8 c-libs), and the networks validated have int8 layers (all int8, or a random mix, every
second one pruned), each timed as the int8 c-lib: RUN/latency/host/validate-int8.json, docs/latency_host_int8.png,
section `latency_int8_validate`.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._report import add_doc_arg, doc_flag, doc_section, machine, update_section  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
PLOT = ROOT / "docs" / "latency_host.png"


def _per_block(rows: list[dict]) -> str:
    """Mean absolute % error grouped by which block types a network contains."""
    from srprune.latency import mape

    lines = []
    for block in ("conv", "res", "wide", "ecb", "dws"):
        sel = [r for r in rows if block in r["blocks"]]
        if sel:
            lines.append(f"{block} {mape([r['predicted_ms'] for r in sel], [r['measured_ms'] for r in sel]):.1f}% "
                         f"(n={len(sel)})")
    for kind, sel in (("pruned", [r for r in rows if r.get("prune")]), ("dense", [r for r in rows if not r.get("prune")])):
        if sel:
            lines.append(f"{kind} networks {mape([r['predicted_ms'] for r in sel], [r['measured_ms'] for r in sel]):.1f}%"
                         f" (n={len(sel)})")
    return ", ".join(lines)


def _best_factor(result: dict) -> float:
    """MAPE of the best a in measured = a * sum (relative least squares) on the rows themselves: the noise floor."""
    import numpy as np

    s = np.array([r["sum_ms"] for r in result["rows"]])
    m = np.array([r["measured_ms"] for r in result["rows"]])
    a = float(np.sum(s / m) / np.sum((s / m) ** 2))
    return float(np.mean(np.abs(a * s - m) / m) * 100)


def _split_session(result: dict, table, k: int = 6) -> dict:
    """An earlier session re-scored as `validate` does now: calibrate on k of its networks, score the rest."""
    from compiler.latency.predict import Predictor, fit_calibration
    from srprune.latency import genome_layers, latency_prune, mape, spearman

    pred = Predictor(table)
    w, h = result["output_size"]
    pts = [(pred.sum_ms(genome_layers(r["genome"], (h, w), latency_prune(r.get("prune") or {}))), r["layers"],
            r["measured_ms"]) for r in result["rows"]]
    cal_idx = {int(i * len(pts) / k) for i in range(k)}
    cal = fit_calibration([pts[i] for i in sorted(cal_idx)])
    rest = [i for i in range(len(pts)) if i not in cal_idx]
    p = [cal.apply(pts[i][0], pts[i][1]) for i in rest]
    q = [pts[i][2] for i in rest]
    stored = [r["predicted_ms"] for r in result["rows"]]
    return {"n": len(result["rows"]), "mape_stored": mape(stored, [r["measured_ms"] for r in result["rows"]]),
            "spearman_stored": spearman(stored, [r["measured_ms"] for r in result["rows"]]),
            "n_split": len(rest), "mape_split": mape(p, q), "spearman_split": spearman(p, q)}


def _space_search(config: Path | None):
    """(search space, search settings) of `config`, or the defaults."""
    from srprune.search.config import DEFAULTS, load
    from supernet.space import SearchSpace

    if config is None:
        return SearchSpace(), DEFAULTS["search"]
    cfg = load(config, run_dir=Path("/tmp/unused"))
    return SearchSpace.from_dict(cfg["supernet"]["space"]), cfg["search"]


def int8_main(args: argparse.Namespace) -> None:
    """--precision int8: the int8 calibration (networks with int8 layers as int8 c-libs) validated."""
    from compiler.targets import get_target
    from srprune.latency import (HD_720P, build_latency_model, calibration_path, genome_layers, latency_prune,
                                 load_predictor, make_runner, mape, scatter_plot, spearman, validate)
    from srprune.layout import table_path
    from srprune.search.latency_stage import pruned_kernels

    target = get_target("host")
    folder = table_path(args.run, target.name).parent
    out = folder / "validate-int8.json"
    section = doc_section(args.doc, "latency_int8_validate")
    plot = ROOT / "docs" / (f"{section}.png" if isinstance(args.doc, str) else "latency_host_int8.png")
    space, search = _space_search(args.config)
    precisions = ("fp32", "int8")
    if args.reuse:
        result = json.loads(out.read_text())
        build_s = validate_s = None
    else:
        runner = make_runner(target)
        pruned = pruned_kernels(space, search, HD_720P, precisions)
        t0 = time.time()
        build_latency_model(args.run, target, runner, space, pruned=pruned, calibrate_n=args.calibrate,
                            precisions=precisions)
        build_s = time.time() - t0
        result = validate(load_predictor(args.run, target.name, target.threads), target, runner, space, n=args.n,
                          rounds=args.rounds, calibrate_n=args.calibrate, pruned=pruned, precision="int8")
        validate_s = time.time() - t0 - build_s
        out.write_text(json.dumps(result, indent=1))
    scatter_plot(result, plot)
    cal = json.loads(calibration_path(args.run, target.name).read_text())
    c8, c = cal.get("int8") or {}, result["calibration"]
    rows = result["rows"]
    q = [r["measured_ms"] for r in rows]
    fp32_fit = [cal["alpha"] * r["sum_ms"] + cal["beta_ms"] + cal["gamma_ms"] * r["layers"] for r in rows]
    plain = [r["sum_ms"] for r in rows]
    w, h = result["output_size"]
    mixed = [r for r in rows if any(c.precision == "fp32" and c.op != "adapter" for c in genome_layers(
        r["genome"], (h, w), latency_prune(r.get("prune") or {}), r["precision"]))]
    timing = (f" Table + calibration built in {build_s:.0f} s, validation {validate_s:.0f} s." if build_s else "")
    lines = [
        "## Latency model of networks with int8 layers (the int8 c-lib), host", "",
        f"Machine: {machine(target.threads)}. {args.conditions}{timing} Every time is a median of interleaved runs.",
        f"Command: `python benchmarks/latency_validate.py --precision int8 --config {args.config} --run RUN "
        f"--n {result['n']} --doc` (= `srprune latency build --precisions fp32,int8` then `srprune latency validate "
        "--precision int8`).", "",
        f"- Networks: {result['n']} random genomes of the config's space with an int8 form (seed 2000), every second "
        "one pruned as the search prunes; even ones all int8, odd ones a random mix (each layer int8 with probability "
        "1/2, the others fp32 kernels inside the c-lib), quantised by PTQ, built as the int8 c-lib `srprune compile` "
        f"ships and timed whole in a fresh process per run (`process_timer`), {w}x{h} output: "
        f"{min(q):.1f}-{max(q):.1f} ms.",
        f"- Stored int8 calibration (`build`: {len(c8.get('points', []))} such networks spread over the space's MACs, "
        f"each beside its own kernels timed alone in the same rounds): measured = {c8.get('alpha', 1):.3f} x sum + "
        f"{c8.get('beta_ms', 0):.2f} ms + {c8.get('gamma_ms', 0):.3f} ms x layers; the fp32 fit of the same build "
        f"(fp32 networks in TVM's VM): {cal['alpha']:.3f} x sum + {cal['beta_ms']:.2f} ms + {cal['gamma_ms']:.3f} ms "
        "x layers.",
        f"- Same-session calibration ({c['networks']} further networks of the same kind): {c['alpha']:.3f} x sum + "
        f"{c['beta_ms']:.2f} ms + {c['gamma_ms']:.3f} ms x layers.", "",
        "| prediction of a network with int8 layers | MAPE | Spearman |", "| --- | ---: | ---: |",
        f"| int8 fit, same session | {result['mape_pct']:.2f}% | {result['spearman']:.3f} |",
        f"| int8 fit stored by build (what a search uses) | {result['mape_stored_pct']:.2f}% | "
        f"{result['spearman_stored']:.3f} |",
        f"| the fp32 fit (what a search used before this calibration) | {mape(fp32_fit, q):.2f}% | "
        f"{spearman(fp32_fit, q):.3f} |",
        f"| the plain sum of the int8 / fp32 entries | {mape(plain, q):.2f}% | {spearman(plain, q):.3f} |", "",
        f"Mixed networks (int8 and fp32 layers) among them: {len(mixed)}; their MAPE with the stored int8 fit: "
        f"{mape([r['predicted_stored_ms'] for r in mixed], [r['measured_ms'] for r in mixed]) if mixed else 0:.2f}%.",
        "",
        f"![predicted vs measured, int8 networks]({plot.name})",
    ]
    text = "\n".join(lines)
    print(text)
    if args.doc:
        update_section(section, text)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", type=Path, default=ROOT / "runs" / "latency-host")
    ap.add_argument("--n", type=int, default=30)
    ap.add_argument("--calibrate", type=int, default=6)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--reuse", action="store_true", help="Report RUN's validate.json without measuring.")
    ap.add_argument("--earlier", type=Path, action="append", default=[],
                    help="validate.json of an earlier session (stored calibration) to report beside this one.")
    ap.add_argument("--conditions", default="",
                    help="one sentence on the machine's load while measuring, for the docs (e.g. 'Idle machine.')")
    add_doc_arg(ap, "latency (latency_int8_validate with --precision int8)")
    ap.add_argument("--precision", choices=("fp32", "int8"), default="fp32")
    ap.add_argument("--config", type=Path, default=None, help="the space and search of this config (default: the "
                    "default search space and search settings)")
    args = ap.parse_args()
    if args.precision == "int8":
        int8_main(args)
        return

    from compiler.latency.table import load_table
    from srprune.layout import table_path
    from compiler.targets import get_target
    from srprune.latency import (
        build_latency_model,
        calibration_path,
        load_predictor,
        make_runner,
        scatter_plot,
        validate,
    )

    target = get_target("host")
    folder = table_path(args.run, target.name).parent
    out = folder / "validate.json"
    if args.reuse:
        result = json.loads(out.read_text())
    else:
        from srprune.latency import HD_720P
        from srprune.search.latency_stage import pruned_kernels

        runner = make_runner(target)
        space, search = _space_search(args.config)
        pruned = pruned_kernels(space, search, HD_720P)  # the pruned layers and networks a run sees
        t0 = time.time()
        build_latency_model(args.run, target, runner, space, pruned=pruned, calibrate_n=args.calibrate)
        print(f"table + calibration ready in {time.time() - t0:.0f} s", file=sys.stderr)
        result = validate(load_predictor(args.run, target.name, target.threads), target, runner, space,
                          n=args.n, rounds=args.rounds, calibrate_n=args.calibrate, pruned=pruned)
        out.write_text(json.dumps(result, indent=1))
    section = doc_section(args.doc, "latency")
    plot = ROOT / "docs" / f"{section}.png" if isinstance(args.doc, str) else PLOT
    scatter_plot(result, plot)
    table = load_table(table_path(args.run, target.name))
    cal = json.loads(calibration_path(args.run, target.name).read_text())
    meas = sorted(r["measured_ms"] for r in result["rows"])
    w, h = result["output_size"]
    c = result["calibration"]
    from compiler.latency.predict import Predictor
    from srprune.latency import genome_layers, latency_prune

    pred = Predictor(table)
    share = []
    for r in result["rows"]:
        layers = genome_layers(r["genome"], (h, w), latency_prune(r.get("prune") or {}))
        share.append(sum(pred.layer_ms(x)[0] for x in layers if x.op == "tail") / pred.sum_ms(layers) * 100)
    lines = [
        "## Latency model (compiler-aware layer table + calibrated sum), host", "",
        f"Machine: {machine(target.threads)}; table header: {table.header['machine']}, TVM {table.header['tvm']}, "
        f"compiler {table.header['compiler']}. {args.conditions} Every time is a median of interleaved runs.",
        f"Command: `python benchmarks/latency_validate.py {doc_flag(section, 'latency')}` "
        "(= `srprune latency build --target host --run RUN` "
        f"then `srprune latency validate --target host --run RUN --n {result['n']}`).", "",
        f"- Table: {len(table)} layer configurations of the default search space (widths 8-64, blocks conv/res/wide/"
        f"ecb/dws/skip, x2) at the 640x360 LR size of a {w}x{h} output, each compiled alone with the compiler's own "
        f"kernels and timed on {table.header['threads']} threads: chunks of 32 layers compiled, then timed "
        "round-robin, 5 rounds (each timed run the second of two back to back), median; plus the pruned layers "
        "of the default search (block 4x8 / pattern at its ratios, beside their dense twins; Winograd layers also "
        "timed with the direct kernel, the reference of the sparse speed factors).",
        f"- Validation: {result['n']} random sub-networks (seed 2000; every second one pruned at random with the "
        "default search's schemes and ratios, as the networks a run deploys), each compiled whole with `compile_model` "
        f"(checked against PyTorch) and timed round-robin in groups of 5 ({len(result['rows'][0]['samples_ms'])} "
        f"rounds, median): {meas[0]:.0f}-{meas[-1]:.0f} ms per frame.",
        f"- Calibration used for the numbers below: {c['networks']} further random networks measured in the same "
        f"session, spread over the groups: measured = {c['alpha']:.3f} x sum + {c['beta_ms']:.1f} ms "
        f"+ {c['gamma_ms']:.2f} ms x layers. With the calibration stored by `build` ({len(cal['points'])} networks "
        f"measured in the build's session, each beside its own layers timed alone in the same rounds: "
        f"{cal['alpha']:.3f} x their sum + {cal['beta_ms']:.1f} ms) the ranking is the same but every prediction "
        "is off by the change of machine load between the table's session and the validation's.",
        f"- Noise floor of this session: even the best single factor measured = a x sum, fitted on the validation "
        f"networks themselves, leaves MAPE {_best_factor(result):.2f}%.", "",
        "| metric | same-session calibration | stored calibration | done when | goal |",
        "| --- | ---: | ---: | ---: | ---: |",
        f"| MAPE | {result['mape_pct']:.2f}% | {result['mape_stored_pct']:.2f}% | <= 10% | <= 5% |",
        f"| Spearman | {result['spearman']:.3f} | {result['spearman_stored']:.3f} | >= 0.9 | >= 0.97 |", "",
        f"MAPE by block type present (same-session): {_per_block(result['rows'])}.", "",
        f"The tail (tail conv + bicubic skip + PixelShuffle, timed as one subgraph) is {min(share):.0f}-"
        f"{max(share):.0f}% of each network's summed layer time. The table times what the compiler does at the "
        "time of the build (its sources are hashed in the table's header); rebuild it (`--force`) after a compiler "
        "change.", "",
    ]
    for path in args.earlier:
        e = _split_session(json.loads(path.read_text()), table)
        lines += [f"Earlier session ({e['n']} networks, same seed, {path.name}): stored "
                  f"calibration MAPE {e['mape_stored']:.2f}%, Spearman {e['spearman_stored']:.3f}; re-scored as "
                  f"`validate` does now (overhead fitted on 6 of its networks, scored on the other {e['n_split']}): "
                  f"MAPE {e['mape_split']:.2f}%, Spearman {e['spearman_split']:.3f}.", ""]
    lines += [f"![predicted vs measured]({plot.name})"]
    text = "\n".join(lines)
    print(text)
    if args.doc:
        update_section(section, text)


if __name__ == "__main__":
    main()
