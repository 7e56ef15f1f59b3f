"""Is the search's mixed-precision proxy a good rank of candidates? (issue 20; the precision analogue of
benchmarks/supernet_proxy.py)

Given a trained supernet (a `srprune supernet train` checkpoint) and a run config (its search, data and finetune
settings; configs/demo.yaml by default, with precisions [fp32, int8]), N random candidates sampled as stage 2's
random trials sample them (srprune.search.arch's suggest_* on an Optuna RandomSampler: genome, a scheme per
prunable layer at search.scheme_ratio, a precision per layer). For each:
- proxy: the search's score (srprune.search.candidate.candidate_psnr with the pipeline's fixed adaptation and
  calibration batches, srprune.search.pipeline.adapt_batches / fixed_batches), PSNR-Y on the validation images;
  variants named aNcM (N adaptation steps, M calibration batches; a trailing f: precision ignored, fp32);
- fine-tuned quantised PSNR: the finetune stage itself (srprune.search.stages.finetune.finetune_chosen: gradual
  pruning + distillation, then calibration and QAT of the int8 layers) at --finetune-steps / --qat-steps, PSNR-Y of
  the resulting quantized model (integer arithmetic for its int8 layers); with --noise K, the first K candidates
  are fine-tuned again with another finetune seed (how much of the ranking the target's own noise allows).
Reported: Spearman and Kendall of each proxy variant against the fine-tuned PSNR, and of "fewer int8 layers".

Candidates are scored in shards (one process per shard, resumable: one WORK/rows/NNN.json per candidate); the
shard that finds every row done writes WORK/results.json and the docs/benchmarks.md section.

    .venv/bin/python benchmarks/precision_proxy.py --checkpoint RUN/supernet/checkpoint.pt --work /tmp/pproxy \
        [--candidates 20 --finetune-steps 200 --qat-steps 40 --shard 0/2 --threads 1] [--no-doc]
    .venv/bin/python benchmarks/precision_proxy.py ... --variants a20c4,a50c4 --rescore   # more proxies, same rows
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from pathlib import Path
from statistics import median
from typing import Any

import torch
from scipy.stats import kendalltau, spearmanr

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _report import machine, update_section, write_json  # noqa: E402
from srprune.search.pipeline import CALIB_BATCHES as CALIB  # noqa: E402

VARIANT = re.compile(r"^a(\d+)c(\d+)(f?)$")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", type=Path, required=True, help="supernet training checkpoint")
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--config", type=Path, default=Path("configs/demo.yaml"), help="run config (search, finetune)")
    ap.add_argument("--candidates", type=int, default=20)
    ap.add_argument("--finetune-steps", type=int, default=None, help="default: the config's finetune.steps")
    ap.add_argument("--qat-steps", type=int, default=None, help="default: the config's finetune.qat_steps")
    ap.add_argument("--noise", type=int, default=0,
                    help="fine-tune the first K candidates again with a second seed, and in fp32 (precisions dropped)")
    ap.add_argument("--variants", type=str, default=None,
                    help="proxy variants aNcM[f], comma-separated; default: the config's (search) one, the same "
                    "without adaptation, and the same in fp32")
    ap.add_argument("--shard", type=str, default="0/1", help="I/N: this process scores candidates i with i %% N == I")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--rescore", action="store_true", help="only add missing proxy variants to the stored rows")
    ap.add_argument("--no-doc", action="store_true", help="do not rewrite docs/benchmarks.md")
    ap.add_argument("--note", type=str, default="", help="conditions and findings for the doc (where the checkpoint "
                    "came from, other commands run on the same WORK)")
    args = ap.parse_args()
    try:
        index, count = (int(x) for x in args.shard.split("/"))
        if not 0 <= index < count:
            raise ValueError
    except ValueError:
        sys.exit(f"error: --shard {args.shard}: expected I/N with 0 <= I < N")
    torch.set_num_threads(args.threads)
    bench = Bench(args)
    for i in range(index, args.candidates, count):
        bench.score(i)
    rows = bench.rows()
    if len(rows) < args.candidates:
        print(f"shard {args.shard} done; {len(rows)}/{args.candidates} candidates scored so far")
        return
    res = bench.results(rows)
    write_json(args.work / "results.json", res)
    print(report(res))
    if not args.no_doc:
        update_section("precision_proxy", report(res))


class Bench:
    """The supernet, config, fixed batches and candidates of one benchmark run (WORK)."""

    def __init__(self, args: argparse.Namespace) -> None:
        from srprune.search import config as config_mod
        from srprune.search.arch import SearchContext
        from srprune.search.supernet_stage import val_tensors
        from supernet.space import SearchSpace
        from supernet.train import load_checkpoint, supernet_from_checkpoint

        self.args = args
        raw = config_mod.read_yaml(args.config)
        raw["run_dir"] = str(args.work / "run")
        raw["search"] = {**raw.get("search", {}), "precisions": ["fp32", "int8"]}
        ft = dict(raw.get("finetune") or {})
        if args.finetune_steps is not None:
            ft["steps"] = args.finetune_steps
        if args.qat_steps is not None:
            ft["qat_steps"] = args.qat_steps
        raw["finetune"] = ft
        self.raw = config_mod.resolve(raw, str(args.config))
        self.cfg = config_mod.RunConfig.from_dict(self.raw)
        self.net = supernet_from_checkpoint(args.checkpoint).eval()
        self.step = int(load_checkpoint(args.checkpoint)["step"])
        self.scale = self.net.space.scales[0]
        self.val = val_tensors(self.cfg.val_data, self.scale)
        self.ctx = SearchContext(supernet=self.net, space=SearchSpace.from_dict(self.cfg.supernet.space), val=self.val,
                                 predictor=None, out_hw=self.cfg.out_hw, scale=self.scale,
                                 budget_ms=float(self.cfg.budget_ms), search=self.cfg.search)
        s = self.cfg.search
        self.variants = (args.variants.split(",") if args.variants else
                         [f"a{s.adapt_steps}c{CALIB}", f"a0c{CALIB}", f"a{s.adapt_steps}c{CALIB}f"])
        for v in self.variants:
            if not VARIANT.match(v):
                sys.exit(f"error: --variants: {v!r} is not aNcM or aNcMf (N adaptation steps, M calibration batches)")
        self.cands = sample_candidates(self.ctx, args.candidates, args.seed)
        self._batches: dict[tuple[int, int], list] = {}

    def batches(self, n: int, offset: int) -> list:
        """The pipeline's fixed training batches (cached): offset 777 adaptation, 888 calibration."""
        from srprune.search.pipeline import fixed_batches

        key = (n, offset)
        if key not in self._batches:
            self._batches[key] = fixed_batches(self.cfg, self.scale, n, offset)
        return self._batches[key]

    def proxy(self, cand: Any, variant: str) -> float:
        """The candidate's proxy PSNR-Y under one variant."""
        from srprune.search.candidate import Candidate, candidate_psnr

        adapt, calib, fp32 = VARIANT.match(variant).groups()
        if fp32:
            cand = Candidate(cand.genome, cand.prune)
        return candidate_psnr(self.net, cand, self.val, self.batches(int(adapt), 777), self.cfg.search.adapt_lr,
                              [lr for lr, _ in self.batches(int(calib), 888)])

    def tuned(self, i: int, cand: Any, key: str) -> float:
        """PSNR-Y of the candidate after the finetune stage (pruning, distillation, QAT) with finetune seed `key`
        ("0"), or with its precisions dropped ("0-fp32": plain fp32 fine-tuning, what int8 costs after QAT)."""
        from srprune.search.candidate import Candidate
        from srprune.layout import RunLayout
        from srprune.search import config as config_mod
        from srprune.search.stages.finetune import finetune_chosen

        raw = json.loads(json.dumps(self.raw))
        raw["finetune"]["seed"] = int(key.split("-")[0])
        if key.endswith("-fp32"):
            cand = Candidate(cand.genome, cand.prune)
        layout = RunLayout(self.args.work / "runs" / f"{i:03d}-s{key}", self.cfg.target)
        layout.supernet.mkdir(parents=True, exist_ok=True)
        if not layout.supernet_checkpoint.exists():
            os.symlink(self.args.checkpoint.resolve(), layout.supernet_checkpoint)
        out = finetune_chosen(config_mod.RunConfig.from_dict(raw), layout, {**cand.to_dict(), "proxy_psnr": 0.0},
                              progress=False)
        return float(out["val_psnr"])

    def row_path(self, i: int) -> Path:
        return self.args.work / "rows" / f"{i:03d}.json"

    def score(self, i: int) -> None:
        """Candidate i's row: proxies of every variant, fine-tuned PSNR per seed (what is missing only)."""
        from srprune.quant.plan import precision_layers
        from srprune.search.candidate import extract_deployed

        path, cand = self.row_path(i), self.cands[i]
        row = json.loads(path.read_text()) if path.exists() else {
            "candidate": cand.to_dict(), "int8_layers": len(cand.precision), "pruned_layers": len(cand.prune),
            "layers": len(precision_layers(extract_deployed(self.net, cand.genome))), "proxy": {},
            "proxy_seconds": {}, "tuned": {}, "tuned_seconds": {}}
        if row["candidate"] != cand.to_dict():
            sys.exit(f"error: {path} holds another candidate (other --seed or config?); use another --work")
        for v in self.variants:
            if v not in row["proxy"]:
                t0 = time.perf_counter()
                row["proxy"][v] = self.proxy(cand, v)
                row["proxy_seconds"][v] = time.perf_counter() - t0
                write_json(path, row)
        if not self.args.rescore:
            f = self.cfg.finetune
            keys = [str(f.seed)] + ([str(f.seed + 1), f"{f.seed}-fp32"] if i < self.args.noise else [])
            for key in keys:
                if key not in row["tuned"]:
                    t0 = time.perf_counter()
                    row["tuned"][key] = self.tuned(i, cand, key)
                    row["tuned_seconds"][key] = time.perf_counter() - t0
                    write_json(path, row)
        print(f"{i + 1}/{len(self.cands)}: {row['int8_layers']}/{row['layers']} int8, {row['pruned_layers']} pruned; "
              + ", ".join(f"{k} {v:.3f}" for k, v in row["proxy"].items())
              + "; fine-tuned " + ", ".join(f"seed {k} {v:.3f}" for k, v in row["tuned"].items()), flush=True)

    def rows(self) -> list[dict]:
        """The finished rows (every variant and the first fine-tuning seed), in candidate order."""
        seed = str(self.cfg.finetune.seed)
        out = []
        for i in range(self.args.candidates):
            p = self.row_path(i)
            if p.exists():
                r = json.loads(p.read_text())
                if seed in r["tuned"] and all(v in r["proxy"] for v in self.variants):
                    out.append(r)
        return out

    def results(self, rows: list[dict]) -> dict:
        """The correlations of every proxy variant (and the baseline) with the fine-tuned PSNR."""
        seed = str(self.cfg.finetune.seed)
        target = [r["tuned"][seed] for r in rows]
        corr = {v: correlations([r["proxy"][v] for r in rows], target) for v in self.variants}
        corr["fewer int8 layers"] = correlations([-r["int8_layers"] for r in rows], target)
        other, fp32 = str(self.cfg.finetune.seed + 1), f"{seed}-fp32"
        noisy = [r for r in rows if other in r["tuned"] and fp32 in r["tuned"]]
        noise = None
        if len(noisy) >= 3:
            a, b = [r["tuned"][seed] for r in noisy], [r["tuned"][other] for r in noisy]
            diffs = [x - y for x, y in zip(a, b)]
            noise = {"candidates": len(noisy), "seeds": [seed, other], **correlations(a, b),
                     "mean_abs_diff_db": sum(map(abs, diffs)) / len(diffs),
                     "proxy_vs_seed": {k: {v: correlations([r["proxy"][v] for r in noisy], t) for v in self.variants}
                                       for k, t in ((seed, a), (other, b))}}
            f32 = [r["tuned"][fp32] for r in noisy]
            noise["fp32"] = {"int8_cost_db": [x - y for x, y in zip(f32, a)], **correlations(f32, a),
                             "int8_layers": [r["int8_layers"] for r in noisy]}
        f = self.cfg.finetune
        return {"checkpoint": str(self.args.checkpoint), "config": str(self.args.config),
                "supernet_step": self.step, "space": self.net.space.to_dict(), "seed": self.args.seed,
                "search": {"adapt_steps": self.cfg.search.adapt_steps, "adapt_lr": self.cfg.search.adapt_lr,
                           "scheme_ratio": self.cfg.search.scheme_ratio, "schemes": list(self.cfg.search.schemes)},
                "finetune": {"steps": f.steps, "qat_steps": f.qat_steps, "batch_size": f.batch_size,
                             "patch_size": f.patch_size, "lr": f.lr, "distill": f.distill, "seed": f.seed},
                "threads": self.args.threads, "shards": int(self.args.shard.split("/")[1]),
                "machine": machine(self.args.threads),
                "load_average": os.getloadavg(), "work": str(self.args.work), "note": self.args.note,
                "variants": self.variants,
                "correlation": corr, "noise": noise, "rows": rows}


def correlations(a: list[float], b: list[float]) -> dict[str, float]:
    """Spearman and Kendall rank correlation of two score lists."""
    return {"spearman": float(spearmanr(a, b).statistic), "kendall": float(kendalltau(a, b).statistic)}


def sample_candidates(ctx: Any, n: int, seed: int) -> list:
    """`n` candidates as stage 2's random trials draw them (genome; scheme per prunable layer; precision per layer)."""
    import optuna

    from srprune.search.arch import suggest_genome, suggest_precisions, suggest_schemes
    from srprune.search.candidate import Candidate

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=optuna.samplers.RandomSampler(seed=seed))
    out = []
    while len(out) < n:
        trial = study.ask()
        genome = suggest_genome(trial, ctx.space, ctx.scale)
        if genome is not None:
            out.append(Candidate(genome, suggest_schemes(trial, genome, ctx), suggest_precisions(trial, genome, ctx)))
        study.tell(trial, state=optuna.trial.TrialState.PRUNED)
    return out


def describe(c: dict) -> str:
    """'conv16 res24/24* skip, head 16; int8: head c1 tail': a candidate in a table cell (* = pruned layers)."""
    cells = []
    for i, cell in enumerate(c["genome"]["cells"]):
        if cell["block"] == "skip":
            cells.append("skip")
            continue
        pruned = sum(1 for k in c["prune"] if k.startswith(f"cells.{i}."))
        cells.append(f"{cell['block']}{cell['width']}" + "".join(f"/{w}" for w in cell["layers"]) + "*" * pruned)
    int8 = [k.replace("cells.", "") for k in c.get("precision", {})]
    return f"{' '.join(cells)}, head {c['genome']['head']}; int8: {' '.join(int8) or '-'}"


def report(res: dict) -> str:
    """The docs/benchmarks.md section."""
    f, s, rows = res["finetune"], res["search"], res["rows"]
    search_v = res["variants"][0]
    cmd = (f"`.venv/bin/python benchmarks/precision_proxy.py --checkpoint {res['checkpoint']} --work {res['work']} "
           f"--candidates {len(rows)} --finetune-steps {f['steps']} --qat-steps {f['qat_steps']} "
           f"--threads {res['threads']} --shard I/{res['shards']}` for I < {res['shards']} ({res['shards']} processes "
           f"of {res['threads']} torch thread(s) at once)")
    c = res["correlation"]
    lines = [
        "## Mixed-precision proxy (issue 20): rank of random candidates against fine-tuned quantised PSNR",
        "",
        f"Machine: {res['machine']}. Command: {cmd}. **Measured under load** (other jobs shared the 2 cores; the "
        "correlations do not depend on it, the seconds do): median per candidate "
        f"{median(r['proxy_seconds'][search_v] for r in rows):.0f} s for the search's proxy, "
        f"{median(r['tuned_seconds'][str(f['seed'])] for r in rows):.0f} s for the fine-tuning.",
        "",
        f"Supernet: `{res['checkpoint']}`, {res['supernet_step']} training steps, trained as configs/demo.yaml trains "
        f"it (space {json.dumps(res['space'])}). {len(rows)} candidates drawn as stage 2's random trials draw them "
        f"(Optuna RandomSampler seed {res['seed']} over srprune.search.arch's parameters: genome, a scheme of "
        f"{s['schemes']} per prunable layer at ratio {s['scheme_ratio']}, fp32 or int8 per layer). Proxy variants "
        "aNcM: N adaptation steps (Adam, lr "
        f"{s['adapt_lr']:g}, the pipeline's fixed batches) and M fixed calibration batches of the int8 ranges, then "
        "PSNR-Y on the built-in validation images; f: precision ignored (fp32). The search's proxy is "
        f"**{search_v}**. Fine-tuned = the finetune stage itself (`finetune_chosen`: {f['steps']} steps of gradual "
        f"pruning + distillation from the largest sub-network, batch {f['batch_size']} x {f['patch_size']} px, lr "
        f"{f['lr']:g}, then calibration + {f['qat_steps']} QAT steps of the int8 layers), PSNR-Y of the quantized "
        "model (integer arithmetic for its int8 layers).",
        "",
        "| ranking by | Spearman | Kendall |",
        "| --- | ---: | ---: |",
    ]
    for name, v in c.items():
        label = f"{name} (the search's proxy)" if name == search_v else name
        lines.append(f"| {label} | {v['spearman']:.3f} | {v['kendall']:.3f} |")
    n = res.get("noise")
    if n:
        on = {k: v[search_v]["spearman"] for k, v in n["proxy_vs_seed"].items()}
        lines += ["", f"Noise of the target: candidates 0-{n['candidates'] - 1} fine-tuned with finetune seeds "
                  f"{' and '.join(n['seeds'])}: Spearman {n['spearman']:.3f} (Kendall {n['kendall']:.3f}) between the "
                  f"two, mean |difference| {n['mean_abs_diff_db']:.3f} dB; on these candidates the search's proxy has "
                  "Spearman " + ", ".join(f"{v:.3f} against seed {k}" for k, v in on.items()) + "."]
        cost = n["fp32"]["int8_cost_db"]
        lines += ["", "What int8 costs after fine-tuning: the same candidates fine-tuned with their precisions dropped "
                  f"(fp32, same seed and steps) score {min(cost):+.3f} to {max(cost):+.3f} dB (mean "
                  f"{sum(cost) / len(cost):+.3f}) over their quantised selves (int8 layers: "
                  f"{', '.join(map(str, n['fp32']['int8_layers']))}); Spearman(fp32 fine-tuned, quantised fine-tuned) "
                  f"{n['fp32']['spearman']:.3f}."]
    for v in res["variants"]:
        if v + "f" in res["variants"]:
            pen = [r["proxy"][v + "f"] - r["proxy"][v] for r in rows]
            lines += ["", f"What the proxy charges int8: {v}f - {v} = {min(pen):+.4f} to {max(pen):+.4f} dB "
                      f"(mean {sum(pen) / len(pen):+.4f}) over the {len(rows)} candidates."]
    if res.get("note"):
        lines += ["", res["note"]]
    best = max((k for k in c if k in res["variants"]), key=lambda k: c[k]["spearman"])
    goal = "met" if c[search_v]["spearman"] >= 0.8 else "not met"
    lines += ["", f"Goal (issue 20) Spearman >= 0.8 on 20 random candidates: the search's proxy {search_v} "
              f"{c[search_v]['spearman']:.3f}, {goal}; best variant {best} {c[best]['spearman']:.3f}.", "",
              "| # | candidate (* = pruned layer) | int8 / layers | " + " | ".join(res["variants"])
              + " | fine-tuned (dB) |",
              "| ---: | --- | ---: | " + " | ".join("---:" for _ in res["variants"]) + " | ---: |"]
    seed = str(f["seed"])
    for i, r in enumerate(rows):
        lines.append(f"| {i} | {describe(r['candidate'])} | {r['int8_layers']}/{r['layers']} | "
                     + " | ".join(f"{r['proxy'][v]:.3f}" for v in res["variants"]) + f" | {r['tuned'][seed]:.3f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
