#!/usr/bin/env python3
"""Benchmark predict.py's batched greedy decoding: tokens/s at several batch sizes, as ratios from one run.

The tiny CPU model (random weights unless --checkpoint) is built once; each batch size is compiled by one warm-up
call, then the same rows are decoded with min_new_tokens = max_new_tokens (every row makes exactly that many
tokens, so every batch size does the same work). Rounds interleave the batch sizes so a noisy neighbour slows
all of them alike. --update-doc rewrites the "## Eval" section of docs/benchmarks.md with command, machine and
figures.

  bench_predict.py --input tests/data/contest_sample.jsonl --rows 32 --batch-sizes 1,8,16 --update-doc
"""

import argparse
import json
import sys
import time
from pathlib import Path

from lorakit.bench import loadavg, machine_info, update_doc_section
from lorakit.config import load_config, model_config
from lorakit.io import KitError, run_main
from lorakit.paths import REPO

SECTION = "## Eval"








def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--input", default=str(REPO / "tests" / "data" / "contest_sample.jsonl"),
                    help="problems JSONL (default: the contest sample)")
    ap.add_argument("--config", default="tiny", help="profile (default tiny)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--checkpoint", default=None, help="weights (default: random init, speed does not care)")
    ap.add_argument("--tokenizer", default="tiny")
    ap.add_argument("--templates", default="plain,vicuna",
                    help="comma list of prompt templates, each benchmarked (default plain,vicuna)")
    ap.add_argument("--seq-length", default="auto", help="as predict.py: auto (default), config or a number")
    ap.add_argument("--all-rows", action="store_true",
                    help="also the English (LaTeX) rows; default: the Chinese families the kit trains on")
    ap.add_argument("--rows", type=int, default=32, help="rows decoded per batch size and round (default 32)")
    ap.add_argument("--new-tokens", type=int, default=16, help="tokens generated per row (default 16)")
    ap.add_argument("--rounds", type=int, default=2, help="interleaved rounds (default 2)")
    ap.add_argument("--batch-sizes", default="1,8,16", help="comma list; the first is the reference (default 1,8,16)")
    ap.add_argument("--update-doc", nargs="?", const=str(REPO / "docs" / "benchmarks.md"), default=None,
                    help="rewrite the ## Eval section of this file (default docs/benchmarks.md)")
    ap.add_argument("--json", action="store_true", help="print the result as one JSON object")
    args = ap.parse_args(argv)
    sizes = [int(x) for x in args.batch_sizes.split(",") if x.strip()]
    if not sizes or min(sizes) < 1 or args.rows < max(sizes) or args.new_tokens < 1:
        raise KitError("need batch sizes >= 1, --rows >= the largest batch size and --new-tokens >= 1")

    from lorakit.tokenizer import load_tokenizer

    templates = [t for t in args.templates.split(",") if t.strip()]
    tok = load_tokenizer(args.tokenizer)
    load_start = loadavg()
    runs = []
    for template in templates:
        runs.append(bench_template(args, template, sizes, tok))
    result = {"command": "tools/bench_predict.py " + " ".join(sys.argv[1:]), "machine": dict(machine_info(libs=True), load_start=load_start, load_end=loadavg()),
              "config": args.config, "rows_from": "all" if args.all_rows else "Chinese rows", "rows": args.rows,
              "new_tokens": args.new_tokens, "rounds": args.rounds, "runs": runs}
    tables = []
    for run in runs:
        ref = sizes[0]
        lines = ["Template `%s` (prompts up to %d tokens), model run at seq_length %d of the profile's %d:"
                 % (run["template"], run["longest_prompt"], run["seq_length_run"], run["seq_length"]), "",
                 "| batch | tokens | wall s | tokens/s | ratio vs batch %d | CPU s | tokens/CPU-s | CPU ratio | "
                 "warm-up (compile) s |" % ref, "|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for bs in sizes:
            b = run["batch"][str(bs)]
            lines.append("| %d | %d | %.2f | %.1f | **%.2fx** | %.2f | %.1f | %.2fx | %.2f |"
                         % (bs, b["tokens"], b["seconds"], b["tokens_per_s"], b["ratio"], b["cpu_seconds"],
                            b["tokens_per_cpu_s"], b["cpu_ratio"], b["warmup_compile_s"]))
        tables.append("\n".join(lines))
    table = "\n\n".join(tables)
    if args.update_doc:
        m = result["machine"]
        text = ("%s\n\npredict.py batched greedy decoding (`tools/predict.py` generate path: MindFormers `generate`, "
                "per-row token budgets) on the tiny CPU profile `%s` (use_past off, random weights: speed does not "
                "depend on them), the first %d %s of `%s`, %d new tokens per row (min_new_tokens = max_new_tokens, "
                "so every batch size does the same work), %d interleaved rounds per batch size. "
                "All ratios are from one run.\n\n"
                "Command: `.venv/bin/python tools/bench_predict.py %s`\n\n"
                "Machine: %s, %s cores, Python %s, MindSpore %s, MindFormers %s; load average (1/5/15 min) %s at the "
                "start, %s at the end: other helpers' jobs shared the 2 cores, so the wall-clock ratio (the goal's "
                "figure) is beside the CPU-time ratio (load-independent).\n\n"
                "%s\n\nGoal: batch 16 >= 4x the tokens/s of batch 1. Without a KV cache (CPU) every step recomputes the "
                "whole padded sequence, so batching pays most when `--seq-length auto` can shrink it (short "
                "prompts). Under a shared load, single cells move by tens of percent between runs; compare the "
                "rows of one table, and the CPU ratio.\n"
                % (SECTION, args.config, args.rows, result["rows_from"], Path(args.input).name, args.new_tokens,
                   args.rounds, " ".join(sys.argv[1:]), m["cpu"], m["cores"], m["python"], m["mindspore"],
                   m["mindformers"], m["load_start"], m["load_end"], table))
        update_doc_section(args.update_doc, SECTION, text)
    if args.json:
        print(json.dumps(result))
    else:
        print(table)
    return 0


def bench_template(args, template, sizes, tok):
    from lorakit import inference, mf

    cfg = load_config(args.config, args.set)
    if str(cfg.get("context", {}).get("device_target")) == "CPU":
        model_config(cfg)["use_past"] = False  # the KV-cache path uses Ascend-only ops
    inference.check_tokenizer(tok, cfg)
    items = inference.read_items(args.input, template)
    if not args.all_rows:
        from lorakit.families import is_chinese

        items = [it for it in items if isinstance(it.problem, str) and is_chinese(it.problem)]
    items = items[: args.rows]
    if len(items) < args.rows:
        raise KitError("%s has only %d usable rows, --rows is %d" % (args.input, len(items), args.rows))
    seq = int(model_config(cfg)["seq_length"])
    n = args.new_tokens
    enc, _, _ = inference.encode_items(tok, items, seq, n, "truncate")
    prompts = [enc[it.id] for it in items]
    seq_run = inference.fit_seq_length(cfg, prompts, n, args.seq_length)
    net = inference.load_network(cfg, args.checkpoint, None)
    warm = {}
    for bs in sizes:
        t0 = time.perf_counter()
        mf.generate_rows(net, tok, prompts[:bs], n, n, pad_to=bs)
        warm[bs] = time.perf_counter() - t0
    secs = {bs: 0.0 for bs in sizes}
    cpu = {bs: 0.0 for bs in sizes}
    toks = {bs: 0 for bs in sizes}
    for _ in range(args.rounds):
        for bs in sizes:
            for start in range(0, args.rows, bs):
                chunk = prompts[start: start + bs]
                t0, c0 = time.perf_counter(), time.process_time()
                outs = mf.generate_rows(net, tok, chunk, n, n, pad_to=bs)
                secs[bs] += time.perf_counter() - t0
                cpu[bs] += time.process_time() - c0
                toks[bs] += sum(len(o) for o in outs)
    ref = sizes[0]
    rate = {bs: toks[bs] / secs[bs] for bs in sizes}
    cpu_rate = {bs: toks[bs] / cpu[bs] for bs in sizes}
    return {"template": template, "seq_length": seq, "seq_length_run": seq_run,
            "longest_prompt": max(len(p) for p in prompts),
            "batch": {str(bs): {"tokens": toks[bs], "seconds": round(secs[bs], 3), "tokens_per_s": round(rate[bs], 2),
                                "ratio": round(rate[bs] / rate[ref], 2), "cpu_seconds": round(cpu[bs], 3),
                                "tokens_per_cpu_s": round(cpu_rate[bs], 2),
                                "cpu_ratio": round(cpu_rate[bs] / cpu_rate[ref], 2),
                                "warmup_compile_s": round(warm[bs], 2)} for bs in sizes}}


if __name__ == "__main__":
    run_main(main)
