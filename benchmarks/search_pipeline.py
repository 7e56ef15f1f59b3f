"""The search pipeline against its done-when: budgets x methods x seeds, and the reference models.

Methods (issue 20's evidence; `--methods`): "fp32" = the configured sampler (TPE) over fp32 layers (the search as
issue 7 measured it), "int8" = the same with per-layer precisions [fp32, int8], "random-int8" = random search with
precisions, "random-fp32" = random search over fp32 (issue 7's comparison). Each method runs once per seed (the
search's and the fine-tuning's seed; `--seeds`) and budget. The stages before the search do not depend on the
budget or the seed: one shared supernet, and one latency table per precision set (fp32 alone, and fp32 + int8,
measured one after the other), copied into each run. The reference models (FSRCNN, ESPCN, the ECB-style model) are
trained on the same data with the same number of optimizer steps of the same batch as the pipeline's training
(supernet + fine-tuning steps), compiled with the same compiler and timed in one interleaved session, in fp32 and
(where they have an int8 form: not FSRCNN's deconv) quantised with the same QAT budget as the pipeline's int8
winners (`finetune.qat_steps`) and compiled to the int8 c-lib. Writes docs/benchmarks.md section `search`.

Usage: python benchmarks/search_pipeline.py [--budgets 30,50] [--methods fp32,int8,random-int8] [--seeds 0,1,2]
       [--out runs/bench-search] [--doc [SECTION]]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks._report import add_doc_arg, doc_flag, doc_section, machine, update_section, write_json  # noqa: E402

REFERENCES = ("fsrcnn", "espcn", "ecbsr")
INT8_REFERENCES = ("espcn", "ecbsr")  # FSRCNN's transposed conv has no int8 form
# method -> (sampler, precisions); None = the config's sampler
METHODS = {"fp32": (None, ["fp32"]), "int8": (None, ["fp32", "int8"]), "random-int8": ("random", ["fp32", "int8"]),
           "random-fp32": ("random", ["fp32"])}


def srprune(*args: str, fail_ok: bool = False) -> str | None:
    """Run the CLI as a user would; progress bars go to the log, not here. A failure stops the benchmark, or with
    `fail_ok` (a pipeline run: a method that finds nothing in the window is a result) returns its `error:` line."""
    cmd = [sys.executable, "-c", "from srprune.cli import main; main()", *map(str, args)]
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if r.returncode == 0:
        return None
    errors = [ln for ln in r.stderr.splitlines() if ln.startswith("error: ")]
    if fail_ok and r.returncode == 2 and errors:
        return errors[-1]
    sys.exit(f"srprune {' '.join(map(str, args))} failed:\n{r.stderr[-3000:]}")


def _config(base_cfg: dict, run: Path, precisions: list[str], **changes) -> dict:
    c = json.loads(json.dumps(base_cfg))
    c.update(run_dir=str(run), **{k: v for k, v in changes.items() if "." not in k})
    c["search"]["precisions"] = list(precisions)
    for key, value in changes.items():
        if "." in key:
            section, name = key.split(".")
            c[section][name] = value
    return c


def bases(base_cfg: dict, methods: list[str], out: Path) -> dict[str, Path]:
    """One run folder per precision set the methods need, with the latency table and the supernet done (the supernet
    trained once, copied into the others before their latency stage)."""
    sets = sorted({tuple(METHODS[m][1]) for m in methods}, key=len)
    made: dict[str, Path] = {}
    for precisions in sets:
        key = ",".join(precisions)
        base = out / ("base-" + "-".join(precisions))
        if made and not (base / "stages.json").exists():
            shutil.copytree(next(iter(made.values())), base, dirs_exist_ok=True)
        (out / f"{base.name}.yaml").write_text(yaml.safe_dump(_config(base_cfg, base, list(precisions))))
        for stage in ("latency", "supernet"):
            print(f"[bench] {base.name}: {stage}", flush=True)
            srprune("run", "-c", out / f"{base.name}.yaml", "--stage", stage)
        made[key] = base
    return made


def pipeline_runs(base_cfg: dict, budgets: list[float], methods: list[str], seeds: list[int], out: Path,
                  on_result=None) -> dict:
    """One whole pipeline per (budget, method, seed) from the shared bases; returns their results by run name.
    `on_result(results)` after each run (the benchmark keeps a partial JSON: a run cut short can still be reported)."""
    made = bases(base_cfg, methods, out)
    results = {}
    for budget in budgets:
        for seed in seeds:
            for method in methods:
                sampler, precisions = METHODS[method]
                name = f"{method}-{budget:g}ms-seed{seed}"
                run = out / name
                if not (run / "stages.json").exists():
                    shutil.copytree(made[",".join(precisions)], run, dirs_exist_ok=True)
                c = _config(base_cfg, run, precisions, budget_ms=budget, **{
                    "search.sampler": sampler or base_cfg["search"]["sampler"], "search.seed": seed,
                    "finetune.seed": seed})
                (out / f"{name}.yaml").write_text(yaml.safe_dump(c))
                print(f"[bench] {name}", flush=True)
                started = time.perf_counter()
                error = srprune("run", "-c", out / f"{name}.yaml", fail_ok=True)
                if error:
                    print(f"[bench] {name}: {error}", flush=True)
                    results[name] = {"budget_ms": budget, "method": method, "seed": seed, "failed": error,
                                     "wall_s": time.perf_counter() - started}
                else:
                    results[name] = _result(run, budget, method, seed, time.perf_counter() - started)
                if on_result is not None:
                    on_result(results)
    return results


def _result(run: Path, budget: float, method: str, seed: int, wall_s: float) -> dict:
    states = json.loads((run / "stages.json").read_text())
    lat = json.loads((run / "compiled" / "host" / "latency.json").read_text())
    metrics = json.loads((run / "eval" / "metrics.json").read_text())
    chosen = json.loads((run / "search" / "chosen.json").read_text())
    return {"budget_ms": budget, "method": method, "seed": seed, "measured_ms": lat["measured_ms"],
            "min_ms": lat["min_ms"], "max_ms": lat["max_ms"], "predicted_ms": lat["predicted_ms"],
            "precision": lat.get("precision", "fp32"), "psnr": metrics["datasets"]["builtin"]["final"]["psnr"],
            "ssim": metrics["datasets"]["builtin"]["final"]["ssim"], "proxy_psnr": chosen["proxy_psnr"],
            "genome": chosen["genome"], "prune": chosen["prune"], "layer_precision": chosen.get("precision", {}),
            "stage_seconds": {k: v.get("seconds") for k, v in states.items()}, "replans": _replans(run),
            "wall_s": wall_s}


def _replans(run: Path) -> list[dict]:
    """The over-budget measurements the pipeline replanned after (search/feedback.json)."""
    path = run / "search" / "feedback.json"
    return json.loads(path.read_text()) if path.exists() else []


def references(steps: int, cfg: dict, out: Path, rounds: int = 15) -> dict:
    """Train the reference models for `steps`; quantise those with an int8 form (QAT at the pipeline's budget);
    compile each for the host (fp32: the TVM build, int8: the int8 c-lib) and time them all interleaved."""
    from compiler.build import compile_checked
    from compiler.clib.runner import process_timer
    from compiler.latency.measure import built_network
    from compiler.latency.runners import POOL_SETTLE_S, LocalRunner, interleaved
    from compiler.targets import get_target
    from srprune.baselines import run_demo
    from srprune.data import load_dataset
    from srprune.evaluate import mean_score, score_pairs
    from srprune.frame import parse_size
    from srprune.models import deploy
    from srprune.models.modelfile import load_model

    print(f"[bench] references: {steps} steps each", flush=True)
    doc = run_demo(out / "references", steps=steps, models=REFERENCES)
    target = get_target("host", cfg["threads"])
    w, h = parse_size(cfg["output_size"])
    shape = (1, 3, h // cfg["scale"], w // cfg["scale"])
    qat = int(cfg["finetune"]["qat_steps"])
    val = load_dataset("builtin", cfg["scale"], split="val")
    timers, names, scores = [], [], {}
    runner = LocalRunner(target.threads)
    for name in REFERENCES:
        path = out / "references" / "train" / name / "model.pt"
        model, _ = load_model(path)
        timers.append(runner.timer(built_network(compile_checked(deploy(model).eval(), shape, target))))
        names.append(name)
        scores[name] = doc["models"][name]
        if name not in INT8_REFERENCES:
            continue
        qpath, qdir = out / "references" / f"{name}-int8.pt", out / "references" / f"{name}-int8"
        if not qpath.exists():
            srprune("quantize", path, "--calib", "builtin", "-o", qpath, "--qat-steps", qat, "--distill",
                    cfg["finetune"]["distill"], "--batch-size", cfg["finetune"]["batch_size"],
                    "--patch-size", cfg["finetune"]["patch_size"])
        srprune("compile", qpath, "--target", "host", "--threads", cfg["threads"], "--format", "c-lib",
                "--size", cfg["output_size"], "-o", qdir, "--force")
        timers.append(process_timer(qdir, target.threads, settle_s=POOL_SETTLE_S))  # as the compile stage
        names.append(f"{name}-int8")
        qmodel, _ = load_model(qpath)
        s = mean_score(score_pairs(qmodel, val, cfg["scale"]))
        scores[f"{name}-int8"] = {"psnr": s.psnr, "ssim": s.ssim, "train_seconds": None}
    samples = interleaved(timers, rounds)
    res = {}
    for name, s in zip(names, samples):
        m = scores[name]
        res[name] = {"psnr": m["psnr"], "ssim": m["ssim"], "measured_ms": statistics.median(s), "min_ms": min(s),
                     "max_ms": max(s), "train_steps": steps, "qat_steps": qat if name.endswith("-int8") else 0}
    res["bicubic"] = {"psnr": doc["models"]["bicubic"]["psnr"], "ssim": doc["models"]["bicubic"]["ssim"]}
    return res


def _stats(values: list[float]) -> tuple[float, float, float]:
    return statistics.mean(values), min(values), max(values)


def report(cfg: dict, runs: dict, refs: dict, budgets: list[float], methods: list[str], seeds: list[int],
           steps: int, wall_s: float, config: str = "configs/demo.yaml", section: str = "search") -> str:
    """The docs section (markdown): per budget and method the mean and spread over seeds, the references, and the
    verdicts of issue 20 (int8 search vs fp32 search, random search and the references; budget fill)."""
    lines = ["## Search pipeline: budgets x methods x seeds (fp32 vs mixed-precision search), and the references", "",
             f"Machine: {machine(cfg['threads'])}; target host, {cfg['output_size']} output (x{cfg['scale']}). "
             f"Command: `python benchmarks/search_pipeline.py --budgets {','.join(f'{b:g}' for b in budgets)} "
             f"--methods {','.join(methods)} --seeds {','.join(map(str, seeds))} --config {config} "
             f"{doc_flag(section, 'search')}` "
             f"({wall_s / 60:.0f} min). Config: {config} (supernet {cfg['supernet']['train']['steps']} steps, "
             f"{cfg['search']['trials']} + {cfg['search']['ratio_trials']} trials, fine-tuning "
             f"{cfg['finetune']['steps']} steps, QAT {cfg['finetune']['qat_steps']} steps for int8 winners), budget, "
             "sampler, precisions and seeds replaced. Latency = median of 25 interleaved runs of the compiled network "
             "(int8 winners and references: the int8 c-lib, each timed run a fresh process, its srmodel_bench); "
             "PSNR-Y/SSIM-Y on the built-in validation images by the project protocol. "
             "Seeds: the search's and the fine-tuning's (supernet and latency tables shared).",
             f"Reference models: trained on the same images for {steps} steps (= supernet + fine-tuning steps) of the "
             "same batch and patch size, compiled with the same compiler, timed in one interleaved session; -int8 = "
             f"quantised with {cfg['finetune']['qat_steps']} QAT steps (`srprune quantize`), the int8 c-lib.", "",
             "| budget ms | method | seeds | PSNR-Y mean (min-max) | measured / budget mean (min-max) | fit budget | "
             "int8 layers | measured / predicted |", "| ---: | --- | ---: | --- | --- | ---: | --- | --- |"]
    groups: dict[tuple[float, str], list[dict]] = {}
    failed: dict[tuple[float, str], list[dict]] = {}
    for r in runs.values():
        (failed if "failed" in r else groups).setdefault((r["budget_ms"], r["method"]), []).append(r)
    verdicts = []
    for budget in budgets:
        for method in methods:
            rs, bad = groups.get((budget, method), []), failed.get((budget, method), [])
            if bad and not rs:
                lines.append(f"| {budget:g} | {method} | {len(bad)} | no network (all seeds) | - | 0/{len(bad)} | - | - |")
            if not rs:
                continue
            p, f = _stats([r["psnr"] for r in rs]), _stats([r["measured_ms"] / budget for r in rs])
            fit = sum(r["measured_ms"] <= budget for r in rs)
            int8 = ", ".join(str(sum(v == "int8" for v in r.get("layer_precision", {}).values())) for r in rs)
            none = f" + {len(bad)} without a network" if bad else ""
            ratios = ", ".join(f"{r['measured_ms'] / r['predicted_ms']:.2f}" for r in rs)
            lines.append(f"| {budget:g} | {method} | {len(rs)}{none} | {p[0]:.4f} ({p[1]:.4f}-{p[2]:.4f}) | "
                         f"{f[0]:.0%} ({f[1]:.0%}-{f[2]:.0%}) | {fit}/{len(rs) + len(bad)} | {int8} | {ratios} |")
        for n, r in refs.items():
            if n == "bicubic":
                continue
            tag = "" if r["measured_ms"] <= budget else " (over budget)"
            lines.append(f"| {budget:g} | {n}{tag} | - | {r['psnr']:.4f} | {r['measured_ms'] / budget:.0%} "
                         f"({r['min_ms'] / budget:.0%}-{r['max_ms'] / budget:.0%}) | "
                         f"{'1/1' if not tag else '0/1'} | {'all' if n.endswith('-int8') else '-'} | - |")
        verdicts += _verdicts(budget, groups, refs, failed, len(seeds))
    lines += ["", f"Bicubic: {refs['bicubic']['psnr']:.4f} dB. Verdicts (issue 20):"] + verdicts
    lines += ["", "Chosen networks:"]
    for name, r in runs.items():
        if "failed" in r:
            lines.append(f"- {name}: no network deployed: {r['failed']}")
            continue
        cells = " ".join("skip" if c["block"] == "skip" else f"{c['block']}{c['width']}" for c in r["genome"]["cells"])
        pruned = ", ".join(f"{k} {v['scheme']} {v['ratio']:.2f}" for k, v in r["prune"].items()) or "none"
        int8 = ", ".join(k for k, v in r.get("layer_precision", {}).items() if v == "int8") or "none"
        replans = "; ".join(f"{f.get('measured_ms', 0):.1f} ms measured vs {f['predicted_ms']:.1f} predicted"
                            for f in r.get("replans", []))
        lines.append(f"- {name}: {r['measured_ms']:.1f} ms ({r['precision']}; predicted {r['predicted_ms']:.1f}), "
                     f"PSNR-Y {r['psnr']:.4f}; head "
                     f"{r['genome']['head']}, cells {cells}; pruned: {pruned}; int8: {int8}; proxy "
                     f"{r['proxy_psnr']:.3f} dB" + (f"; replanned ({replans})" if replans else ""))
    return "\n".join(lines)


def _verdicts(budget: float, groups: dict, refs: dict, failed: dict | None = None, n_seeds: int = 0) -> list[str]:
    """Issue 20's done-when at one budget: (b) = int8, (a) = fp32, (c) = random-int8 (seeds that deployed no
    network, `failed`, count against their method; fewer than `n_seeds` finished: a partial report, no verdict
    on the margin)."""
    out = []
    failed = failed or {}
    b, a, c = (groups.get((budget, m), []) for m in ("int8", "fp32", "random-int8"))
    if not b:
        if failed.get((budget, "int8")):
            out.append(f"- {budget:g} ms: the int8 search deployed no network (NOT met)")
        return out
    if failed.get((budget, "random-int8")):
        out.append(f"- {budget:g} ms: random search with precisions deployed no network in "
                   f"{len(failed[(budget, 'random-int8')])} seed(s): "
                   f"{failed[(budget, 'random-int8')][0]['failed'].removeprefix('error: ')}")
    pb = [r["psnr"] for r in b]
    if a:
        pa = [r["psnr"] for r in a]
        margin = statistics.mean(pb) - statistics.mean(pa)
        spread = max(max(pb) - min(pb), max(pa) - min(pa))
        missing = len(failed.get((budget, "int8"), [])) + len(failed.get((budget, "fp32"), []))
        verdict = "met" if margin > spread else "NOT met"
        if missing:  # a mean over the seeds that deployed something is no comparison of the methods
            verdict = f"not comparable: {len(pb)} int8 and {len(pa)} fp32 seeds deployed a network"
        elif min(len(pb), len(pa)) < n_seeds:
            verdict = f"partial: {len(pb)} int8 and {len(pa)} fp32 of {n_seeds} seeds finished, no verdict"
        out.append(f"- {budget:g} ms: int8 search {statistics.mean(pb):.4f} dB vs fp32 search "
                   f"{statistics.mean(pa):.4f} dB: margin {margin:+.4f} dB vs seed spread {spread:.4f} dB "
                   f"({verdict})")
    if c:
        pc = [r["psnr"] for r in c]
        ok = statistics.mean(pb) > statistics.mean(pc)
        out.append(f"- {budget:g} ms: int8 search vs random search with precisions {statistics.mean(pc):.4f} dB "
                   f"({'met' if ok else 'NOT met'})")
    fitting = [n for n, r in refs.items() if n != "bicubic" and r["measured_ms"] <= budget]
    beaten = [n for n in fitting if statistics.mean(pb) > refs[n]["psnr"]]
    out.append(f"- {budget:g} ms: references within the budget: {', '.join(fitting) or 'none'}; beaten by the int8 "
               f"search's mean: {', '.join(beaten) or 'none'} ({'met' if len(beaten) == len(fitting) else 'NOT met'})")
    fills = [r["measured_ms"] / budget for r in b]
    ok = all(0.85 <= f <= 1.0 for f in fills) and not failed.get((budget, "int8"))
    none = len(failed.get((budget, "int8"), []))
    out.append(f"- {budget:g} ms: int8 search's seeds at {', '.join(f'{f:.0%}' for f in fills)} of the budget"
               + (f", {none} without a network" if none else "") + f" ({'met' if ok else 'NOT met'}: goal 85-100% each)")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--budgets", default="30,50")
    ap.add_argument("--methods", default="fp32,int8,random-int8", help=f"of {', '.join(METHODS)}")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--config", type=Path, default=ROOT / "configs" / "demo.yaml")
    ap.add_argument("--out", type=Path, default=Path("runs/bench-search"))
    ap.add_argument("--json", type=Path, default=None)
    add_doc_arg(ap, "search")
    ap.add_argument("--from-json", type=Path, default=None, help="only re-render an earlier run's --json output "
                    "(or OUT/partial.json, written after each run)")
    args = ap.parse_args()
    started = time.perf_counter()
    budgets = [float(b) for b in args.budgets.split(",")]
    methods = args.methods.split(",")
    seeds = [int(v) for v in args.seeds.split(",")]
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        sys.exit(f"error: unknown method(s) {', '.join(unknown)} (known: {', '.join(METHODS)})")
    cfg = yaml.safe_load(args.config.read_text())
    from srprune.search.config import resolve

    cfg = resolve({**cfg, "run_dir": str(args.out)})
    steps = int(cfg["supernet"]["train"]["steps"]) + int(cfg["finetune"]["steps"])
    if args.from_json:
        data = json.loads(args.from_json.read_text())
        runs, refs, wall = data["runs"], data["references"], data["wall_s"]
    else:
        args.out.mkdir(parents=True, exist_ok=True)
        refs = references(steps, cfg, args.out)  # first: runs cut short can still be compared with them

        def partial(runs: dict) -> None:
            write_json(args.out / "partial.json", {"runs": runs, "references": refs,
                                                   "wall_s": time.perf_counter() - started})
        runs = pipeline_runs(cfg, budgets, methods, seeds, args.out, partial)
        wall = time.perf_counter() - started
    config = str(args.config.relative_to(ROOT) if args.config.is_relative_to(ROOT) else args.config)
    section = doc_section(args.doc, "search")
    text = report(cfg, runs, refs, budgets, methods, seeds, steps, wall, config, section)
    print(text)
    if args.json:
        write_json(args.json, {"runs": runs, "references": refs, "wall_s": wall})
    if args.doc:
        update_section(section, text)


if __name__ == "__main__":
    main()
