"""Benchmark the data converter against the contest's stock llama_preprocess.py and update docs/benchmarks.md.

Same run, same machine, same records, real Llama 3 tokenizer, seq_length 256:
  1. stock: research/llama3/llama_preprocess.py --dataset_type qa of the contest fork (copied to a temp
     dir, never into the kit) on a conversation JSON of N generated records (default 20,000);
  2. kit:   convert_dataset.py to-mindrecord on the same conversation JSON (--overlong truncate, the
     stock behaviour, for the row-for-row comparison; then the default --overlong drop);
  3. equivalence: both MindRecord files read back and compared row by row;
  4. full scale (unless --quick): 809,993 generated records, raw JSONL -> MindRecord with
     convert_dataset.py convert (clean, dedup, verify, conversation JSON, MindRecord, report).
Wall time per command; peak RSS = the sum over the command's process tree, sampled every 50 ms.
The "## Data" section of docs/benchmarks.md is replaced by the results (other sections untouched).
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from lorakit.bench import loadavg, machine_info, update_doc_section
from lorakit.io import KitError, run_main, write_json
from lorakit.paths import REPO

TOOLS = REPO / "tools"
SECTION = "## Data"


def _tree_rss_kb(pid, per=None):
    """Resident set of pid and all its descendants, in kB (Linux /proc); per[pid] keeps each one's peak."""
    total, stack = 0, [pid]
    while stack:
        p = stack.pop()
        try:
            with open("/proc/%d/status" % p) as fh:
                for line in fh:
                    if line.startswith("VmRSS:"):
                        kb = int(line.split()[1])
                        total += kb
                        if per is not None:
                            per[p] = max(per.get(p, 0), kb)
                        break
            for task in os.listdir("/proc/%d/task" % p):
                with open("/proc/%d/task/%s/children" % (p, task)) as fh:
                    stack.extend(int(x) for x in fh.read().split())
        except (OSError, ValueError):
            continue
    return total


def timed(cmd, cwd=None, env=None, log=None, per=None):
    """Run cmd; return (seconds, peak tree RSS in MB, returncode); per (a dict) gets each process's peak kB."""
    t0 = time.perf_counter()
    out = open(log, "w") if log else subprocess.DEVNULL
    try:
        proc = subprocess.Popen([str(c) for c in cmd], cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT)
        if per is not None:
            per["root"] = proc.pid
        peak = [0]

        def sample():
            while proc.poll() is None:
                peak[0] = max(peak[0], _tree_rss_kb(proc.pid, per))
                time.sleep(0.05)

        th = threading.Thread(target=sample, daemon=True)
        th.start()
        rc = proc.wait()
        th.join()
    finally:
        if log:
            out.close()
    return time.perf_counter() - t0, peak[0] / 1024.0, rc






def compare(stock_path, kit_path):
    """Row-by-row comparison of two MindRecord files (input_ids, labels), aligned in order.

    A stock row with every label -100 that is not the kit's next row is counted as `stock_only_no_target`
    (the kit drops rows whose prompt alone fills the window, deliberate difference 2 in docs/data.md).
    """
    import numpy as np

    from lorakit.mindrecord_io import iter_rows

    kit = iter_rows(kit_path)
    nxt = next(kit, None)
    out = {"stock_rows": 0, "kit_rows": 0, "equal": 0, "stock_only_no_target": 0, "different": 0,
           "first_differences": []}
    for i, (ids, labels) in enumerate(iter_rows(stock_path), 1):
        out["stock_rows"] += 1
        if nxt is not None and np.array_equal(ids, nxt[0]) and np.array_equal(labels, nxt[1]):
            out["equal"] += 1
            out["kit_rows"] += 1
            nxt = next(kit, None)
        elif (labels == -100).all():
            out["stock_only_no_target"] += 1
        else:
            out["different"] += 1
            if len(out["first_differences"]) < 10:
                out["first_differences"].append(i)
            if nxt is not None:
                out["kit_rows"] += 1
                nxt = next(kit, None)
    while nxt is not None:
        out["kit_rows"] += 1
        out["different"] += 1
        nxt = next(kit, None)
    return out




def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fork", default=os.environ.get("CONTEST_FORK"),
                    help="the contest's MindFormers source (needs research/llama3/; the public contest archive's "
                         "topic2-finetune/mindformers); default $CONTEST_FORK")
    ap.add_argument("--tokenizer", default=str(REPO / ".cache" / "tokenizer" / "tokenizer.model"),
                    help="real Llama 3 tokenizer.model (make tokenizer)")
    ap.add_argument("--n", type=int, default=20000, help="records for the stock comparison (default 20000)")
    ap.add_argument("--full-n", type=int, default=809993, help="records for the full-scale run")
    ap.add_argument("--seq-length", type=int, default=256)
    sample = REPO / "tests" / "data" / "contest_sample.jsonl"
    ap.add_argument("--english-from", default=str(sample) if sample.is_file() else None,
                    help="mix English records from this JSONL into the generated data (gen_math.py --english-from; "
                         "default %(default)s); 'none' for Chinese only")
    ap.add_argument("--quick", action="store_true", help="skip the full-scale run")
    ap.add_argument("--scale-n", default="100000",
                    help="comma list of larger record counts for one stock + one kit run each (fixed costs vs "
                         "throughput; default %(default)s; '' for none)")
    ap.add_argument("--repeat", type=int, default=3,
                    help="runs of each 20k command, stock and kit alternating; the median is reported (default 3)")
    ap.add_argument("--workdir", help="keep the work files here (default: a temp dir, removed)")
    ap.add_argument("--doc", default=str(REPO / "docs" / "benchmarks.md"), help="benchmarks file to update")
    ap.add_argument("--no-doc", action="store_true", help="do not touch docs/benchmarks.md")
    ap.add_argument("--json", action="store_true", help="print the results as one JSON object")
    args = ap.parse_args(argv)

    if not args.fork:
        raise KitError("give --fork DIR (or CONTEST_FORK=DIR): the contest's MindFormers, for its llama_preprocess.py")
    fork = Path(args.fork)
    if not (fork / "research" / "llama3" / "llama_preprocess.py").is_file():
        raise KitError("%s: no research/llama3/llama_preprocess.py (give --fork: the contest's MindFormers, "
                       "2024-ascend-innovation-contest/topic2-finetune/mindformers of the public archive)" % fork)
    if not Path(args.tokenizer).is_file():
        raise KitError("%s: tokenizer not found (run `make tokenizer`)" % args.tokenizer)

    work = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="kit-bench-data-"))
    work.mkdir(parents=True, exist_ok=True)
    py = sys.executable
    env = dict(os.environ, GLOG_v="3")
    res = {"machine": machine_info(), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
           "n": args.n, "seq_length": args.seq_length}
    try:
        # inputs: generated records -> conversation JSON (stock recipe, nothing removed)
        raw = work / "bench.jsonl"
        conv = work / "bench_conversation.json"
        english = [] if args.english_from in (None, "none") else ["--english-from", args.english_from]
        res["english_from"] = english[1] if english else None
        subprocess.run([py, str(TOOLS / "gen_math.py"), "--n", str(args.n), "--seed", "1", "--out", str(raw),
                        "--no-progress"] + english, check=True, stdout=subprocess.DEVNULL)
        subprocess.run([py, str(TOOLS / "convert_dataset.py"), "to-conversation", str(raw), "--out", str(conv),
                        "--no-dedup", "--no-verify", "--no-progress"], check=True, stdout=subprocess.DEVNULL,
                       env=env)
        # stock, from a temp copy of the fork's research/ (its own tokenizer wrapper + conversation.py)
        stock_root = work / "stockfork"
        if stock_root.exists():
            shutil.rmtree(str(stock_root))
        shutil.copytree(str(fork / "research"), str(stock_root / "research"))
        stock_out = work / "stock" / "stock.mindrecord"
        stock_out.parent.mkdir(parents=True, exist_ok=True)
        for f in stock_out.parent.glob("stock.mindrecord*"):
            f.unlink()
        stock_cmd = [py, "llama_preprocess.py", "--dataset_type", "qa", "--input_glob", conv, "--model_file",
                     args.tokenizer, "--seq_length", args.seq_length, "--output_file", stock_out]
        stock_env = dict(env, PYTHONPATH=str(stock_root))
        runs = {"stock": [], "truncate": [], "drop": []}
        for _ in range(max(1, args.repeat)):  # alternate, so that load changes hit both alike
            for f in stock_out.parent.glob("stock.mindrecord*"):
                f.unlink()
            lo = loadavg()
            t, rss, rc = timed(stock_cmd, cwd=str(stock_root / "research" / "llama3"), env=stock_env,
                               log=str(work / "stock.log"))
            if rc != 0:
                raise KitError("stock llama_preprocess.py failed (exit %d), see %s" % (rc, work / "stock.log"))
            runs["stock"].append((round(t, 2), round(rss), lo))
            for mode in ("truncate", "drop"):
                out = work / ("kit_%s.mindrecord" % mode)
                cmd = [py, str(TOOLS / "convert_dataset.py"), "to-mindrecord", conv, "--out", out, "--tokenizer",
                       args.tokenizer, "--seq-length", args.seq_length, "--overlong", mode, "--no-progress",
                       "--report", work / ("kit_%s_report" % mode)]
                lo = loadavg()
                t, rss, rc = timed(cmd, env=env, log=str(work / ("kit_%s.log" % mode)))
                if rc != 0:
                    raise KitError("convert_dataset.py to-mindrecord failed (exit %d), see %s"
                                   % (rc, work / ("kit_%s.log" % mode)))
                runs[mode].append((round(t, 2), round(rss), lo))

        def summary(rs):
            times = sorted(x[0] for x in rs)
            return {"seconds": times[len(times) // 2], "runs": [x[0] for x in rs], "loads": [x[2] for x in rs],
                    "peak_rss_mb": max(x[1] for x in rs)}

        res["stock"] = dict(summary(runs["stock"]), command=(
            "python llama_preprocess.py --dataset_type qa --input_glob conv.json --model_file tokenizer.model "
            "--seq_length %d --output_file stock.mindrecord" % args.seq_length))
        kit = {}
        for mode in ("truncate", "drop"):
            with open(str(work / ("kit_%s_report.json" % mode)), encoding="utf-8") as fh:
                rep = json.load(fh)
            kit[mode] = dict(summary(runs[mode]), rows=rep["rows_written"], overlong=rep.get("overlong", {}),
                             command="convert_dataset.py to-mindrecord conv.json --out kit.mindrecord --tokenizer "
                                     "tokenizer.model --seq-length %d --overlong %s" % (args.seq_length, mode))
            kit[mode]["speedup_vs_stock"] = round(res["stock"]["seconds"] / kit[mode]["seconds"], 1)
        res["kit"] = kit

        # scaling: one stock and one kit run on larger inputs (the kit's fixed cost is mostly MindSpore's import)
        res["scale"] = []
        for n in [int(x) for x in str(args.scale_n).split(",") if x.strip()]:
            raw_n, conv_n = work / ("scale_%d.jsonl" % n), work / ("scale_%d.json" % n)
            subprocess.run([py, str(TOOLS / "gen_math.py"), "--n", str(n), "--seed", "2", "--out", str(raw_n),
                            "--no-progress"] + english, check=True, stdout=subprocess.DEVNULL)
            subprocess.run([py, str(TOOLS / "convert_dataset.py"), "to-conversation", str(raw_n), "--out",
                            str(conv_n), "--no-dedup", "--no-verify", "--no-progress"], check=True,
                           stdout=subprocess.DEVNULL, env=env)
            scale_out = stock_out.with_name("stock_scale.mindrecord")
            for f in stock_out.parent.glob("stock_scale.mindrecord*"):
                f.unlink()
            cmd = [conv_n if c == conv else scale_out if c == stock_out else c for c in stock_cmd]
            lo_s = loadavg()
            ts, _, rc = timed(cmd, cwd=str(stock_root / "research" / "llama3"), env=stock_env,
                              log=str(work / "stock_scale.log"))
            if rc != 0:
                raise KitError("stock llama_preprocess.py failed (exit %d), see %s" % (rc, work / "stock_scale.log"))
            lo_k = loadavg()
            tk, _, rc = timed([py, str(TOOLS / "convert_dataset.py"), "to-mindrecord", conv_n, "--out",
                               work / "kit_scale.mindrecord", "--tokenizer", args.tokenizer, "--seq-length",
                               args.seq_length, "--no-progress"], env=env, log=str(work / "kit_scale.log"))
            if rc != 0:
                raise KitError("convert_dataset.py to-mindrecord failed (exit %d), see %s" % (rc, work / "kit_scale.log"))
            res["scale"].append({"n": n, "stock_seconds": round(ts, 2), "kit_seconds": round(tk, 2),
                                 "loads": [lo_s, lo_k], "speedup_vs_stock": round(ts / tk, 1)})

        # equivalence: stock rows vs the kit's (truncate mode keeps every row the stock script keeps, except
        # rows whose prompt alone fills the window: the kit drops those, the stock keeps all-ignored labels)
        res["equivalence"] = compare(stock_out, work / "kit_truncate.mindrecord")

        if not args.quick:
            full = work / "full.jsonl"
            subprocess.run([py, str(TOOLS / "gen_math.py"), "--n", str(args.full_n), "--seed", "0", "--out",
                            str(full), "--no-progress"] + english, check=True, stdout=subprocess.DEVNULL)
            out_dir = work / "full_out"
            cmd = [py, str(TOOLS / "convert_dataset.py"), "convert", full, "--out-dir", out_dir, "--tokenizer",
                   args.tokenizer, "--seq-length", args.seq_length, "--no-progress"]
            res["load_before_full"] = loadavg()
            per = {}
            t, rss, rc = timed(cmd, env=env, log=str(work / "full.log"), per=per)
            if rc != 0:
                raise KitError("full-scale convert failed (exit %d), see %s" % (rc, work / "full.log"))
            with open(str(out_dir / "data_report.json"), encoding="utf-8") as fh:
                rep = json.load(fh)
            main_pid = per.pop("root", None)
            res["full"] = {"records": args.full_n, "seconds": round(t, 2), "peak_rss_mb": round(rss),
                           "peak_rss_main_mb": round(per.get(main_pid, 0) / 1024),
                           "peak_rss_writer_mb": round(max([v for k, v in per.items() if k != main_pid] or [0]) / 1024),
                           "rows": rep["rows_written"], "stage_totals": rep.get("stage_totals"),
                           "mindrecord_bytes": (out_dir / "train.mindrecord").stat().st_size,
                           "command": "convert_dataset.py convert full.jsonl --out-dir OUT --tokenizer "
                                      "tokenizer.model --seq-length %d" % args.seq_length}
    finally:
        if not args.workdir:
            shutil.rmtree(str(work), ignore_errors=True)

    if not args.no_doc:
        update_doc_section(args.doc, SECTION, render(res))
        write_json(REPO / ".cache" / "bench" / "data.json", res)
    if args.json:
        print(json.dumps(res))
    else:
        sys.stdout.write(render(res))
    return 0


def _runs(x):
    return ", ".join("%.1f [%s]" % (t, lo) for t, lo in zip(x["runs"], x["loads"]))


def render(r):
    m = r["machine"]
    s, k = r["stock"], r["kit"]
    eq = r["equivalence"]
    out = [SECTION, "",
           "Measured by `make bench` (`tools/bench_data.py`) on %s: %s, %d cores, %d GB RAM, Python %s. "
           "Wall time per command (process start to exit, imports included), median of the runs (stock and kit "
           "alternating; every run listed); peak RSS = sum over the process tree (the kit writes MindRecord in a "
           "child process), sampled every 50 ms. 1-minute load averages before the runs in brackets: other jobs on "
           "this shared machine slow every figure."
           % (r["date"], m["cpu"], m["cores"], m["ram_gb"], m["python"]), "",
           "### Stock `llama_preprocess.py` vs the kit, %d generated records, real tokenizer, seq_length %d"
           % (r["n"], r["seq_length"]), "",
           "| command | wall s (median) | runs s [load] | peak RSS MB | rows | speed-up |",
           "|---|---:|---|---:|---:|---:|",
           "| stock: `%s` | %.2f | %s | %d | %d | 1.0x |" % (s["command"], s["seconds"], _runs(s), s["peak_rss_mb"],
                                                           eq["stock_rows"])]
    for mode in ("truncate", "drop"):
        x = k[mode]
        out.append("| kit: `%s` | %.2f | %s | %d | %d | **%.1fx** |" % (
            x["command"], x["seconds"], _runs(x), x["peak_rss_mb"], x["rows"], x["speedup_vs_stock"]))
    src = "gen_math.py --n %d --seed 1" % r["n"]
    if r.get("english_from"):
        src += " --english-from %s" % Path(r["english_from"]).name
    out += ["", "Input: `%s`, then `convert_dataset.py to-conversation --no-dedup --no-verify`: one conversation "
            "JSON for both. Both write the MindRecord; the kit also writes its JSON + Markdown report (token "
            "percentiles per family; the PNG histogram only with `--png` or in `convert`)." % src,
            "Equivalence, stock rows vs the kit's `--overlong truncate` rows, both read back with FileReader: "
            "**%d of %d stock rows identical** (input_ids and labels); %d stock rows have every label -100 "
            "(the prompt alone overflows the window: the kit drops them, deliberate difference 2 in docs/data.md); "
            "%d differ%s." % (eq["equal"], eq["stock_rows"], eq["stock_only_no_target"], eq["different"],
                              " (first: %s)" % eq["first_differences"] if eq["first_differences"] else "")]
    ov = k["drop"]["overlong"]
    out.append("With the default `--overlong drop` the kit drops the %d over-long rows (%s) that the stock script "
               "silently truncates (answer tail and EOS lost)." % (
                   sum(sum(d.values()) for d in ov.values()),
                   "; ".join("%s: %s" % (st, ", ".join("%s %d" % kv for kv in d.items())) for st, d in ov.items())
                   or "none"))
    if r.get("scale"):
        out += ["", "Larger inputs (same generator, seed 2; one run each; kit with the default `--overlong drop`):",
                "", "| records | stock s [load] | kit s [load] | speed-up |", "|---:|---:|---:|---:|"]
        for x in r["scale"]:
            out.append("| %d | %.1f [%s] | %.1f [%s] | **%.1fx** |" % (x["n"], x["stock_seconds"], x["loads"][0],
                                                                   x["kit_seconds"], x["loads"][1],
                                                                   x["speedup_vs_stock"]))
    if "full" in r:
        f = r["full"]
        out += ["", "### Full scale: %d generated records, raw JSONL -> MindRecord [load %s]" % (
            f["records"], r.get("load_before_full")), "",
            "`%s`: **%.1f s** wall, peak RSS %d MB (this process %d MB: streaming, dedup digests; MindRecord "
            "writer process %d MB: MindSpore itself ~450 MB + its index build at commit, which grows with the row "
            "count), %d rows (%.2f GB MindRecord). Stage totals: %s." % (
                f["command"], f["seconds"], f["peak_rss_mb"], f.get("peak_rss_main_mb", 0),
                f.get("peak_rss_writer_mb", 0), f["rows"], f["mindrecord_bytes"] / 1e9,
                ", ".join("%s %d" % kv for kv in (f["stage_totals"] or {}).items()))]
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    run_main(main)
