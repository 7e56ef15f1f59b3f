"""This machine's memory bandwidth as the emitted kernels see it: the host's figure of the static estimate's memory
term (compiler/latency/estimate.py, `traffic_bytes` / bandwidth).

benchmarks/mem_bandwidth.c runs STREAM's "scale" (b = s * a, float32, vectorised) on two arrays of `--mib` MiB
split over one pinned thread per core, and reports the wall time of each repeat; GB/s = 2 x array bytes / seconds
(STREAM's convention: bytes read + bytes written, as `traffic_bytes` counts a kernel's). The default size, 32 MiB
an array, is the scale of the layer table's tensors (a 640x360 float32 tensor of 8-32 channels is 7-29 MiB) and
past this VM's cache share (its bandwidth drops between 16 and 32 MiB arrays). The best repeat counts, as for the
FMA ceiling: on a shared machine the other work only lowers a repeat, so the best is the closest to the quiet figure.

Usage: python benchmarks/mem_bandwidth.py [--threads N ...] [--mib M] [--repeats R] [--record] [--json F] [--doc [SECTION]]
--record writes the figures into compiler/latency/cpus.json (`hosts`, keyed by LLVM's name of this CPU), where the
estimate of `--cpu host` reads them; --doc rewrites the `mem_bandwidth` section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._report import add_doc_arg, llvm_cpu, machine, publish  # noqa: E402
from benchmarks.fma_ceiling import compile_probe, process_cpus  # noqa: E402

SOURCE = Path(__file__).with_name("mem_bandwidth.c")


def run_probe(binary: Path, nbytes: int, repeats: int, cpus: list[int]) -> dict:
    """One probe run on `cpus`: GB/s of the best and the median repeat (the first repeat, touching cold pages
    after the first-touch pass, is dropped)."""
    proc = subprocess.run([str(binary), str(nbytes), str(repeats + 1), *map(str, cpus)],
                          capture_output=True, text=True, check=True)
    head, *lines = proc.stdout.splitlines()
    fields = head.split()
    info = dict(zip(fields[::2], fields[1::2]))
    seconds = [float(x.split()[1]) for x in lines if x.startswith("seconds")][1:]
    total = 2 * int(info["bytes"])
    return {"threads": int(info["threads"]), "array_bytes": int(info["bytes"]), "repeats": len(seconds),
            "best_gbps": total / min(seconds) / 1e9, "median_gbps": total / statistics.median(seconds) / 1e9}


def measure(threads: list[int], mib: int, repeats: int) -> list[dict]:
    """The probe on 1..N pinned cores, each an interleaved series of rounds (one run per thread count a round)."""
    cpus = process_cpus()
    with tempfile.TemporaryDirectory(prefix="mem_bandwidth.") as tmp:
        binary = compile_probe(Path(tmp), flags=("-march=native",), source=SOURCE)
        rounds = 5
        runs: dict[int, list[dict]] = {n: [] for n in threads}
        for _ in range(rounds):  # rounds interleave the thread counts: a change of load hits them alike
            for n in threads:
                runs[n].append(run_probe(binary, mib << 20, max(1, repeats // rounds), [cpus[i % len(cpus)]
                                                                                      for i in range(n)]))
    load = os.getloadavg()[0]
    return [{"threads": n, "array_mib": mib, "repeats": sum(r["repeats"] for r in rs),
             "best_gbps": max(r["best_gbps"] for r in rs),
             "median_gbps": statistics.median(r["median_gbps"] for r in rs), "load": load} for n, rs in runs.items()]


def record(results: list[dict], path: Path | None = None) -> Path:
    """Write the best figures into compiler/latency/cpus.json's `hosts` entry of this CPU (atomically; the rest of
    the file as it is)."""
    from compiler.latency.estimate import CPU_FILE
    from srcommon.atomic import write_text

    path = path or CPU_FILE
    text = path.read_text(encoding="utf-8")
    hosts = json.loads(text).get("hosts", {})
    r0 = results[0]
    hosts[llvm_cpu()] = {
        "gbps": {str(r["threads"]): round(r["best_gbps"], 1) for r in results},
        "source": (f"benchmarks/mem_bandwidth.py {_dt.date.today().isoformat()}: STREAM scale, {r0['array_mib']} MiB "
                   f"arrays, best of {r0['repeats']} repeats, load average {r0['load']:.1f}")}
    body = ",\n".join(f"    {json.dumps(k)}: {json.dumps(v)}" for k, v in sorted(hosts.items()))
    new, n = re.subn(r'"hosts":\s*\{.*\}\s*\}\s*$', '"hosts": {\n' + body + "\n  }\n}\n", text, flags=re.S)
    if n != 1:
        raise RuntimeError(f"{path}: no 'hosts' entry at its end to replace")
    json.loads(new)
    write_text(path, new)
    return path


def under_load(results: list[dict]) -> str:
    """'; measured under load ...' when the machine was busy (load average above half a core per core)."""
    load = max(r["load"] for r in results)
    return (f"; measured under load (load average {load:.1f}: other jobs shared the cores and the memory), so the "
            "figure is a lower bound of the quiet one" if load > 0.5 * len(process_cpus()) else "")


def to_markdown(results: list[dict], command: str) -> str:
    """The mem_bandwidth section of docs/benchmarks.md."""
    lines = ["## Memory bandwidth of this machine (the host's figure of the static estimate's memory term)", "",
             f"Machine: {machine(max(r['threads'] for r in results))}. STREAM scale (b = s x a, float32, "
             f"vectorised) on two {results[0]['array_mib']} MiB arrays split over one pinned thread per core; "
             "GB/s = bytes read + written / seconds; thread counts interleaved in 5 rounds; the best repeat is the "
             f"figure (other work only lowers a repeat){under_load(results)}. Command: `{command}`.", "",
             "| threads | best GB/s | median GB/s | repeats | load average |", "| ---: | ---: | ---: | ---: | ---: |"]
    lines += [f"| {r['threads']} | {r['best_gbps']:.1f} | {r['median_gbps']:.1f} | {r['repeats']} | {r['load']:.1f} |"
              for r in results]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, nargs="*", default=None, help="core counts (default: 1 and all)")
    ap.add_argument("--mib", type=int, default=32, help="size of each array (default 32 MiB)")
    ap.add_argument("--repeats", type=int, default=400, help="repeats per thread count (all rounds together)")
    ap.add_argument("--record", action="store_true", help="write the figures into compiler/latency/cpus.json")
    ap.add_argument("--json", type=Path, default=None)
    add_doc_arg(ap, "mem_bandwidth")
    args = ap.parse_args()
    if args.mib < 1 or args.repeats < 5 or any(n < 1 for n in args.threads or []):
        print("error: --mib must be >= 1, --repeats >= 5 and --threads >= 1", file=sys.stderr)
        sys.exit(2)
    results = measure(args.threads or sorted({1, len(process_cpus())}), args.mib, args.repeats)
    command = "python benchmarks/mem_bandwidth.py " + " ".join(sys.argv[1:])
    publish(to_markdown(results, command.strip()), results, "mem_bandwidth", args.json, args.doc)
    if args.record:
        print(f"recorded in {record(results)}")


if __name__ == "__main__":
    main()
