"""Stage-1 check of the accuracy proxy: is PSNR with the shared weights a good rank of sub-networks?

Given a trained supernet (a `srprune supernet train` checkpoint):
1. Proxy rate: random genomes scored per minute with the shared weights on the validation images
   (builtin val: astronaut 512x512, chelsea 300x450 HR, full images), at --rate-threads torch threads.
2. Proxy quality: N random genomes; for each, the proxy PSNR-Y and the PSNR-Y after separate
   fine-tuning of the extracted standalone network (same budget for every genome: Adam at a constant
   --finetune-lr, --finetune-steps steps of --batch LR patches of --patch px, the same patch stream for
   every genome, L1 loss, 1 thread). Spearman rank correlation is reported at several fine-tuning
   lengths, with "more MACs = better" as the baseline a proxy must beat.

    .venv/bin/python benchmarks/supernet_proxy.py --checkpoint runs/supernet-demo/supernet/checkpoint.pt \
        --work /tmp/snproxy [--no-doc | --from-results]

Prints a summary, writes WORK/results.json and the docs/benchmarks.md section `supernet_proxy`.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from scipy.stats import pearsonr, spearmanr
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _report import machine, update_section  # noqa: E402
from srprune.data import PatchSampler, load_dataset  # noqa: E402
from srprune.imresize import imresize, to_uint8  # noqa: E402
from srprune.metrics import psnr  # noqa: E402
from supernet.complexity import genome_macs, genome_params  # noqa: E402
from supernet.proxy import proxy_psnr  # noqa: E402
from supernet.standalone import extract  # noqa: E402
from supernet.train import load_checkpoint, supernet_from_checkpoint  # noqa: E402


def to_tensor(img: np.ndarray) -> torch.Tensor:
    """RGB uint8 HxWx3 -> float 3xHxW in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1).float().div(255.0)


def metric(sr: torch.Tensor, hr: torch.Tensor, crop: int) -> float:
    """srprune's protocol PSNR-Y (uint8 rounding, BT.601 Y, crop = scale)."""
    def u8(t):
        return (t.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy()
    return psnr(u8(sr), u8(hr), crop_border=crop)


@torch.no_grad()
def val_psnr(model: torch.nn.Module, val: list, scale: int) -> float:
    """Mean protocol PSNR-Y of a standalone model over the validation pairs."""
    model.eval()
    out = statistics.mean(metric(model(lr[None])[0], hr, scale) for lr, hr in val)
    model.train()
    return out


def finetune(model: torch.nn.Module, sampler: PatchSampler, marks: list[int], lr: float, val: list,
             scale: int, schedule: str = "constant") -> dict[int, float]:
    """Adam on L1 at a constant lr, or cosine-decayed to 0 at the last mark (the final weights then sit still
    instead of jittering with the last batches); validation PSNR-Y at every step count in `marks`."""
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    total = max(marks)
    model.train()
    scores = {}
    for step in range(1, total + 1):
        if schedule == "cosine":
            for group in opt.param_groups:
                group["lr"] = lr * 0.5 * (1 + math.cos(math.pi * (step - 1) / total))
        lr_b, hr_b = next(sampler)
        loss = F.l1_loss(model(lr_b), hr_b)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step in marks:
            scores[step] = val_psnr(model, val, scale)
    return scores


def measure_rate(net: torch.nn.Module, genomes: list, val: list, threads: int) -> dict:
    """Proxy scores per minute: wall clock at `threads` threads, and CPU time at 1 thread (load-independent).

    On a shared machine the wall-clock rate depends on the other users; one thread's CPU time per genome is
    what one idle core needs, so two idle cores score twice that rate with one process per core.
    """
    out = {"genomes": len(genomes), "threads": threads}
    for n in (1, threads):
        torch.set_num_threads(n)
        proxy_psnr(net, genomes[0], val, metric=metric)  # warm-up
        w0, c0 = time.perf_counter(), time.process_time()
        for g in genomes:
            proxy_psnr(net, g, val, metric=metric)
        wall, cpu = time.perf_counter() - w0, time.process_time() - c0
        if n == 1:
            out["cpu_seconds_1_thread"] = cpu
            out["genomes_per_cpu_minute"] = len(genomes) / cpu * 60
        out["seconds"] = wall
        out["genomes_per_minute"] = len(genomes) / wall * 60
    out["load_average_1min"] = os.getloadavg()[0]
    print(f"proxy: {out['genomes_per_minute']:.1f} genomes/min wall at {threads} thread(s) (load average "
          f"{out['load_average_1min']:.1f}); {out['genomes_per_cpu_minute']:.1f} genomes per CPU-minute at 1 thread")
    torch.set_num_threads(1)
    return out


def write_results(work: Path, res: dict) -> None:
    """WORK/results.json, atomically."""
    tmp = work / ".results.json.tmp"
    tmp.write_text(json.dumps(res, indent=1) + "\n")
    os.replace(tmp, work / "results.json")


def rho(a: list[float], b: list[float]) -> float:
    return float(spearmanr(a, b).statistic)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", type=Path, required=True, help="supernet training checkpoint")
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--genomes", type=int, default=20)
    ap.add_argument("--finetune-steps", type=str, default="100,200,300",
                    help="comma-separated step counts at which the fine-tuned PSNR is measured")
    ap.add_argument("--finetune-lr", type=float, default=2e-4)
    ap.add_argument("--finetune-schedule", choices=("constant", "cosine"), default="constant",
                    help="fine-tuning lr: constant, or cosine decay to 0 at the last --finetune-steps mark")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--patch", type=int, default=32)
    ap.add_argument("--rate-genomes", type=int, default=20)
    ap.add_argument("--rate-threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--no-doc", action="store_true", help="do not rewrite docs/benchmarks.md")
    ap.add_argument("--rate-only", action="store_true",
                    help="re-measure only the proxy rate into an earlier run's WORK/results.json")
    ap.add_argument("--compare", type=Path, default=None,
                    help="WORK folder of the same benchmark on another supernet (an ablation), summarised in the doc")
    ap.add_argument("--from-results", action="store_true",
                    help="only rewrite the docs section from an earlier run's WORK/results.json")
    ap.add_argument("--adapt-steps", type=str, default=None,
                    help="comma-separated: also score each genome after that many adaptation steps (the search's "
                    "search.adapt_steps) on WORK/results.json's genomes, whose fine-tuned PSNRs are reused")
    ap.add_argument("--adapt-lr", type=float, default=1e-4)
    ap.add_argument("--summary", type=Path, nargs="*", default=[],
                    help="more WORK folders (other supernets or genome seeds) whose Spearman figures the doc tabulates")
    args = ap.parse_args()
    if args.adapt_steps:
        res = json.loads((args.work / "results.json").read_text())
        res["adapted"] = adapt_ablation(res, [int(x) for x in args.adapt_steps.split(",")], args.adapt_lr)
        write_results(args.work, res)
        if not args.no_doc:
            update_section("supernet_proxy", report(res, args))
        return
    if args.from_results:
        update_section("supernet_proxy", report(json.loads((args.work / "results.json").read_text()), args))
        return
    args.work.mkdir(parents=True, exist_ok=True)
    marks = sorted({int(x) for x in args.finetune_steps.split(",")})
    state = load_checkpoint(args.checkpoint)
    net = supernet_from_checkpoint(args.checkpoint).eval()
    space = net.space
    s = int(state["settings"]["scale"])
    train_pairs = load_dataset("builtin", s, split="train")
    val_pairs = load_dataset("builtin", s, split="val")
    val = [(to_tensor(p.lr), to_tensor(p.hr)) for p in val_pairs]
    bicubic = statistics.mean(psnr(to_uint8(imresize(p.lr, scale=s)), p.hr, crop_border=s) for p in val_pairs)
    rng = np.random.default_rng(args.seed)

    rate_genomes = [space.sample(rng, s) for _ in range(args.rate_genomes)]
    proxy_rate = measure_rate(net, rate_genomes, val, args.rate_threads)
    if args.rate_only:  # re-measure the rate (e.g. on a quieter machine) into an earlier run's results
        res = json.loads((args.work / "results.json").read_text())
        res["proxy_rate"] = proxy_rate
        write_results(args.work, res)
        if not args.no_doc:
            update_section("supernet_proxy", report(res, args))
        return

    torch.set_num_threads(1)
    genomes = [space.sample(rng, s) for _ in range(args.genomes)]
    rows = []
    started = time.perf_counter()
    for g in tqdm(genomes, desc="fine-tune", unit="genome"):
        proxy = proxy_psnr(net, g, val, metric=metric)
        model, _ = extract(net, g)
        sampler = PatchSampler(train_pairs, s, args.patch, args.batch, seed=args.seed + 7)
        tuned = finetune(model, sampler, marks, args.finetune_lr, val, s, args.finetune_schedule)
        rows.append({"genome": g.to_dict(), "proxy_psnr": proxy, "finetuned_psnr": {str(k): v for k, v in tuned.items()},
                     "macs_720p": genome_macs(g), "params": genome_params(g)})
    ft_minutes = (time.perf_counter() - started) / 60
    proxies = [r["proxy_psnr"] for r in rows]
    macs = [r["macs_720p"] for r in rows]
    per_mark = {}
    for m in marks:
        tuned = [r["finetuned_psnr"][str(m)] for r in rows]
        per_mark[m] = {"spearman_proxy": rho(proxies, tuned), "pearson_proxy": float(pearsonr(proxies, tuned).statistic),
                       "spearman_macs": rho(macs, tuned), "mean_gain_db": statistics.mean(np.subtract(tuned, proxies))}
        print(f"fine-tune {m} steps: Spearman(proxy, fine-tuned) {per_mark[m]['spearman_proxy']:.3f}, "
              f"Spearman(MACs, fine-tuned) {per_mark[m]['spearman_macs']:.3f}")
    res = {"checkpoint": str(args.checkpoint), "seed": args.seed, "supernet_step": int(state["step"]),
           "space": space.to_dict(),
           "bicubic_psnr": bicubic, "proxy_rate": proxy_rate,
           "finetune": {"lr": args.finetune_lr, "schedule": args.finetune_schedule, "batch": args.batch, "patch": args.patch, "marks": marks,
                        "threads": 1, "minutes": ft_minutes},
           "correlation": {str(m): v for m, v in per_mark.items()}, "rows": rows}
    write_results(args.work, res)
    if not args.no_doc:
        update_section("supernet_proxy", report(res, args))


def adapt_ablation(res: dict, steps_list: list[int], lr: float) -> dict:
    """Spearman(adapted proxy, fine-tuned) for each adaptation length, on the genomes of an earlier run.

    The adapted proxy is what the search computes with `search.adapt_steps`: the genome's network extracted
    and deployed, `steps` Adam steps (lr `lr`, L1) on fixed batches (16 LR patches of 32 px, the same batches
    for every genome, seed 777), then PSNR-Y on the validation images.
    """
    from srprune.search.candidate import Candidate
    from srprune.search.candidate import candidate_psnr as candidate_proxy
    from supernet.space import Genome

    net = supernet_from_checkpoint(res["checkpoint"]).eval()
    s = int(res["rows"][0]["genome"]["scale"])
    val = [(to_tensor(p.lr), to_tensor(p.hr)) for p in load_dataset("builtin", s, split="val")]
    sampler = iter(PatchSampler(load_dataset("builtin", s, split="train"), s, 32, 16, seed=777))
    batches = [next(sampler) for _ in range(max(steps_list))]
    torch.set_num_threads(1)
    out = {}
    for n in steps_list:
        started = time.process_time()
        proxies = [candidate_proxy(net, Candidate(Genome.from_dict(r["genome"])), val, batches[:n], lr)
                   for r in tqdm(res["rows"], desc=f"adapt {n}", unit="genome")]
        per = (time.process_time() - started) / len(res["rows"])
        out[str(n)] = {"lr": lr, "proxies": proxies, "cpu_seconds_per_genome": per,
                       "spearman": {m: rho(proxies, [r["finetuned_psnr"][m] for r in res["rows"]])
                                    for m in res["rows"][0]["finetuned_psnr"]}}
        print(f"adapt {n} steps: Spearman " + ", ".join(f"{v:.3f} at {m}" for m, v in out[str(n)]["spearman"].items()))
    return out


def _lr_text(ft: dict) -> str:
    """The fine-tuning lr schedule in words."""
    if ft.get("schedule", "constant") == "cosine":
        return f"lr {ft['lr']:g} cosine-decayed to 0 at step {max(ft['marks'])}"
    return f"constant lr {ft['lr']:g}"


def summary_table(results: list[dict], works: list[Path]) -> list[str]:
    """Markdown lines: Spearman(proxy, fine-tuned at the last mark) per run (supernet x genome set), raw and adapted."""
    adapt = sorted({int(n) for r in results for n in r.get("adapted", {})})
    lines = ["Every run of this benchmark behind these figures (each: 20 random genomes of the given seed, the same "
             "fine-tuning budget; `training` is the supernet checkpoint's settings). Spearman(proxy, fine-tuned):", "",
             "| WORK | supernet checkpoint | training | genome seed | raw proxy | "
             + " | ".join(f"{n} adaptation steps" for n in adapt) + " |",
             "| --- | --- | --- | ---: | ---: | " + " | ".join("---:" for _ in adapt) + " |"]
    for r, work in zip(results, works):
        last = str(max(r["finetune"]["marks"]))
        state = load_checkpoint(r["checkpoint"])
        t = state["settings"]
        training = (f"{t['steps']} steps, {state['world_size']} x {_batch_of(state)} patches, sampling "
                    f"{t.get('sampling', 'fixed')}")
        cells = [f"{r['adapted'][str(n)]['spearman'][last]:.3f}" if str(n) in r.get("adapted", {}) else "-" for n in adapt]
        lines.append(f"| `{work}` | `{r['checkpoint']}` | {training} | {r.get('seed', '?')} | "
                     f"{r['correlation'][last]['spearman_proxy']:.3f} | " + " | ".join(cells) + " |")
    return lines


def _batch_of(state: dict) -> str:
    """LR patches per step and process, from the checkpoint's data-iterator state where it is recorded."""
    data = (state.get("data") or [{}])[0]
    batch = data.get("config", {}).get("batch_size") if isinstance(data, dict) else None
    return str(batch) if batch else "?"


def report(res: dict, args: argparse.Namespace) -> str:
    """The docs/benchmarks.md section."""
    ft, rate = res["finetune"], res["proxy_rate"]
    last = str(max(ft["marks"]))
    main_rho = res["correlation"][last]["spearman_proxy"]
    lines = [
        "## Supernet accuracy proxy: rank correlation and rate",
        "",
        f"Supernet: `{res['checkpoint']}` (step {res['supernet_step']}; space: {res['space']['num_cells']} cells, "
        f"widths {res['space']['widths']}, blocks {', '.join(res['space']['blocks'])}), x2, built-in images. "
        f"Proxy = mean PSNR-Y with the shared weights on the built-in validation images (astronaut, chelsea; "
        f"full images, project protocol; bicubic: {res['bicubic_psnr']:.2f} dB).",
        "",
        f"Machine: {machine()}. Command: `.venv/bin/python benchmarks/supernet_proxy.py --checkpoint "
        f"{res['checkpoint']} --work {args.work}"
        f"{' --finetune-schedule cosine' if ft.get('schedule') == 'cosine' else ''}"
        f"{' --finetune-steps ' + ','.join(map(str, ft['marks'])) if ft['marks'] != [100, 200, 300] else ''}`.",
        "",
        f"**Proxy rate:** {rate['genomes']} random genomes scored in {rate['seconds']:.1f} s wall with "
        f"{rate['threads']} torch threads = {rate['genomes_per_minute']:.0f} genomes/minute on the shared machine "
        f"(1-minute load average {rate['load_average_1min']:.1f} on 2 cores during the measurement). CPU time, "
        f"which the other users do not change: {rate['cpu_seconds_1_thread'] / rate['genomes']:.2f} s per genome "
        f"at 1 thread = **{rate['genomes_per_cpu_minute']:.0f} genomes per minute per idle core, "
        f"{2 * rate['genomes_per_cpu_minute']:.0f} per minute on 2 idle cores** with one scoring process per core "
        f"(the estimate assumes the two cores do not slow each other).",
        "",
        f"**Proxy quality:** {len(res['rows'])} random genomes (uniform over blocks and widths, seed {args.seed}), each "
        f"extracted and fine-tuned alone from its inherited weights: Adam, {_lr_text(ft)}, L1, batch "
        f"{ft['batch']} LR patches of {ft['patch']} px from the built-in training images (the same patch stream for "
        f"every genome), 1 thread; {ft['minutes']:.1f} min for all. PSNR-Y measured after each step count:",
        "",
        "| fine-tuning steps | Spearman(proxy, fine-tuned) | Pearson | Spearman(MACs, fine-tuned) | mean gain over proxy (dB) |",
        "| ---: | ---: | ---: | ---: | ---: |",
    ]
    for m in ft["marks"]:
        c = res["correlation"][str(m)]
        lines.append(f"| {m} | {c['spearman_proxy']:.3f} | {c['pearson_proxy']:.3f} | {c['spearman_macs']:.3f} | "
                     f"{c['mean_gain_db']:+.3f} |")
    goal = "met" if main_rho >= 0.8 else "not met"
    proxies = [r["proxy_psnr"] for r in res["rows"]]
    tuned = {m: [r["finetuned_psnr"][str(m)] for r in res["rows"]] for m in ft["marks"]}
    stability = ", ".join(f"{m} vs {last} steps {rho(tuned[m], tuned[int(last)]):.3f}" for m in ft["marks"][:-1])
    lines += ["", f"Spread: proxy {min(proxies):.3f} to {max(proxies):.3f} dB; fine-tuned ({last} steps) "
              f"{min(tuned[int(last)]):.3f} to {max(tuned[int(last)]):.3f} dB. How settled the reference itself is "
              f"(Spearman between fine-tuned PSNRs at two budgets): {stability}."]
    lines += ["", f"Goal (issue 3) Spearman >= 0.8 at the full budget ({last} steps): {main_rho:.3f}, {goal}."]
    if res.get("adapted"):
        marks = list(res["rows"][0]["finetuned_psnr"])
        best = max(res["adapted"].items(), key=lambda kv: kv[1]["spearman"][last])
        lines += ["", "With a short adaptation before scoring (the search's `search.adapt_steps`: Adam at lr "
                  f"{best[1]['lr']:g} on the same fixed batches of 16 LR patches for every genome, masks held, then "
                  "the same PSNR-Y); same genomes and fine-tuned references as above. Command: "
                  f"`benchmarks/supernet_proxy.py --work {args.work} --adapt-steps "
                  f"{','.join(res['adapted'])}`.", "",
                  "| adaptation steps | " + " | ".join(f"Spearman vs fine-tuned {m}" for m in marks)
                  + " | CPU s per genome (1 thread) |",
                  "| ---: | " + " | ".join("---:" for _ in marks) + " | ---: |",
                  "| 0 (raw proxy) | " + " | ".join(f"{res['correlation'][m]['spearman_proxy']:.3f}" for m in marks)
                  + " | - |"]
        for n, a in res["adapted"].items():
            lines.append(f"| {n} | " + " | ".join(f"{a['spearman'][m]:.3f}" for m in marks)
                         + f" | {a['cpu_seconds_per_genome']:.2f} |")
        verdict = "met" if best[1]["spearman"][last] >= 0.8 else "not met"
        lines += ["", f"Best: {best[0]} adaptation steps, Spearman {best[1]['spearman'][last]:.3f} at {last} "
                  f"fine-tuning steps (goal 0.8: {verdict})."]
    if getattr(args, "compare", None) is not None:
        other = json.loads((args.compare / "results.json").read_text())
        same = [r["genome"] for r in other["rows"]] == [r["genome"] for r in res["rows"]]
        lines += ["", f"Ablation: the same benchmark on `{other['checkpoint']}` ("
                  + ("the same genomes" if same else "other genomes") + ", same fine-tuning budget): Spearman(proxy, "
                  "fine-tuned) " + ", ".join(f"{c['spearman_proxy']:.3f} at {m} steps"
                                             for m, c in other["correlation"].items()) + "."]
    if getattr(args, "summary", None):
        lines += ["", *summary_table([res] + [json.loads((w / "results.json").read_text()) for w in args.summary],
                                     [args.work, *args.summary])]
    lines += ["",
              "| # | blocks (width/inner) | head | GMACs 720p | proxy (dB) | fine-tuned " + last + " (dB) |",
              "| ---: | --- | ---: | ---: | ---: | ---: |"]
    for i, r in enumerate(res["rows"]):
        cells = " ".join(c["block"] if c["block"] == "skip" else
                         f"{c['block']}{c['width']}" + (f"/{'/'.join(map(str, c['layers']))}" if c["layers"] else "")
                         for c in r["genome"]["cells"])
        lines.append(f"| {i} | {cells} | {r['genome']['head']} | {r['macs_720p'] / 1e9:.2f} | {r['proxy_psnr']:.3f} | "
                     f"{r['finetuned_psnr'][last]:.3f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
