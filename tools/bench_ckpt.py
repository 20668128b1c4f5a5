#!/usr/bin/env python3
"""Benchmark `ckpt.py fold-lora` against the contest fork's `transform_ckpt_lora.py` on one synthetic checkpoint.

The checkpoint has Llama3-8B-shaped decoder layers (hidden 4096, 32 heads / 8 KV heads, FFN 14336) in bfloat16,
as the real one is stored, plus LoRA tensors in the dtype MindFormers' LoraConfig defaults to (float16; the
contest's yamls did not set it). Fewer layers than 32 (--layers) so that the stock tool, which holds the whole
file several times over, fits in memory; embeddings/lm_head are left out unless --with-embeddings.
Both tools get the same file and the right scaling (the stock one via --lora_scaling alpha/r). Each runs once,
as a child process: wall time and peak RSS (from wait4). Then both outputs are compared, weight by weight,
with an fp64 reference W + (alpha/r) B @ A (errors, and the share of elements equal to the correctly rounded
bf16 value). The stock script is run from a temporary copy and never stored in the kit.
"""

import argparse
import collections
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

from lorakit import ckpt_io, params
from lorakit.bench import loadavg, machine_info, update_doc_section
from lorakit.config import load_config
from lorakit.io import KitError, run_main, write_json
from lorakit.paths import CACHE, REPO

# the contest fork's tool, from $CONTEST_FORK (the public contest archive's topic2-finetune/mindformers)
STOCK = (os.path.join(os.environ["CONTEST_FORK"], "mindformers", "tools", "transform_ckpt_lora.py")
         if os.environ.get("CONTEST_FORK") else None)


# A minimal launcher: Linux's ru_maxrss of a child starts at the RSS of the process it was forked from
# (the pre-exec image counts), so the measured command is forked from this tiny interpreter, not from the
# benchmark process, which holds numpy and MindSpore.
_SHIM = (
    "import os,sys,json\n"
    "pid=os.fork()\n"
    "if pid==0:\n"
    "    os.execv(sys.argv[2],sys.argv[2:])\n"
    "_,st,ru=os.wait4(pid,0)\n"
    "open(sys.argv[1],'w').write(json.dumps([ru.ru_maxrss*1024,os.waitstatus_to_exitcode(st)]))\n"
)


def measure(cmd, env=None):
    """Run cmd once; return (wall seconds, peak RSS bytes of that process, exit code, stdout, stderr)."""
    fd, rec = tempfile.mkstemp(suffix=".json")
    os.close(fd)
    try:
        t0 = time.time()
        proc = subprocess.run([sys.executable, "-S", "-c", _SHIM, rec] + list(cmd), capture_output=True,
                              env=env)
        secs = time.time() - t0
        with open(rec, encoding="utf-8") as fh:
            rss, rc = json.load(fh)
    finally:
        os.unlink(rec)
    if proc.returncode:
        rc = rc or proc.returncode
    return secs, rss, rc, proc.stdout.decode(errors="replace"), proc.stderr.decode(errors="replace")


SECTION = "## Checkpoints (ckpt.py fold-lora vs the fork's transform_ckpt_lora.py)"


def render(r):
    """The benchmarks.md section for one result (what `make bench` writes)."""
    m, c, e = r["machine"], r["checkpoint"], r["errors_vs_fp64"]
    mb = lambda b: f"{int(b) // (1 << 20):,} MB"  # noqa: E731
    lines = [SECTION, "",
             "Command: `.venv/bin/python %s` (one run of each tool on the same synthetic checkpoint; %s)." % (
                 r["command"], time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())), "",
             "Machine: %s, %s cores, %d GB RAM, Python %s, MindSpore %s, numpy %s; load average %s." % (
                 m["cpu"], m["cores"], m["ram_gb"], m["python"], m.get("mindspore"), m.get("numpy"),
                 r.get("load", "?")), "",
             "Synthetic checkpoint: %d decoder layers with Llama3-8B shapes%s, base weights in %s, LoRA r%s/alpha %s "
             "on `%s` in %s; %s parameters, %.2f GB. The stock tool (`transform_ckpt_lora.py --lora_scaling %s`) "
             "runs from a temporary copy of the contest fork's file (never committed); the kit runs "
             "`ckpt.py extract-lora` then `ckpt.py fold-lora`. Wall time and peak RSS of each tool's own process." % (
                 c["layers"], " plus embedding and lm_head" if c["with_embeddings"] else "", c["base_dtype"],
                 c["lora_rank"], c["lora_alpha"], c["target_modules"], c["lora_dtype"], "{:,}".format(c["params"]),
                 c["bytes"] / 1e9, r["scaling"]), "",
             "| | wall s | peak RSS | vs stock |", "|---|---|---|---|",
             "| stock `transform_ckpt_lora.py` | %.2f | %s | 1 |" % (r["stock"]["seconds"],
                                                                  mb(r["stock"]["peak_rss_bytes"])),
             "| kit `fold-lora` | %.2f | %s | **%.2fx faster, %.3fx peak RSS** |" % (
                 r["kit_fold"]["seconds"], mb(r["kit_fold"]["peak_rss_bytes"]), r["speedup_fold"],
                 r["rss_ratio_fold"]),
             "| kit `extract-lora` (once per run) | %.2f | %s | extract + fold: %.2fx faster |" % (
                 r["kit_extract"]["seconds"], mb(r["kit_extract"]["peak_rss_bytes"]),
                 r["speedup_extract_plus_fold"]), "",
             "Folded weights against an fp64 reference `W + %s * B @ A` (%d folded matrices):" % (
                 r["scaling"], e["folded_weights"]), "",
             "| | max abs error | RMS error | elements equal to the correctly rounded %s value |" % c["base_dtype"],
             "|---|---|---|---|"]
    for k, label in (("kit", "kit (fp32 math, one rounding)"), ("stock", "stock")):
        lines.append("| %s | %.4g | %.5g | %.3f %% |" % (label, e[k]["max_abs_err"], e[k]["rms_err"],
                                                         100 * e[k]["share_correctly_rounded"]))
    lines += ["", "Goals: peak RSS <= 0.6x stock, speed >= 1.5x, folded weights closer to fp64 than stock. "
              "The maximum errors coincide when both are bounded by the final rounding to the storage dtype.", ""]
    return "\n".join(lines)


def compare(full_path, outputs, scaling):
    """Errors of each output's folded weights against fp64 W + scaling * B @ A; unfolded tensors must be equal."""
    lora = {}
    for e in ckpt_io.iter_ckpt(full_path):
        if ckpt_io.is_lora(e.name):
            lora[e.name] = ckpt_io.as_float64(e.load())
    stats = {k: {"max_abs": 0.0, "sq": 0.0, "n": 0, "rne_equal": 0} for k in outputs}
    iters = {k: ckpt_io.iter_ckpt(p) for k, p in outputs.items()}
    base_it = (e for e in ckpt_io.iter_ckpt(full_path) if not ckpt_io.is_lora(e.name))
    folded = 0
    for e in base_it:
        got = {}
        for k, it in iters.items():
            o = next(it)
            if o.name != e.name:
                raise KitError("%s: tensor order differs (%s vs %s)" % (outputs[k], o.name, e.name))
            got[k] = o.load()
        w = e.load()
        cell = e.name[: -len(".weight")]
        a_name = cell + ".mindpet_delta_lora_a"
        if a_name not in lora:
            for k, t in got.items():
                if not np.array_equal(t.array, w.array):
                    raise KitError("%s changed %s, which has no LoRA" % (k, e.name))
            continue
        folded += 1
        ref = ckpt_io.as_float64(w) + scaling * (lora[cell + ".mindpet_delta_lora_b"] @ lora[a_name])
        best = ckpt_io.from_float32(ref.astype(np.float32), w.ttype).array  # (near) correctly rounded
        for k, t in got.items():
            if t.ttype != w.ttype or t.array.shape != w.array.shape:
                raise KitError("%s: %s came back as %s %s" % (k, e.name, t.ttype, t.array.shape))
            diff = np.abs(ckpt_io.as_float64(t) - ref)
            s = stats[k]
            s["max_abs"] = max(s["max_abs"], float(diff.max()))
            s["sq"] += float(np.square(diff).sum())
            s["n"] += diff.size
            s["rne_equal"] += int(np.count_nonzero(t.array == best))
    out = collections.OrderedDict()
    for k, s in stats.items():
        out[k] = collections.OrderedDict([("max_abs_err", s["max_abs"]),
                                          ("rms_err", (s["sq"] / s["n"]) ** 0.5 if s["n"] else None),
                                          ("share_correctly_rounded", s["rne_equal"] / s["n"] if s["n"] else None)])
    out["folded_weights"] = folded
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__.split("\n\n", 1)[1])
    ap.add_argument("--layers", type=int, default=4, help="Llama3-8B-shaped decoder layers (default 4)")
    ap.add_argument("--with-embeddings", action="store_true", help="also the 128256 x 4096 embedding and lm_head")
    ap.add_argument("--rank", type=int, default=16)
    ap.add_argument("--alpha", type=float, default=32)
    ap.add_argument("--target-modules", default=".*wq|.*wk|.*wv|.*wo")
    ap.add_argument("--lora-dtype", default="float16", choices=["float16", "float32", "bfloat16"])
    ap.add_argument("--stock", default=STOCK, help="the fork's transform_ckpt_lora.py (copied to a temp dir)")
    ap.add_argument("--workdir", default=str(CACHE / "bench_ckpt"))
    ap.add_argument("--keep", action="store_true", help="keep the synthetic and output checkpoints")
    ap.add_argument("--out", help="write the result JSON here too")
    ap.add_argument("--update-doc", nargs="?", const=str(REPO / "docs" / "benchmarks.md"), default=None,
                    help="rewrite this benchmark's section of docs/benchmarks.md (default path)")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    args = ap.parse_args(argv)
    if not args.stock:
        raise KitError("give --stock FILE (or CONTEST_FORK=DIR): the contest fork's transform_ckpt_lora.py")
    if not os.path.isfile(args.stock):
        raise KitError("stock tool not found: %s" % args.stock)

    overrides = ["model.model_config.num_layers=%d" % args.layers,
                 "model.model_config.pet_config.lora_rank=%d" % args.rank,
                 "model.model_config.pet_config.lora_alpha=%s" % args.alpha,
                 "model.model_config.pet_config.target_modules=%s" % args.target_modules,
                 "model.model_config.pet_config.param_init_type=%s" % args.lora_dtype,
                 "model.model_config.param_init_type=bfloat16"]
    cfg = load_config("llama3-8b", overrides)
    mc = cfg["model"]["model_config"]
    table = params.base_param_table(mc)
    if not args.with_embeddings:
        table.pop("model.tok_embeddings.embedding_weight")
        table.pop("lm_head.weight")
    table.update(params.lora_param_table(mc, mc["pet_config"]))
    scaling = float(args.alpha) / args.rank

    work = args.workdir
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    full = os.path.join(work, "full.ckpt")
    t0 = time.time()
    ckpt_io.write_synthetic(full, table, seed=0, scale=0.02)
    synth_secs = time.time() - t0
    py = sys.executable
    tools = str(REPO / "tools")
    env = dict(os.environ, GLOG_v="3", PYTHONDONTWRITEBYTECODE="1")

    secs_x, rss_x, rc, out, err = measure([py, os.path.join(tools, "ckpt.py"), "extract-lora", "--checkpoint", full,
                                           "--config", "llama3-8b"] + sum([["--set", o] for o in overrides], [])
                                          + ["--out-dir", os.path.join(work, "adapter")], env)
    if rc:
        raise KitError("extract-lora failed: %s" % err.strip().splitlines()[-1:])
    secs_k, rss_k, rc, out, err = measure([py, os.path.join(tools, "ckpt.py"), "fold-lora", "--base", full,
                                           "--adapter", os.path.join(work, "adapter"),
                                           "--out", os.path.join(work, "kit.ckpt")], env)
    if rc:
        raise KitError("fold-lora failed: %s" % err.strip().splitlines()[-1:])
    stock_dir = tempfile.mkdtemp(prefix="stock-", dir=work)
    stock_copy = os.path.join(stock_dir, "transform_ckpt_lora.py")
    shutil.copy(args.stock, stock_copy)
    os.makedirs(os.path.join(work, "stock_out"))  # the stock tool does not create it
    secs_s, rss_s, rc, out, err = measure([py, stock_copy, "--src_ckpt_path_or_dir", full,
                                           "--dst_ckpt_dir", os.path.join(work, "stock_out"),
                                           "--lora_scaling", repr(scaling)], env)
    if rc:
        raise KitError("stock tool failed (exit %d): %s" % (rc, " | ".join(err.strip().splitlines()[-3:])))
    stock_out = os.path.join(work, "stock_out", "merged_lora.ckpt")
    errors = compare(full, collections.OrderedDict([("kit", os.path.join(work, "kit.ckpt")),
                                                    ("stock", stock_out)]), scaling)
    result = collections.OrderedDict([
        ("command", " ".join(["tools/bench_ckpt.py"] + (argv if argv is not None else sys.argv[1:]))),
        ("machine", machine_info(libs=True)),
        ("checkpoint", collections.OrderedDict([
            ("layers", args.layers), ("with_embeddings", args.with_embeddings), ("base_dtype", "bfloat16"),
            ("lora_dtype", args.lora_dtype), ("lora_rank", args.rank), ("lora_alpha", args.alpha),
            ("target_modules", args.target_modules), ("tensors", len(table)),
            ("params", sum(params.numel(s) for s, _ in table.values())), ("bytes", os.path.getsize(full)),
            ("synth_seconds", round(synth_secs, 1))])),
        ("scaling", scaling),
        ("stock", collections.OrderedDict([("seconds", round(secs_s, 2)), ("peak_rss_bytes", rss_s)])),
        ("kit_fold", collections.OrderedDict([("seconds", round(secs_k, 2)), ("peak_rss_bytes", rss_k)])),
        ("kit_extract", collections.OrderedDict([("seconds", round(secs_x, 2)), ("peak_rss_bytes", rss_x)])),
        ("speedup_fold", round(secs_s / secs_k, 2)),
        ("speedup_extract_plus_fold", round(secs_s / (secs_k + secs_x), 2)),
        ("rss_ratio_fold", round(rss_k / rss_s, 3)),
        ("rss_ratio_extract", round(rss_x / rss_s, 3)),
        ("errors_vs_fp64", errors),
    ])
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    result["load"] = loadavg()
    if args.out:
        write_json(args.out, result)
    if args.update_doc:
        update_doc_section(args.update_doc, SECTION, render(result))
    if args.json:
        print(json.dumps(result))
    else:
        print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    run_main(main)
