#!/usr/bin/env python3
"""`make proxy`'s helpers: stratified evaluation subsets, a timed run, and the comparison report.

  sample   JSONL -> a deterministic subset: per family the records at evenly spaced positions of the file
           (--per-family K, --families), or N evenly spaced records (--n); --max-context-chars keeps SQuAD
           records with short contexts only; --exclude drops problems present in another JSONL (held-out check)
  timed    run a command (the proxy's stages) and record its wall time, the CPU time of everything it ran
           and the machine's 1-minute load average sampled every 15 s -> JSON
  report   read what the tools wrote for each model of the run (base, stock, recipe: math reports per set,
           SQuAD reports and gates, training records, prediction records) and write the comparison: a
           Markdown section of docs/benchmarks.md, the README's proxy block, a plot, and report.json

Nothing is computed here that the tools did not measure; `report` only collects and lays out.
"""

import argparse
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

from lorakit.contest import HEADLINE_POLICY
from lorakit.io import KitError, iter_jsonl, read_json, run_main, unreadable, write_json, write_jsonl
from lorakit.layout import EVAL_SET, PROXY, RUN

PROG = "proxy"
MODELS = (("base", "base model (no LoRA)"), ("stock", "contest stock recipe"), ("recipe", "kit recipe"))
SETS = (("heldout", "held-out generated"), ("contest", "real contest records"))
README_BEGIN, README_END = "<!-- proxy:begin (written by make proxy) -->", "<!-- proxy:end -->"
DOC_HEADING = "## Proxy: the recipe on a real pretrained model (SmolLM2-135M, `make proxy`)"


# ------------------------------------------------------------------------------------------------ sample

def evenly_spaced(items, k):
    """k items at evenly spaced positions (all of them when k >= len)."""
    n = len(items)
    if k >= n:
        return list(items)
    return [items[(i * n) // k] for i in range(k)]


def cmd_sample(args):
    from lorakit.families import classify

    exclude = set()
    if args.exclude:
        exclude = {row.get("problem") for _, row in iter_jsonl(args.exclude)}
    by_family, order = {}, []
    dropped = {"excluded": 0, "long_context": 0, "other_family": 0}
    families = [f for f in (args.families or "").split(",") if f]
    for _, row in iter_jsonl(args.input):
        if "context" in row:
            fam = row.get("family") or "squad"
            if args.max_context_chars and len(row["context"]) > args.max_context_chars:
                dropped["long_context"] += 1
                continue
        else:
            if not isinstance(row.get("problem"), str):
                raise KitError("%s: a row without 'problem' or 'context'" % args.input)
            if row["problem"] in exclude:
                dropped["excluded"] += 1
                continue
            fam = row.get("family") or classify(row["problem"])
        if families and fam not in families:
            dropped["other_family"] += 1
            continue
        if fam not in by_family:
            by_family[fam] = []
            order.append(fam)
        by_family[fam].append(row)
    missing = [f for f in families if f not in by_family]
    if missing:
        raise KitError("%s: no records of %s" % (args.input, ", ".join(missing)))
    if args.per_family:
        chosen = []
        for fam in (families or order):
            chosen.extend(evenly_spaced(by_family[fam], args.per_family))
    else:
        chosen = evenly_spaced([r for fam in order for r in by_family[fam]], args.n)
    write_jsonl(args.out, chosen)
    counts = {}
    for row in chosen:
        fam = row.get("family") or ("squad" if "context" in row else classify(row["problem"]))
        counts[fam] = counts.get(fam, 0) + 1
    print("%s sample: %d records (%s) from %s -> %s; dropped %s" % (
        PROG, len(chosen), ", ".join("%s %d" % kv for kv in counts.items()), args.input, args.out,
        ", ".join("%s %d" % kv for kv in dropped.items() if kv[1]) or "none"), file=sys.stderr)
    return 0


# ------------------------------------------------------------------------------------------------ timed

def cmd_timed(args):
    if not args.command:
        raise KitError("timed needs a command after --")
    loads, stop = [], threading.Event()

    def sample_load():
        while True:
            try:
                loads.append(round(os.getloadavg()[0], 2))
            except OSError:
                pass
            if stop.wait(15):
                return

    thread = threading.Thread(target=sample_load, daemon=True)
    t0 = time.time()
    started = time.strftime("%Y-%m-%d %H:%M:%S")
    thread.start()
    proc = subprocess.run(args.command)
    stop.set()
    thread.join()
    wall = time.time() - t0
    usage = os.times()
    cpu = usage.children_user + usage.children_system
    rec = {"command": args.command, "started": started, "wall_s": round(wall, 1),
           "cpu_s": round(cpu, 1), "cpu_user_s": round(usage.children_user, 1),
           "cpu_system_s": round(usage.children_system, 1), "exit_code": proc.returncode,
           "loadavg_1min": {"samples": len(loads), "min": min(loads) if loads else None,
                            "mean": round(sum(loads) / len(loads), 2) if loads else None,
                            "max": max(loads) if loads else None},
           "cores": os.cpu_count()}
    write_json(args.out, rec)
    print("%s timed: exit %d, wall %.1f min, CPU %.1f min, load average %s..%s (mean %s) -> %s" % (
        PROG, proc.returncode, wall / 60, cpu / 60, rec["loadavg_1min"]["min"], rec["loadavg_1min"]["max"],
        rec["loadavg_1min"]["mean"], args.out), file=sys.stderr)
    return proc.returncode


# ------------------------------------------------------------------------------------------------ report

def _load(path):
    path = Path(path)
    if not path.is_file():
        raise KitError("%s: missing (did `make proxy` finish its stages?)" % path)
    return read_json(path)


def _train_config(path):
    import yaml

    try:
        with open(str(path), encoding="utf-8") as fh:
            return yaml.safe_load(fh)
    except OSError as exc:
        raise unreadable(path, exc) from None


def collect(run):
    """One flat record per model, from the files the tools wrote (nothing is recomputed)."""
    run = Path(run)
    proxy = PROXY.at(run)
    models = {}
    for name, label in MODELS:
        at = RUN.at(run / name)  # each model's folder is a run folder, one eval/<set>/ per evaluation set

        def eval_set(key, at=at):
            return EVAL_SET.at(at.eval_dir / key)

        m = {"name": name, "label": label, "sets": {}, "predict": {}}
        for key, _ in SETS:
            m["sets"][key] = _load(eval_set(key).math_report)
            m["predict"][key] = _load(eval_set(key).predict_record)
        m["squad"] = _load(eval_set("squad").squad_report)
        m["predict"]["squad"] = _load(eval_set("squad").predict_record)
        if name != "base":
            rec = _load(at.run_record)
            cfg = _train_config(at.train_config)
            pet = cfg["model"]["model_config"].get("pet_config") or {}
            data = _load(at.data_report)
            params = _load(at.params)
            loss = rec.get("loss") or {}
            curve = [row.get("loss") for _, row in iter_jsonl(at.loss)]
            m.update(recipe=data.get("recipe"), rows=data.get("rows_written"), seq_length=data.get("seq_length"),
                     loss_curve=curve,
                     lora="r%s alpha %s `%s`" % (pet.get("lora_rank"), pet.get("lora_alpha"),
                                                 str(pet.get("target_modules")).replace("|", "\\|")),
                     lr=float(cfg["lr_schedule"]["learning_rate"]), batch=int(cfg["runner_config"]["batch_size"]),
                     steps=loss.get("steps_logged"), loss=loss, train_wall_s=rec.get("wall_s"),
                     trainable=params["trainable"], total=params["total"], ratio=params["ratio_exact"])
        models[name] = m
    return {"run": str(run), "models": models,
            "timing": read_json(proxy.timing) if proxy.timing.is_file() else None,
            "sets": {key: sum(1 for _ in iter_jsonl(proxy.sets / (key + ".jsonl")))
                     for key in ("train", "heldout", "contest", "squad")}}


def _pct(x):
    return "%.1f %%" % (100.0 * x)


def _node(rep, family):
    return rep if family is None else rep["families"].get(family)


def _acc(rep, policy, family=None):
    return _node(rep, family)["policies"][policy]["accuracy"]


def _count(rep, policy, family=None):
    node = _node(rep, family)
    return "%d/%d" % (node["policies"][policy]["correct"], node["total"])


def _rate(m):
    toks = sum(p["generated_tokens"] for p in m["predict"].values())
    secs = sum(p["seconds"] for p in m["predict"].values())
    return toks / secs if secs else 0.0


def _timing_line(t):
    la = t.get("loadavg_1min") or {}
    return ("wall time %.1f min, CPU time of all its processes %.1f min (user %.1f, system %.1f), on %s cores; "
            "1-minute load average %s..%s, mean %s (sampled every 15 s; the run alone keeps it near 1-2, more means "
            "other jobs shared the machine); started %s, exit %s" % (
                t["wall_s"] / 60, t["cpu_s"] / 60, t["cpu_user_s"] / 60, t["cpu_system_s"] / 60, t.get("cores"),
                la.get("min"), la.get("max"), la.get("mean"), t.get("started"), t.get("exit_code")))


def markdown(data, plot_rel):
    from lorakit.math_metrics import POLICIES

    ms = data["models"]
    names = [n for n, _ in MODELS]
    stock, recipe = ms["stock"], ms["recipe"]
    lines = [DOC_HEADING, "",
             "SmolLM2-135M-Instruct (a real pretrained Llama-architecture model, imported from its GGUF by "
             "`make base-model PROFILE=smollm2-135m`) fine-tuned on the CPU with the contest's stock recipe and with "
             "the kit's recipe, side by side in one run at equal data and step budgets, and the base model alone. "
             "Command: `make proxy` (x86_64, %s cores, shared with other jobs)." % os.cpu_count(), ""]
    if data.get("timing"):
        lines += ["Measured: " + _timing_line(data["timing"]) + ".", ""]
    lines += ["| | base | stock recipe | kit recipe |", "|---|---:|---:|---:|"]

    def row(label, fn, trained_only=False):
        cells = ["-" if trained_only and ms[n]["name"] == "base" else fn(ms[n]) for n in names]
        lines.append("| %s | %s |" % (label, " | ".join(cells)))

    row("targets", lambda m: m["recipe"], True)
    row("LoRA", lambda m: m["lora"], True)
    row("learning rate", lambda m: "%g" % m["lr"], True)
    row("trainable / total parameters (ratio)", lambda m: "{:,} / {:,} ({:.4f})".format(
        m["trainable"], m["total"], m["ratio"]), True)
    row("training loss, mean of first -> last %s steps" % (stock["loss"].get("window") or "?"),
        lambda m: "%.3f -> %.3f" % (m["loss"]["first_mean"], m["loss"]["last_mean"]), True)
    row("training wall time", lambda m: "%.1f min" % (m["train_wall_s"] / 60), True)
    for key, label in SETS:
        row("math, %s (%s)" % (label, HEADLINE_POLICY), lambda m, k=key: "**%s** (%s)" % (
            _pct(_acc(m["sets"][k], HEADLINE_POLICY)), _count(m["sets"][k], HEADLINE_POLICY)))
    row("answers in the CoT format (ending in `答案：`)", lambda m: "%d of %d" % (
        sum((m["sets"][k].get("answer_sources") or {}).get("marker", 0) for k, _ in SETS),
        sum(m["sets"][k]["total"] for k, _ in SETS)))
    row("SQuAD EmF1 F1 / Em", lambda m: "%.2f / %.2f" % (m["squad"]["emf1"]["F1"], m["squad"]["emf1"]["Em"]))
    row("SQuAD gate (>= 90 % of base F1 / Em)", lambda m: "**%s** (>= %.2f / %.2f)" % (
        "PASS" if m["squad"]["gate"]["pass"] else "FAIL", m["squad"]["gate"]["f1_min"],
        m["squad"]["gate"]["em_min"]), True)
    row("decoding rate, generated tokens/s", lambda m: "%.2f" % _rate(m))
    lines += ["", "Per family and policy, correct / total (accuracy):", "",
              "| set | family | policy | " + " | ".join(names) + " |", "|---|---|---|" + "---:|" * len(names)]
    for key, label in SETS:
        for fam in list(ms["base"]["sets"][key]["families"]) + [None]:
            for pol in POLICIES:
                lines.append("| %s | %s | %s | %s |" % (label, fam or "all", pol, " | ".join(
                    "%s (%s)" % (_count(ms[n]["sets"][key], pol, fam), _pct(_acc(ms[n]["sets"][key], pol, fam)))
                    for n in names)))
    fams = ", ".join(ms["base"]["sets"]["heldout"]["families"])
    lines += ["", "![make proxy: math accuracy per family and SQuAD F1](%s)" % plot_rel, "",
              "Budget (every figure above comes from the run's files under `%s/`):" % data["run"], "",
              "* training, each recipe: %s steps of batch %s at seq_length %s, one pass over the same %d generated "
              "%s records; stock rows hold the gold answers as they are, recipe rows the kit's CoT targets; both "
              "in the model's own ChatML template." % (stock["steps"], stock["batch"], stock["seq_length"],
                                                      data["sets"]["train"], fams),
              "* math eval: %d held-out generated problems (none of them in the training records) and %d real contest "
              "records, both stratified (the same count per family, evenly spaced in file order); greedy; "
              "max_new_tokens = the longest training answer of the recipe (%d stock, %d CoT; the base model gets "
              "the stock budget)." % (data["sets"]["heldout"], data["sets"]["contest"],
                                      stock["predict"]["heldout"]["max_new_tokens"],
                                      recipe["predict"]["heldout"]["max_new_tokens"]),
              "* SQuAD: %d real dev records (the first question of evenly spaced paragraphs with contexts of at most "
              "the proxy's character limit), the contest's SQuAD prompt without BOS, 20 new tokens; the gate is "
              "90 %% of the base model's own F1 and Em on the same records." % data["sets"]["squad"], ""]
    return lines


def plot(data, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ms = data["models"]
    fams = list(ms["base"]["sets"]["heldout"]["families"])
    groups = [(key, fam) for key, _ in SETS for fam in fams + [None]]
    fig, (ax, ax3, ax2) = plt.subplots(1, 3, figsize=(13, 4), gridspec_kw={"width_ratios": [3, 1.3, 1]})
    width = 0.27
    colors = {"base": "#999999", "stock": "#e08a3c", "recipe": "#2a7ab9"}
    for i, (name, label) in enumerate(MODELS):
        vals = [100 * _acc(ms[name]["sets"][key], HEADLINE_POLICY, fam) for key, fam in groups]
        ax.bar([g + (i - 1) * width for g in range(len(groups))], vals, width, label=label, color=colors[name])
        ax2.bar([i], [ms[name]["squad"]["emf1"]["F1"]], 0.6, color=colors[name])
    ax.set_xticks(range(len(groups)))
    ax.set_xticklabels(["%s\n%s" % (key, fam or "all") for key, fam in groups], fontsize=8)
    ax.set_ylabel("math accuracy, %s (%%)" % HEADLINE_POLICY)
    ax.set_ylim(0, 100)
    ax.legend(fontsize=8)
    ax.set_title("SmolLM2-135M, make proxy: math")
    for name in ("stock", "recipe"):
        curve = ms[name]["loss_curve"]
        ax3.plot(range(1, len(curve) + 1), curve, color=colors[name], label=name)
    ax3.set_xlabel("step")
    ax3.set_ylabel("training loss")
    ax3.legend(fontsize=8)
    ax3.set_title("LoRA training loss (own targets)")
    ax2.axhline(0.9 * ms["base"]["squad"]["emf1"]["F1"], color="k", ls="--", lw=1, label="gate: 90 % of base")
    ax2.set_xticks(range(len(MODELS)))
    ax2.set_xticklabels([n for n, _ in MODELS], fontsize=8)
    ax2.set_ylabel("SQuAD EmF1 F1")
    ax2.legend(fontsize=8)
    ax2.set_title("reading comprehension")
    fig.tight_layout()
    from lorakit.io import atomic_path

    with atomic_path(path) as tmp:
        fig.savefig(str(tmp), dpi=90, format="png")
    plt.close(fig)


def readme_block(data):
    ms = data["models"]
    names = [n for n, _ in MODELS]
    lines = [README_BEGIN, "",
             "| SmolLM2-135M, `make proxy` | base | stock recipe | kit recipe |", "|---|---:|---:|---:|"]
    for key, label in SETS:
        lines.append("| math, %s (%d problems, %s) | %s |" % (
            label, ms["base"]["sets"][key]["total"], HEADLINE_POLICY, " | ".join(
                "%s (%s)" % (_pct(_acc(ms[n]["sets"][key], HEADLINE_POLICY)),
                             _count(ms[n]["sets"][key], HEADLINE_POLICY)) for n in names)))
    lines.append("| SQuAD EmF1 F1 / Em (%d records) | %s |" % (ms["base"]["squad"]["total"], " | ".join(
        "%.2f / %.2f" % (ms[n]["squad"]["emf1"]["F1"], ms[n]["squad"]["emf1"]["Em"]) for n in names)))
    lines.append("| SQuAD gate (>= 90 %% of base) | - | %s |" % " | ".join(
        "PASS" if ms[n]["squad"]["gate"]["pass"] else "FAIL" for n in ("stock", "recipe")))
    lines.append("| trainable parameters (ratio to the model's) | - | %s |" % " | ".join(
        "{:,} ({:.4f})".format(ms[n]["trainable"], ms[n]["ratio"]) for n in ("stock", "recipe")))
    if data.get("timing"):
        lines += ["", "`make proxy`: " + _timing_line(data["timing"]) + "."]
    lines += ["", README_END]
    return "\n".join(lines)


def replace_block(path, block):
    from lorakit.io import atomic_open

    text = Path(path).read_text(encoding="utf-8")
    if README_BEGIN not in text or README_END not in text:
        raise KitError("%s: no proxy block (%s ... %s)" % (path, README_BEGIN, README_END))
    head, rest = text.split(README_BEGIN, 1)
    tail = rest.split(README_END, 1)[1]
    with atomic_open(path) as fh:
        fh.write(head + block + tail)


def cmd_report(args):
    from lorakit.bench import update_doc_section

    data = collect(args.run)
    lines = markdown(data, os.path.relpath(args.plot, str(Path(args.doc).parent)))
    plot(data, args.plot)
    update_doc_section(args.doc, DOC_HEADING, "\n".join(lines))
    if args.readme:
        replace_block(args.readme, readme_block(data))
    write_json(PROXY.at(args.run).report, {"models": {n: {k: v for k, v in m.items()
                                                               if k not in ("predict", "loss_curve")}
                                                          for n, m in data["models"].items()},
                                                "timing": data["timing"], "sets": data["sets"]})
    print("\n".join(lines))
    return 0


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("sample", help="a deterministic stratified subset of a JSONL file")
    s.add_argument("--input", required=True)
    s.add_argument("--out", required=True)
    s.add_argument("--families", help="comma list: keep only these families (math rows)")
    g = s.add_mutually_exclusive_group(required=True)
    g.add_argument("--per-family", type=int, help="K records per family, evenly spaced")
    g.add_argument("--n", type=int, help="N records in all, evenly spaced")
    s.add_argument("--exclude", help="JSONL whose problems must not be chosen (e.g. the training records)")
    s.add_argument("--max-context-chars", type=int, help="SQuAD records: keep contexts of at most this many chars")
    t = sub.add_parser("timed", help="run a command; record wall time, CPU time and load average")
    t.add_argument("--out", required=True)
    t.add_argument("command", nargs=argparse.REMAINDER, help="-- command ...")
    r = sub.add_parser("report", help="the comparison table + plot from a finished run")
    r.add_argument("--run", required=True, help="the proxy run folder (runs/proxy)")
    r.add_argument("--doc", default="docs/benchmarks.md", help="update this file's proxy section")
    r.add_argument("--readme", default=None, help="replace this file's proxy block")
    r.add_argument("--plot", default="docs/proxy.png")
    args = ap.parse_args(argv)
    if args.cmd == "sample":
        if (args.per_family or args.n or 0) < 1:
            raise KitError("--per-family / --n must be >= 1")
        return cmd_sample(args)
    if args.cmd == "timed":
        if args.command[:1] == ["--"]:
            args.command = args.command[1:]
        return cmd_timed(args)
    return cmd_report(args)


if __name__ == "__main__":
    run_main(main)
