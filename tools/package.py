#!/usr/bin/env python3
"""Build submission/<team>/ (and submission/<team>.zip) from a finished run folder.

Collects the adapter (weights + adapter_config.json), the resolved training and eval yaml, the ratio report,
the math and SQuAD reports with their raw predictions and gold files, the loss and accuracy PNGs, the logs and
the MindFormers patches; writes a filled REPORT.md (the contest's report template) and manifest.json (files
with bytes and sha256; see submission/schema/manifest.schema.json); then zips it.

Every input is checked first and all missing ones are listed at once before anything is written. The folder is
staged in a temporary directory inside the output folder, checked with tools/verify.py, and only then renamed
into place (an existing submission/<team>/ is replaced in one rename). Absolute paths are rewritten (kit paths
become relative, outside files keep their base name) and a submission that would still contain one is refused.
The numbers in the manifest are recomputed here from the raw predictions and the weights, with the same library
code verify.py uses, and must agree with the run's own reports.

  package.py --team demo --run runs/tiny
  package.py --team acme --run runs/llama3-8b --weights-url https://example.org/acme-adapter.zip --notes notes.md
"""

import argparse
import datetime
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from string import Template

from lorakit import __version__ as KIT_VERSION
from lorakit import manifest as mf
from lorakit.io import KitError, file_fingerprint, iter_jsonl, read_json, run_main, sha256_file, write_json
from lorakit.paths import PATCHES_DIR, REPO, RUNS

TEMPLATE = REPO / "submission" / "REPORT.template.md"
TOOLS = Path(__file__).resolve().parent

# (source relative to RUN, destination in the submission, required)
RUN_FILES = [
    ("adapter/adapter.ckpt", "adapter/adapter.ckpt", True),
    ("adapter/adapter_config.json", "adapter/adapter_config.json", True),
    ("train/config.yaml", "config/train.yaml", True),
    ("train/run.json", "train/run.json", True),
    ("train/loss.jsonl", "train/loss.jsonl", True),
    ("train/loss.png", "train/loss.png", True),
    ("eval/predictions.jsonl", "eval/predictions.jsonl", True),
    ("eval/math_report.json", "eval/math_report.json", True),
    ("eval/math_report.md", "eval/math_report.md", True),
    ("eval/math_report.png", "eval/math_report.png", True),
    ("eval/squad_predictions.jsonl", "eval/squad_predictions.jsonl", True),
    ("eval/squad_report.json", "eval/squad_report.json", True),
    ("eval/squad_report.md", "eval/squad_report.md", True),
    ("eval/params.json", "eval/params.json", True),
    ("eval/predictions.jsonl.run.json", "eval/predictions.jsonl.run.json", False),
    ("eval/squad_predictions.jsonl.run.json", "eval/squad_predictions.jsonl.run.json", False),
    ("data/data_report.json", "data/data_report.json", False),
    ("data/data_report.md", "data/data_report.md", False),
    ("data/data_report.png", "data/data_report.png", False),
]
EVAL_CONFIG_CANDIDATES = ("eval/config.yaml", "eval/predict_config.yaml", "eval/eval.yaml")
LOG_DIRS = ("train/logs", "train/log", "eval/logs", "data/logs")
LOG_GLOBS = ("train/*.log", "eval/*.log", "data/*.log", "train/output/log/**/*.log", "train/output/msrun_log/*.log")
MAX_LOG_BYTES = 64 << 20
BASE_IN_SUBMISSION = "base/base.ckpt"
TOKENIZER_IN_SUBMISSION = "tokenizer/tiny.tiktoken"
MAX_PACKAGED_BASE_PARAMS = 50 * 1000 * 1000  # a random-init base is packaged only for small (tiny) models


def git(*args):
    try:
        out = subprocess.run(["git", "-C", str(REPO)] + list(args), capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def kit_info():
    commit = git("rev-parse", "HEAD")
    dirty = None
    if commit:
        status = git("status", "--porcelain", "--untracked-files=no")
        dirty = bool(status) if status is not None else None
    return {"version": KIT_VERSION, "commit": commit if commit and len(commit) == 40 else None, "dirty": dirty}


def dist_version(name):
    try:
        from importlib import metadata
    except ImportError:  # pragma: no cover - py<3.8
        return None
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def environment(run_record):
    env = {"python": platform.python_version(), "mindspore": dist_version("mindspore"),
           "mindformers": dist_version("mindformers"), "numpy": dist_version("numpy"),
           "platform": "%s %s" % (platform.system(), platform.machine())}
    for key in ("mindpet", "tiktoken", "jieba"):
        v = dist_version(key)
        if v:
            env[key] = v
    trained = run_record.get("versions") or run_record.get("environment") if isinstance(run_record, dict) else None
    if isinstance(trained, dict):
        env["training"] = {str(k): (v if isinstance(v, (str, type(None))) else json.dumps(v))
                           for k, v in trained.items()}
    return env


def patch_series():
    """(series names, [(name, path)]) of mindformers_patches/ (empty when the kit has none)."""
    series = PATCHES_DIR / "series"
    if not series.is_file():
        return [], []
    names = [ln.strip() for ln in series.read_text(encoding="utf-8").splitlines()
             if ln.strip() and not ln.strip().startswith("#")]
    return names, [(n, PATCHES_DIR / n) for n in names]


def check_training_patches(run, patch_files):
    """The patches packaged must be the ones the training run applied (run.json records name + sha256)."""
    rec = read_json(run / "train/run.json") if (run / "train/run.json").is_file() else {}
    trained = (rec.get("patches") or {}).get("patches") if isinstance(rec.get("patches"), dict) else None
    if not trained:
        return
    now = [{"name": n, "sha256": sha256_file(p)} for n, p in patch_files]
    was = [{"name": t.get("name"), "sha256": t.get("sha256")} for t in trained if isinstance(t, dict)]
    if now != was:
        raise KitError("mindformers_patches/ changed since the training run (run.json lists %s; the kit has %s): "
                       "retrain, or package from a checkout with the run's patches"
                       % ([w["name"] for w in was], [n["name"] for n in now]))


def find_logs(run):
    out = []
    for d in LOG_DIRS:
        base = run / d
        if base.is_dir():
            out += [p for p in sorted(base.rglob("*")) if p.is_file() and not p.is_symlink()]
    for pattern in LOG_GLOBS:
        out += [p for p in sorted(run.glob(pattern)) if p.is_file() and not p.is_symlink()]
    seen, logs = set(), []
    for p in out:
        if p in seen:
            continue
        seen.add(p)
        if p.stat().st_size > MAX_LOG_BYTES:
            print("package: warning: %s is %d bytes, over %d: not packaged" % (p, p.stat().st_size, MAX_LOG_BYTES),
                  file=sys.stderr)
            continue
        logs.append(p)
    return logs


def resolve_input(value, run, label):
    """A path recorded by a tool (absolute, or relative to the repo / the run folder)."""
    if not value:
        return None
    p = Path(value)
    for cand in ([p] if p.is_absolute() else [REPO / p, run / p, Path.cwd() / p]):
        if cand.is_file():
            return cand.resolve()
    return None


# ---------------------------------------------------------------- the numbers

def rows_of(path):
    rows, lines = [], []
    for lineno, obj in iter_jsonl(path):
        rows.append(obj)
        lines.append(lineno)
    return rows, lines


def math_metrics(gold_path, pred_path, run_report):
    from lorakit.metrics import DEFAULT_TOLERANCE, HEADLINE_POLICY, score_predictions

    tol = float((run_report.get("tolerance") or {}).get("relative", DEFAULT_TOLERANCE))
    gold, gl = rows_of(gold_path)
    pred, pl = rows_of(pred_path)
    rep = score_predictions(gold, pred, tolerance=tol, gold_lines=gl, pred_lines=pl,
                            gold_name=str(gold_path), pred_name=str(pred_path))
    for pol, got in rep["policies"].items():
        claimed = (run_report.get("policies") or {}).get(pol, {})
        if claimed.get("correct") != got["correct"]:
            raise KitError("eval/math_report.json says %s correct=%s but its predictions score %d against %s: "
                           "the report is stale, re-run make eval" % (pol, claimed.get("correct"), got["correct"],
                                                                     gold_path.name))
    fp = file_fingerprint(gold_path)
    gold_fp = {"name": gold_path.name, "bytes": fp["bytes"], "sha256": fp["sha256"], "records": rep["total"]}
    return {
        "gold": gold_fp,
        "total": rep["total"],
        "tolerance": tol,
        "primary_policy": run_report.get("headline_policy") or HEADLINE_POLICY,
        "policies": rep["policies"],
        "families": {f: {"total": s["total"], "policies": s["policies"]} for f, s in rep["families"].items()},
        "integer_rounded": rep["integer_rounded"],
    }


def squad_metrics(records_path, pred_path, run_report, thresholds=None):
    from lorakit import metrics as squad_tool  # score_squad: the one implementation squad.py uses too

    recs = list(iter_jsonl(records_path))
    preds = list(iter_jsonl(pred_path))
    got = squad_tool.score_squad(recs, preds, str(records_path), str(pred_path))
    f1, em = float(got["emf1"]["F1"]), float(got["emf1"]["Em"])
    claimed = run_report.get("emf1") or {}
    for key, value in (("F1", f1), ("Em", em)):
        if claimed.get(key) is not None and abs(float(claimed[key]) - value) > 1e-6:
            raise KitError("eval/squad_report.json says %s=%s but its predictions score %.6f: the report is stale, "
                           "re-run squad.py score" % (key, claimed[key], value))
    gate = run_report.get("gate") if isinstance(run_report.get("gate"), dict) else {}
    if thresholds:
        thr = {"f1": float(thresholds[0]), "em": float(thresholds[1])}
    elif gate.get("f1_min") is not None and gate.get("em_min") is not None:
        thr = {"f1": float(gate["f1_min"]), "em": float(gate["em_min"])}
    else:
        thr = {"f1": squad_tool.SQUAD_GATE_F1, "em": squad_tool.SQUAD_GATE_EM}
    fp = file_fingerprint(records_path)
    out = {"records": got["total"], "records_file": {"name": records_path.name, "bytes": fp["bytes"],
                                                     "sha256": fp["sha256"], "records": got["total"]},
           "metric": "EmF1Metric", "f1": f1, "em": em, "thresholds": thr,
           "passed": bool(f1 >= thr["f1"] and em >= thr["em"]),
           "official": {"f1": float(got["squad_v1.1"]["f1"]), "em": float(got["squad_v1.1"]["exact_match"])}}
    if gate.get("basis"):
        out["threshold_basis"] = str(gate["basis"])
    return out


# ---------------------------------------------------------------- REPORT.md

def md_escape(s):
    return str(s).replace("|", "\\|").replace("\n", " ")


def flat_items(d, prefix=""):
    for k, v in d.items():
        if isinstance(v, dict):
            yield from flat_items(v, prefix + k + ".")
        else:
            yield prefix + k, v


def hyper_table(cfg):
    from lorakit.config import get_path

    keys = ["runner_config.epochs", "runner_config.batch_size", "model.model_config.seq_length",
            "optimizer.type", "optimizer.beta1", "optimizer.beta2", "optimizer.eps", "optimizer.weight_decay",
            "lr_schedule.type", "lr_schedule.learning_rate", "lr_schedule.lr_end", "lr_schedule.warmup_ratio",
            "lr_schedule.total_steps", "model.model_config.pet_config.lora_rank",
            "model.model_config.pet_config.lora_alpha", "model.model_config.pet_config.lora_dropout",
            "model.model_config.pet_config.target_modules", "model.model_config.compute_dtype",
            "model.model_config.param_init_type", "parallel_config.data_parallel", "parallel_config.model_parallel",
            "parallel_config.pipeline_stage", "runner_wrapper.use_clip_grad", "seed"]
    rows = []
    for k in keys:
        v = get_path(cfg, k)
        if v is not None:
            rows.append("| `%s` | %s |" % (k, md_escape(v)))
    return "\n".join(rows)


def fill_report(ctx, notes):
    m = ctx["manifest"]
    math = m["metrics"]["math"]
    squad = m["metrics"]["squad"]
    score = m["metrics"]["score"]
    params = m["params"]
    lora = m["lora"]
    pol = score["policy"]
    policies = list(math["policies"])
    fam_rows = ["| family | n | " + " | ".join(policies) + " |", "|---|---:|" + "---:|" * len(policies),
                "| **overall** | %d | %s |" % (math["total"], " | ".join(
                    "%.2f %%" % (100 * math["policies"][p]["accuracy"]) for p in policies))]
    for fam, fs in math["families"].items():
        fam_rows.append("| %s | %d | %s |" % (fam, fs["total"], " | ".join(
            "%.2f %%" % (100 * fs["policies"][p]["accuracy"]) for p in policies)))
    ratio_rows = []
    for (din, dout), cells in sorted(ctx["matrix_groups"].items()):
        names = sorted({c.split(".")[-1] for c in cells})
        ratio_rows.append("| %s | %d | %d | %d | %d × %d × (%d + %d) = %d |" % (
            ", ".join(names), din, dout, len(cells), len(cells), lora["rank"], din, dout,
            len(cells) * lora["rank"] * (din + dout)))
    env_rows = ["| %s | %s |" % (k, md_escape(v)) for k, v in flat_items(m["environment"])]
    patches = m["patches"]["series"]
    patch_list = "\n".join("- `patches/%s`" % p for p in patches) or "- none"
    thr = squad["thresholds"]
    squad_section = "\n".join([
        "| metric | after fine-tuning | threshold | |", "|---|---:|---:|---|",
        "| F1 (MindFormers EmF1Metric) | %.4f | %.4f | %s |" % (squad["f1"], thr["f1"],
                                                              "ok" if squad["f1"] >= thr["f1"] else "BELOW"),
        "| EM (MindFormers EmF1Metric) | %.4f | %.4f | %s |" % (squad["em"], thr["em"],
                                                              "ok" if squad["em"] >= thr["em"] else "BELOW"),
    ] + (["| F1 / EM (official SQuAD v1.1) | %.4f / %.4f | | |" % (squad["official"]["f1"], squad["official"]["em"])]
         if squad.get("official") else []) + ["", "%d evaluation records (first question and answer of each "
                                                   "paragraph, the contest's prompt)." % squad["records"]])
    inference = ctx["inference"]
    files = ["| file | bytes | sha256 |", "|---|---:|---|"]
    files += ["| `%s` | %d | `%s…` |" % (f["path"], f["bytes"], f["sha256"][:16]) for f in ctx["files_so_far"]]
    files.append("| `REPORT.md`, `manifest.json` | | (this report; the manifest lists every file above) |")
    ckpt = m["base_model"]["checkpoint"]
    base_ckpt = ("none: trained from random initialisation (profile %s)" % m["profile"] if ckpt is None else
                 "`%s`, %d bytes, sha256 `%s`" % (ckpt["name"], ckpt["bytes"], ckpt["sha256"] or "not hashed"))
    values = {
        "team": m["team"], "kit_version": m["kit"]["version"], "kit_commit": m["kit"]["commit"] or "unknown",
        "created": m["created"], "score_policy": pol, "accuracy_pct": "%.2f" % (100 * score["accuracy"]),
        "correct": math["policies"][pol]["correct"], "math_total": math["total"],
        "score_ratio": "%.9g" % score["ratio"], "score": "%.6f" % score["value"],
        "squad_f1": "%.4f" % squad["f1"], "squad_em": "%.4f" % squad["em"], "squad_f1_thr": "%.4f" % thr["f1"],
        "squad_em_thr": "%.4f" % thr["em"], "squad_gate": "passed" if squad["passed"] else "NOT passed",
        "base_model": m["base_model"]["name"], "profile": m["profile"], "lora_rank": lora["rank"],
        "lora_alpha": lora["alpha"], "lora_scaling": "%g" % (float(lora["alpha"]) / lora["rank"]),
        "lora_dropout": lora["dropout"], "target_modules": lora["target_modules"],
        "lora_matrices": sum(len(c) for c in ctx["matrix_groups"].values()),
        "data_recipe": m["data"].get("recipe") or "unknown", "data_template": m["data"].get("template") or "unknown",
        "notes": notes or "_No further notes were given (`--notes FILE`)._",
        "hyper_table": ctx["hyper_table"], "adapter_bytes": ctx["adapter_fp"]["bytes"],
        "adapter_sha256": ctx["adapter_fp"]["sha256"], "base_checkpoint": base_ckpt,
        "weights_link": ctx["weights_url"] or "the adapter is inside this submission (no external link given)",
        "env_table": "\n".join(env_rows), "patch_list": patch_list, "squad_section": squad_section,
        "inference_section": inference, "family_table": "\n".join(fam_rows),
        "gold_desc": "`eval/math_gold.jsonl` (%s, %d records, sha256 `%s`)" % (
            math["gold"]["name"], math["total"], math["gold"]["sha256"]),
        "ratio_table": "\n".join(ratio_rows), "trainable": params["trainable"], "total": params["total"],
        "contest_denominator": "%.6g" % params["contest_denominator"],
        "ratio_contest": "%.9g" % params["ratio_contest"], "ratio_exact": "%.9g" % params["ratio_exact"],
        "file_table": "\n".join(files),
    }
    try:
        return Template(TEMPLATE.read_text(encoding="utf-8")).substitute(values)
    except (KeyError, ValueError) as exc:
        raise KitError("%s: placeholder %s has no value" % (TEMPLATE, exc)) from None


def eval_config_from_record(rec, run):
    """The config predict.py ran with, rebuilt by predict.resolve_config from its run record (no eval yaml saved)."""
    import predict

    ns = argparse.Namespace(config=rec.get("config") or "tiny", set=list(rec.get("overrides") or []),
                            max_new_tokens=rec.get("max_new_tokens"), token_report=None,
                            min_new_tokens=rec.get("min_new_tokens"), batch_size=int(rec.get("batch_size") or 1),
                            adapter=str(run / "adapter") if rec.get("adapter") else None,
                            no_pet=not rec.get("adapter") and rec.get("no_pet", False))
    cfg, _info = predict.resolve_config(ns)
    return cfg


def inference_text(eval_cfg, run_report, predict_record, data_report):
    from lorakit.config import get_path

    mc = get_path(eval_cfg, "model.model_config") or {}
    lines = ["- decoding: greedy (do_sample %s, top_k %s), max_new_tokens %s, min_new_tokens %s, batch %s" % (
        mc.get("do_sample"), mc.get("top_k"), mc.get("max_new_tokens"), mc.get("min_new_tokens"),
        mc.get("batch_size"))]
    train_t, infer_t = data_report.get("template"), predict_record.get("template")
    if train_t and infer_t:
        lines.append("- prompt template: `%s` in training, `%s` at inference%s; the echoed prompt is removed from "
                     "every completion" % (train_t, infer_t, "" if train_t == infer_t else " (**they differ**)"))
    else:
        lines.append("- prompt template: %s at inference (training: %s); the echoed prompt is removed from every "
                     "completion" % (infer_t or "not recorded", train_t or "not recorded"))
    lines.append("- answer extraction (tools/score_math.py): the final-answer marker line, else the last "
                 "`\\boxed{}`, else the last number of the completion; never a number of the prompt")
    tol = (run_report.get("tolerance") or {}).get("relative")
    lines.append("- scoring policies: exact, prediction-precision (the headline: %s), tolerance (relative %s)" % (
        run_report.get("precision_rule", "gold rounded to the prediction's decimals"), tol))
    return "\n".join(lines)


# ---------------------------------------------------------------- build

def stage(args, run, out_dir):
    import yaml

    from lorakit import ckpt_io
    from lorakit.params import lora_param_table

    # 1. every input, all missing ones at once
    missing = []
    for src, _dst, required in RUN_FILES:
        if required and not (run / src).is_file():
            missing.append(str(run / src))
    eval_cfg_src = next((run / c for c in EVAL_CONFIG_CANDIDATES if (run / c).is_file()), None)
    if eval_cfg_src is None and not args.eval_config and not (run / "eval/predictions.jsonl.run.json").is_file():
        missing.append("%s (or --eval-config FILE, or the predict record eval/predictions.jsonl.run.json)"
                       % " | ".join(str(run / c) for c in EVAL_CONFIG_CANDIDATES))
    elif args.eval_config:
        eval_cfg_src = Path(args.eval_config)
        if not eval_cfg_src.is_file():
            missing.append(str(eval_cfg_src))
    math_rep = squad_rep = {}
    if (run / "eval/math_report.json").is_file():
        math_rep = read_json(run / "eval/math_report.json")
    if (run / "eval/squad_report.json").is_file():
        squad_rep = read_json(run / "eval/squad_report.json")
    gold = Path(args.gold) if args.gold else resolve_input(math_rep.get("gold"), run, "gold")
    if gold is None or not gold.is_file():
        missing.append("math gold test file (%s; pass --gold FILE)" % (args.gold or math_rep.get("gold") or
                                                                      "not named in eval/math_report.json"))
    rec_name = args.squad_records or squad_rep.get("records")
    records = Path(args.squad_records) if args.squad_records else resolve_input(rec_name, run, "squad")
    if records is None or not records.is_file():
        missing.append("SQuAD eval records (%s; pass --squad-records FILE)" % (rec_name or "not named in "
                                                                                "eval/squad_report.json"))
    series, patch_files = patch_series()
    missing += [str(p) for _, p in patch_files if not p.is_file()]
    if not missing:
        check_training_patches(run, patch_files)
    if not TEMPLATE.is_file():
        missing.append(str(TEMPLATE))
    notes = None
    if args.notes:
        if not Path(args.notes).is_file():
            missing.append(args.notes)
        else:
            notes = Path(args.notes).read_text(encoding="utf-8").strip()
    if missing:
        raise KitError("missing inputs, nothing written:\n  " + "\n  ".join(missing))

    # 2. read and cross-check before writing anything
    run_record = read_json(run / "train/run.json")
    if run_record.get("status") not in (None, "finished"):
        raise KitError("%s: status %r: the training run did not finish" % (run / "train/run.json",
                                                                          run_record.get("status")))
    data_report = read_json(run / "data/data_report.json") if (run / "data/data_report.json").is_file() else {}
    rec_path = run / "eval/predictions.jsonl.run.json"
    predict_record = read_json(rec_path) if rec_path.is_file() else {}
    adapter_cfg = ckpt_io.read_adapter_config(run / "adapter/adapter_config.json")
    errors = mf.schema_errors(adapter_cfg, mf.load_schema(mf.SCHEMA_DIR / mf.ADAPTER_SCHEMA_NAME))
    if errors:
        raise KitError("%s: not a valid adapter config: %s" % (run / "adapter/adapter_config.json", "; ".join(errors[:3])))
    with open(str(run / "train/config.yaml"), encoding="utf-8") as fh:
        train_cfg = yaml.safe_load(fh)
    if eval_cfg_src is not None:
        with open(str(eval_cfg_src), encoding="utf-8") as fh:
            eval_cfg = yaml.safe_load(fh)
    else:
        eval_cfg = eval_config_from_record(read_json(run / "eval/predictions.jsonl.run.json"), run)
    mc = train_cfg["model"]["model_config"]
    pet = mc.get("pet_config")
    if not isinstance(pet, dict):
        raise KitError("%s: no model.model_config.pet_config (not a LoRA run)" % (run / "train/config.yaml"))
    av, pv = mf.adapter_view(adapter_cfg), mf.adapter_view(pet)
    diff = [k for k in av if av[k] is not None and av[k] != pv[k]]
    if diff:
        raise KitError("adapter_config.json and train/config.yaml disagree on %s" % ", ".join(diff))
    tensors = mf.read_ckpt_safe(run / "adapter/adapter.ckpt")
    expected = lora_param_table(mc, pet)
    bad = [n for n in expected if n not in tensors or tuple(tensors[n].shape) != tuple(expected[n][0])]
    if bad or set(tensors) - set(expected):
        raise KitError("adapter.ckpt does not match the config's closed form (e.g. %s)"
                       % (bad or sorted(set(tensors) - set(expected)))[0])
    params = mf.count_from_tensors(tensors, mc, pet)
    base_source = packaged_base_source(args, adapter_cfg, params)
    tokenizer_source = packaged_tokenizer_source(predict_record)
    data_tok = (data_report.get("tokenizer") or {}).get("sha256") if isinstance(data_report.get("tokenizer"),
                                                                                dict) else None
    if data_tok and predict_record.get("tokenizer_sha256") and data_tok != predict_record["tokenizer_sha256"]:
        raise KitError("the training data was tokenized with tokenizer sha256 %s... but the predictions were made "
                       "with %s...: train and inference must use the same tokenizer"
                       % (data_tok[:12], predict_record["tokenizer_sha256"][:12]))
    math = math_metrics(gold, run / "eval/predictions.jsonl", math_rep)
    squad = squad_metrics(records, run / "eval/squad_predictions.jsonl", squad_rep, args.squad_thresholds)
    from lorakit.metrics import contest_score

    acc = math["policies"][math["primary_policy"]]["accuracy"]
    ratio = mf.score_ratio(params)
    score = {"value": contest_score(acc, ratio), "accuracy": acc, "ratio": ratio, "policy": math["primary_policy"],
             "formula": "(1 - ratio) * 0.3 + accuracy * 0.7"}

    # 3. stage
    tmp = Path(tempfile.mkdtemp(prefix=".%s.staging-" % args.team, dir=str(out_dir)))
    repl = [(str(gold), "eval/math_gold.jsonl"), (str(records), "eval/squad_records.jsonl"),
            (str(run.resolve()) + os.sep, ""), (str(REPO) + os.sep, ""), (str(REPO), "."),
            (str(Path.home()) + os.sep, "~/")]
    if args.gold:
        repl.append((args.gold, "eval/math_gold.jsonl"))
    if args.squad_records:
        repl.append((args.squad_records, "eval/squad_records.jsonl"))
    for value in (math_rep.get("gold"), rec_name):
        if value:
            repl.append((str(value), "eval/math_gold.jsonl" if value == math_rep.get("gold")
                         else "eval/squad_records.jsonl"))
    copies = [(run / s, d) for s, d, req in RUN_FILES if req or (run / s).is_file()]
    if eval_cfg_src is None:  # resolved again from predict.py's record, with predict.py's own code
        from lorakit.config import dump_config

        eval_cfg_src = Path(tempfile.mkdtemp(prefix=".evalcfg-", dir=str(tmp))) / "eval.yaml"
        dump_config(eval_cfg, eval_cfg_src)
    copies += [(eval_cfg_src, "config/eval.yaml"), (gold, "eval/math_gold.jsonl"),
               (records, "eval/squad_records.jsonl")]
    if tokenizer_source is not None:
        copies.append((tokenizer_source, TOKENIZER_IN_SUBMISSION))
    if patch_files:
        copies.append((PATCHES_DIR / "series", "patches/series"))
        copies += [(p, "patches/" + n) for n, p in patch_files]
    for log in find_logs(run):
        copies.append((log, "logs/" + log.relative_to(run).as_posix().replace("/logs/", "/").replace("/log/", "/")))
    if base_source is not None:
        mf.extract_base(base_source, tmp / BASE_IN_SUBMISSION)
    for src, dst in copies:
        target = tmp / dst
        target.parent.mkdir(parents=True, exist_ok=True)
        if dst.endswith(".json"):
            write_json(target, mf.scrub_json(read_json(src), repl))
        elif dst.endswith((".yaml", ".yml")):  # rewritten as data, so the YAML stays valid
            with open(str(src), encoding="utf-8") as fh:
                data = yaml.safe_load(fh)
            with open(str(target), "w", encoding="utf-8") as fh:
                yaml.safe_dump(mf.scrub_json(data, repl), fh, sort_keys=False, allow_unicode=True,
                               default_flow_style=False)
        elif mf.is_text_name(dst):
            text = Path(src).read_bytes().decode("utf-8", "replace")
            with open(str(target), "w", encoding="utf-8", newline="") as fh:  # write_text(newline=) is 3.10+
                fh.write(mf.scrub_text(text, repl))
        else:
            shutil.copyfile(str(src), str(target))
    for d in tmp.glob(".evalcfg-*"):
        shutil.rmtree(str(d), ignore_errors=True)
    files_so_far = mf.file_entries(tmp)
    leftovers = mf.scan_absolute_paths(tmp, [f["path"] for f in files_so_far])
    ckpt_fp = adapter_cfg.get("base_model", {}).get("checkpoint") if isinstance(adapter_cfg.get("base_model"),
                                                                                dict) else None
    base_ckpt = None
    if isinstance(ckpt_fp, dict) and (ckpt_fp.get("sha256") or ckpt_fp.get("bytes")):
        base_ckpt = {"name": Path(str(ckpt_fp.get("path") or ckpt_fp.get("name") or "base.ckpt")).name,
                     "bytes": int(ckpt_fp.get("bytes") or 0), "sha256": ckpt_fp.get("sha256")}
        if ckpt_fp.get("note"):
            base_ckpt["note"] = str(ckpt_fp["note"])
    groups = {}
    for name in expected:
        if name.endswith("_a"):
            cell = name.rsplit(".", 1)[0]
            shape_a, shape_b = expected[name][0], expected[cell + ".mindpet_delta_lora_b"][0]
            groups.setdefault((int(shape_a[1]), int(shape_b[0])), []).append(cell)
    manifest = {
        "schema_version": mf.SCHEMA_VERSION,
        "team": args.team,
        "created": datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0).isoformat().replace(
            "+00:00", "Z"),
        "kit": kit_info(),
        "profile": run_profile(run_record, args.profile),
        "base_model": {"name": str((adapter_cfg.get("base_model") or {}).get("name") or
                                   train_cfg.get("trainer", {}).get("model_name") or "llama3"),
                       "checkpoint": base_ckpt,
                       "packaged": BASE_IN_SUBMISSION if base_source is not None else None},
        "model": {k: int(mc[k]) for k in ("hidden_size", "num_layers", "num_heads", "n_kv_heads",
                                          "intermediate_size", "vocab_size") if mc.get(k) is not None},
        "lora": {"pet_type": "lora", "rank": int(pet["lora_rank"]), "alpha": pet["lora_alpha"],
                 "dropout": pet.get("lora_dropout", 0.0), "target_modules": pet["target_modules"]},
        "params": {k: v for k, v in params.items() if k != "source"},
        "data": data_section(run_record, data_report),
        "metrics": {"math": math, "squad": squad, "score": score},
        "environment": environment(run_record),
        "patches": {"series": series, "files": [f for f in files_so_far if f["path"].startswith("patches/")
                                                and f["path"] != "patches/series"]},
        "files": [],
    }
    ctx = {"manifest": manifest, "matrix_groups": groups, "hyper_table": hyper_table(train_cfg),
           "inference": inference_text(eval_cfg, math_rep, predict_record, data_report), "files_so_far": files_so_far,
           "adapter_fp": next(f for f in files_so_far if f["path"] == "adapter/adapter.ckpt"),
           "weights_url": args.weights_url}
    report = fill_report(ctx, notes)
    for s in mf.find_absolute_paths(report):
        leftovers.append("REPORT.md: %s" % s)
    if leftovers:
        shutil.rmtree(str(tmp), ignore_errors=True)
        raise KitError("absolute paths would remain in the submission (nothing written): %s" % "; ".join(leftovers[:8]))
    (tmp / "REPORT.md").write_text(report, encoding="utf-8")
    manifest["files"] = mf.file_entries(tmp)
    errors = mf.schema_errors(manifest)
    if errors:
        shutil.rmtree(str(tmp), ignore_errors=True)
        raise KitError("the manifest would not validate: %s" % "; ".join(errors[:5]))
    write_json(tmp / mf.MANIFEST_NAME, manifest)
    return tmp, manifest


def packaged_tokenizer_source(predict_record):
    """The kit-built tiny tokenizer the predictions were made with (packaged so --rerun can use the very same
    file); None for a real tokenizer file (public, the judge has it). Refuses when the kit's tiny tokenizer has
    changed since predict.py ran: the predictions would not be reproducible."""
    if predict_record.get("tokenizer") != "tiny":
        return None
    from lorakit.tokenizer import tiny_tokenizer_path

    path = tiny_tokenizer_path()
    want = predict_record.get("tokenizer_sha256")
    if want and sha256_file(path) != want:
        raise KitError("the kit's tiny tokenizer changed since the predictions were made (sha256 %s... in "
                       "eval/predictions.jsonl.run.json, %s... now): re-run make eval" % (want[:12],
                                                                                       sha256_file(path)[:12]))
    return path


def packaged_base_source(args, adapter_cfg, params):
    """The training checkpoint to cut the frozen base weights from, when the run started from random weights
    (tiny profile): without them the adapter cannot be re-run. None when the base is a public checkpoint."""
    base = adapter_cfg.get("base_model") if isinstance(adapter_cfg.get("base_model"), dict) else {}
    if base.get("checkpoint") or args.no_base:
        return None
    if params["total"] > MAX_PACKAGED_BASE_PARAMS:
        raise KitError("the run started from random weights and its base has %d parameters: too big to package "
                       "(pass --no-base to leave it out)" % params["total"])
    src = adapter_cfg.get("source_checkpoint") if isinstance(adapter_cfg.get("source_checkpoint"), dict) else {}
    path = Path(str(src.get("path") or ""))
    if not src.get("path") or not path.is_file():
        raise KitError("missing inputs, nothing written:\n  %s (the training checkpoint adapter_config.json names as "
                       "source_checkpoint; its frozen random-init base goes into the submission, or pass --no-base)"
                       % (src.get("path") or "source_checkpoint"))
    if src.get("sha256") and sha256_file(path) != src["sha256"]:
        raise KitError("%s changed since the adapter was extracted from it (sha256 differs from adapter_config.json)"
                       % path)
    return path


def run_profile(run_record, default):
    """The profile name a run was trained with (run.json `config`), else `default`."""
    name = str(run_record.get("profile") or run_record.get("config") or "")
    if name and "/" not in name and "\\" not in name and not name.endswith((".yaml", ".yml")):
        return name
    if name.endswith((".yaml", ".yml")):
        return Path(name).stem
    return default


def data_section(run_record, data_report):
    data = run_record.get("data") if isinstance(run_record.get("data"), dict) else {}
    files = []
    raw_files = data.get("files") or run_record.get("data_files") or []
    if isinstance(raw_files, dict):
        raw_files = [dict(v, path=k) if isinstance(v, dict) else {"path": k, "sha256": v}
                     for k, v in raw_files.items()]
    for f in raw_files if isinstance(raw_files, list) else []:
        if not isinstance(f, dict):
            continue
        name = Path(str(f.get("path") or f.get("name") or "data")).name
        entry = {"name": name, "bytes": int(f.get("bytes") or 0),
                 "sha256": f.get("sha256") if isinstance(f.get("sha256"), str) and len(f["sha256"]) == 64 else None}
        if f.get("note"):
            entry["note"] = str(f["note"])
        files.append(entry)
    def pick(key):
        for src in (data, run_record, data_report, data_report.get("args") or {}, data_report.get("config") or {}):
            if isinstance(src, dict) and isinstance(src.get(key), str):
                return src[key]
        return None

    return {"recipe": pick("recipe"), "template": pick("template"), "files": files}


def publish(tmp, final, zip_path, team, make_zip):
    """Rename the staged folder onto `final` (replacing an old one), then write the zip beside it."""
    old = None
    if final.exists():
        old = final.parent / (".%s.old-%d" % (team, os.getpid()))
        os.rename(str(final), str(old))
    try:
        os.rename(str(tmp), str(final))
    except OSError:
        if old is not None:
            os.rename(str(old), str(final))
        raise
    if old is not None:
        shutil.rmtree(str(old), ignore_errors=True)
    os.chmod(str(final), 0o755)
    if make_zip:
        mf.build_zip(final, zip_path, team)
        os.chmod(str(zip_path), 0o644)
    elif zip_path.exists():
        zip_path.unlink()  # a stale zip must not outlive its folder


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--team", required=True, help="team name: letters, digits, _ . - (folder and zip name)")
    ap.add_argument("--run", default=None, help="run folder (default: runs/<profile>)")
    ap.add_argument("--profile", default="tiny", help="profile of the run when run.json does not say (default tiny)")
    ap.add_argument("--out-dir", default=str(REPO / "submission"), help="where <team>/ and <team>.zip go")
    ap.add_argument("--gold", help="math gold test file (default: the one named in eval/math_report.json)")
    ap.add_argument("--squad-records", help="SQuAD eval records (default: the file named in eval/squad_report.json)")
    ap.add_argument("--squad-thresholds", nargs=2, type=float, metavar=("F1", "EM"),
                    help="SQuAD gate (default: the gate recorded by `squad.py gate --write`, else 53.8832 39.7533)")
    ap.add_argument("--eval-config", help="resolved eval yaml (default: RUN/eval/config.yaml)")
    ap.add_argument("--weights-url", help="link to the weights for REPORT.md")
    ap.add_argument("--notes", help="Markdown file with the algorithm description for REPORT.md")
    ap.add_argument("--no-zip", action="store_true", help="do not write <team>.zip")
    ap.add_argument("--no-base", action="store_true",
                    help="do not package the frozen base of a run trained from random weights (then --rerun "
                         "needs --base-checkpoint)")
    ap.add_argument("--no-verify", action="store_true", help="skip running tools/verify.py on the staged folder")
    args = ap.parse_args(argv)
    import re

    if not re.match(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$", args.team):
        raise KitError("--team %r: use letters, digits, _ . - (at most 64, not starting with . or -)" % args.team)
    run = Path(args.run) if args.run else RUNS / args.profile
    if not run.is_dir():
        raise KitError("run folder %s does not exist (make train / make eval first, or RUN=...)" % run)
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    final = out_dir / args.team
    zip_path = out_dir / (args.team + ".zip")
    tmp, manifest = stage(args, run.resolve(), out_dir)
    try:
        if not args.no_verify:
            # the team's own gate: a judge applies the contest's thresholds (or theirs) when verifying
            thr = manifest["metrics"]["squad"]["thresholds"]
            cmd = [sys.executable, str(TOOLS / "verify.py"), str(tmp), "--json", "--squad-thresholds",
                   repr(float(thr["f1"])), repr(float(thr["em"])), "--policy", manifest["metrics"]["score"]["policy"]]
            proc = subprocess.run(cmd, capture_output=True, text=True)
            try:
                res = json.loads(proc.stdout)
            except ValueError:
                raise KitError("verify.py failed on the staged submission: %s" % (proc.stderr.strip()[-500:])) from None
            if not res.get("verified"):
                fails = ["%s: %s" % (c["check"], c["detail"]) for c in res["checks"] if c["status"] == "FAIL"]
                raise KitError("the staged submission does not verify (nothing published): %s" % " | ".join(fails))
        publish(tmp, final, zip_path, args.team, not args.no_zip)
    finally:
        if tmp.exists():
            shutil.rmtree(str(tmp), ignore_errors=True)
    sc = manifest["metrics"]["score"]
    print("submission %s: %d files, score %.6f (accuracy %.4f %s, ratio %.9g)%s%s" % (
        final, len(manifest["files"]) + 1, sc["value"], sc["accuracy"], sc["policy"], sc["ratio"],
        "" if args.no_zip else ", zip %s (%d bytes)" % (zip_path, zip_path.stat().st_size),
        "" if args.no_verify else ", verified"))
    return 0


if __name__ == "__main__":
    run_main(main)
