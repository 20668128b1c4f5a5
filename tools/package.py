#!/usr/bin/env python3
"""Build submission/<team>/ (and submission/<team>.zip) from a finished run folder.

Collects the adapter (weights + adapter_config.json), the resolved training and eval yaml, the ratio report,
the math and SQuAD reports with their raw predictions and gold files, the loss and accuracy PNGs, the logs and
the MindFormers patches; writes a filled REPORT.md (the contest's report template) and manifest.json (files
with bytes and sha256; see submission/schema/manifest.schema.json); then zips it.

Four phases, nothing published before the last check:
  collect     every input the layout (lorakit.layout) names, all missing ones listed at once, records read and
              cross-checked (finished run, adapter config = train config, patches = the training run's, one
              tokenizer for training data and predictions)
  recompute   the numbers from the raw predictions and the weights (lorakit.recompute: the code verify checks
              them with), which must agree with the run's own reports
  stage       the files copied into a temporary folder inside the output folder, absolute paths rewritten (kit
              paths become relative, outside files keep their base name); one that would remain is refused
  manifest    manifest.json and REPORT.md; the staged folder is verified (lorakit.checks, verify's checks) and
              only then renamed into place (an existing submission/<team>/ is replaced in one rename)

  package.py --team demo --run runs/tiny
  package.py --team acme --run runs/llama3-8b --weights-url https://example.org/acme-adapter.zip --notes notes.md
"""

import argparse
import datetime
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from string import Template

from lorakit import __version__ as KIT_VERSION
from lorakit import checks, contest, recompute
from lorakit import manifest as mf
from lorakit.io import KitError, iter_jsonl, read_json, run_main, sha256_file, write_json
from lorakit.layout import EVAL_CONFIG_CANDIDATES, LOG_DIRS, LOG_GLOBS, RUN, packaged_files
from lorakit.layout import SUBMISSION as S
from lorakit.patches import fingerprints, kit_series
from lorakit.paths import REPO, RUNS
from lorakit.records import DataReport, LoraSpec, PredictRecord, RunRecord, tokenizer_mismatch
from lorakit.runrecord import dist_version

TEMPLATE = REPO / "submission" / "REPORT.template.md"
MAX_LOG_BYTES = 64 << 20
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


def environment(run_record):
    """This machine's library versions, plus the ones the training run recorded."""
    env = {"python": platform.python_version(), "mindspore": dist_version("mindspore"),
           "mindformers": dist_version("mindformers"), "numpy": dist_version("numpy"),
           "platform": "%s %s" % (platform.system(), platform.machine())}
    for key in ("mindpet", "tiktoken", "jieba"):
        v = dist_version(key)
        if v:
            env[key] = v
    trained = run_record.versions
    if trained is not None:
        env["training"] = {str(k): (v if isinstance(v, (str, type(None))) else json.dumps(v))
                           for k, v in trained.items()}
    return env


def find_logs(run):
    """The run's log files (layout.LOG_DIRS, LOG_GLOBS) small enough to package."""
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


# ---------------------------------------------------------------- 1. collect

class Inputs:
    """What the collect phase found: paths, records and configs of one run."""


def collect(args, run):
    """Every input of a run, all missing ones at once; the records read and cross-checked -> Inputs."""
    import yaml

    from lorakit import ckpt_io

    inp = Inputs()
    inp.run = run
    missing = [str(run / src) for src, _dst, required in packaged_files() if required and not (run / src).is_file()]
    inp.eval_cfg_src = next((run / c for c in EVAL_CONFIG_CANDIDATES if (run / c).is_file()), None)
    if inp.eval_cfg_src is None and not args.eval_config and not (run / RUN.predict_record).is_file():
        missing.append("%s (or --eval-config FILE, or the predict record %s)"
                       % (" | ".join(str(run / c) for c in EVAL_CONFIG_CANDIDATES), RUN.predict_record))
    elif args.eval_config:
        inp.eval_cfg_src = Path(args.eval_config)
        if not inp.eval_cfg_src.is_file():
            missing.append(str(inp.eval_cfg_src))
    inp.math_rep = read_json(run / RUN.math_report) if (run / RUN.math_report).is_file() else {}
    inp.squad_rep = read_json(run / RUN.squad_report) if (run / RUN.squad_report).is_file() else {}
    inp.gold = Path(args.gold) if args.gold else resolve_input(inp.math_rep.get("gold"), run, "gold")
    if inp.gold is None or not inp.gold.is_file():
        missing.append("math gold test file (%s; pass --gold FILE)" % (args.gold or inp.math_rep.get("gold") or
                                                                      "not named in %s" % RUN.math_report))
    inp.records_name = args.squad_records or inp.squad_rep.get("records")
    inp.records = Path(args.squad_records) if args.squad_records else resolve_input(inp.records_name, run, "squad")
    if inp.records is None or not inp.records.is_file():
        missing.append("SQuAD eval records (%s; pass --squad-records FILE)" % (inp.records_name or "not named in "
                                                                                "%s" % RUN.squad_report))
    inp.series_file, inp.patch_files = kit_series()
    missing += [str(p) for _, p in inp.patch_files if not p.is_file()]
    if not missing:
        check_training_patches(run, inp.patch_files)
    if not TEMPLATE.is_file():
        missing.append(str(TEMPLATE))
    inp.notes = None
    if args.notes:
        if not Path(args.notes).is_file():
            missing.append(args.notes)
        else:
            inp.notes = Path(args.notes).read_text(encoding="utf-8").strip()
    if missing:
        raise KitError("missing inputs, nothing written:\n  " + "\n  ".join(missing))

    inp.run_record = RunRecord.read(run / RUN.run_record)
    if not inp.run_record.finished:
        raise KitError("%s: status %r: the training run did not finish" % (run / RUN.run_record,
                                                                          inp.run_record.status))
    inp.data_report = DataReport.read(run / RUN.data_report) if (run / RUN.data_report).is_file() else DataReport()
    inp.predict_record = (PredictRecord.read(run / RUN.predict_record) if (run / RUN.predict_record).is_file()
                          else PredictRecord())
    inp.adapter_cfg = ckpt_io.read_adapter_config(run / RUN.adapter_config)
    errors = mf.schema_errors(inp.adapter_cfg, mf.load_schema(mf.SCHEMA_DIR / mf.ADAPTER_SCHEMA_NAME))
    if errors:
        raise KitError("%s: not a valid adapter config: %s" % (run / RUN.adapter_config, "; ".join(errors[:3])))
    with open(str(run / RUN.train_config), encoding="utf-8") as fh:
        inp.train_cfg = yaml.safe_load(fh)
    if inp.eval_cfg_src is not None:
        with open(str(inp.eval_cfg_src), encoding="utf-8") as fh:
            inp.eval_cfg = yaml.safe_load(fh)
    else:
        inp.eval_cfg = eval_config_from_record(inp.predict_record, run)
    inp.mc = inp.train_cfg["model"]["model_config"]
    inp.pet = inp.mc.get("pet_config")
    if not isinstance(inp.pet, dict):
        raise KitError("%s: no model.model_config.pet_config (not a LoRA run)" % (run / RUN.train_config))
    av, pv = LoraSpec.from_pet_config(inp.adapter_cfg).view(), LoraSpec.from_pet_config(inp.pet).view()
    diff = [k for k in av if av[k] is not None and av[k] != pv[k]]
    if diff:
        raise KitError("%s and %s disagree on %s" % (Path(RUN.adapter_config).name, RUN.train_config,
                                                     ", ".join(diff)))
    inp.tokenizer_source = packaged_tokenizer_source(inp.predict_record)
    why = tokenizer_mismatch(inp.data_report, inp.predict_record)
    if why:
        raise KitError(why)
    return inp


def check_training_patches(run, patch_files):
    """The patches packaged must be the ones the training run applied (run.json records name + sha256)."""
    trained = RunRecord.read(run / RUN.run_record).trained_patches if (run / RUN.run_record).is_file() else None
    if not trained:
        return
    now = fingerprints(patch_files)
    was = [{"name": n, "sha256": h} for n, h in trained]
    if now != was:
        raise KitError("mindformers_patches/ changed since the training run (run.json lists %s; the kit has %s): "
                       "retrain, or package from a checkout with the run's patches"
                       % ([w["name"] for w in was], [n["name"] for n in now]))


def eval_config_from_record(rec, run):
    """The config predict.py ran with, rebuilt from its run record by the code predict.py resolves it with."""
    from lorakit.inference import resolve_config

    cfg, _info = resolve_config(rec.config or "tiny", rec.overrides, batch_size=int(rec.get("batch_size") or 1),
                                max_new_tokens=rec.get("max_new_tokens"), min_new_tokens=rec.get("min_new_tokens"),
                                adapter=str(run / RUN.adapter_dir) if rec.adapter else None,
                                no_pet=not rec.adapter and rec.no_pet)
    return cfg


def packaged_tokenizer_source(predict_record):
    """The kit-built tiny tokenizer the predictions were made with (packaged so --rerun can use the very same
    file); None for a real tokenizer file (public, the judge has it). Refuses when the kit's tiny tokenizer has
    changed since predict.py ran: the predictions would not be reproducible."""
    if predict_record.tokenizer != "tiny":
        return None
    from lorakit.tokenizer import tiny_tokenizer_path

    path = tiny_tokenizer_path()
    want = predict_record.tokenizer_sha256
    if want and sha256_file(path) != want:
        raise KitError("the kit's tiny tokenizer changed since the predictions were made (sha256 %s... in %s, "
                       "%s... now): re-run make eval" % (want[:12], RUN.predict_record, sha256_file(path)[:12]))
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


# ---------------------------------------------------------------- 2. recompute

def rows_of(path):
    rows, lines = [], []
    for lineno, obj in iter_jsonl(path):
        rows.append(obj)
        lines.append(lineno)
    return rows, lines


def recompute_numbers(args, inp):
    """params, math, squad and score sections from the weights and the raw predictions (lorakit.recompute); the
    run's own reports must agree. Sets inp.expected, inp.params, inp.math, inp.squad, inp.score."""
    from lorakit.math_metrics import DEFAULT_TOLERANCE, score_predictions
    from lorakit.params import lora_param_table
    from lorakit.squad_metrics import score_squad

    run = inp.run
    tensors = mf.read_ckpt_safe(run / RUN.adapter)
    inp.expected = lora_param_table(inp.mc, inp.pet)
    bad = [n for n in inp.expected if n not in tensors or tuple(tensors[n].shape) != tuple(inp.expected[n][0])]
    if bad or set(tensors) - set(inp.expected):
        raise KitError("adapter.ckpt does not match the config's closed form (e.g. %s)"
                       % (bad or sorted(set(tensors) - set(inp.expected)))[0])
    inp.params = mf.count_from_tensors(tensors, inp.mc, inp.pet)
    inp.base_source = packaged_base_source(args, inp.adapter_cfg, inp.params)

    rep = inp.math_rep
    tol = float((rep.get("tolerance") or {}).get("relative", DEFAULT_TOLERANCE))
    gold, gl = rows_of(inp.gold)
    pred, pl = rows_of(run / RUN.predictions)
    math_rep = score_predictions(gold, pred, tolerance=tol, gold_lines=gl, pred_lines=pl, gold_name=str(inp.gold),
                                 pred_name=str(run / RUN.predictions))
    for pol, got in math_rep["policies"].items():
        claimed = (rep.get("policies") or {}).get(pol, {})
        if claimed.get("correct") != got["correct"]:
            raise KitError("%s says %s correct=%s but its predictions score %d against %s: the report is stale, "
                           "re-run make eval" % (RUN.math_report, pol, claimed.get("correct"), got["correct"],
                                                 inp.gold.name))
    inp.math = recompute.math_section(math_rep, inp.gold, tol, rep.get("headline_policy") or contest.HEADLINE_POLICY)

    srep = inp.squad_rep
    squad_rep = score_squad(list(iter_jsonl(inp.records)), list(iter_jsonl(run / RUN.squad_predictions)),
                            str(inp.records), str(run / RUN.squad_predictions))
    f1, em = recompute.emf1(squad_rep)
    claimed = srep.get("emf1") or {}
    for key, value in (("F1", f1), ("Em", em)):
        if claimed.get(key) is not None and abs(float(claimed[key]) - value) > 1e-6:
            raise KitError("%s says %s=%s but its predictions score %.6f: the report is stale, re-run squad.py score"
                           % (RUN.squad_report, key, claimed[key], value))
    gate = srep.get("gate") if isinstance(srep.get("gate"), dict) else {}
    if args.squad_thresholds:
        thr = {"f1": float(args.squad_thresholds[0]), "em": float(args.squad_thresholds[1])}
    elif gate.get("f1_min") is not None and gate.get("em_min") is not None:
        thr = {"f1": float(gate["f1_min"]), "em": float(gate["em_min"])}
    else:
        thr = {"f1": contest.SQUAD_GATE_F1, "em": contest.SQUAD_GATE_EM}
    inp.squad = recompute.squad_section(squad_rep, inp.records, thr, gate.get("basis"))
    inp.score = recompute.score_section(inp.math, inp.params, inp.math["primary_policy"])




# ---------------------------------------------------------------- 3. stage

def stage_files(args, inp, tmp):
    """The submission's files copied into the (empty) staging folder `tmp`, absolute paths rewritten -> the
    absolute paths left."""
    run = inp.run
    gold, records = inp.gold, inp.records
    repl = [(str(gold), S.math_gold), (str(records), S.squad_records),
            (str(run.resolve()) + os.sep, ""), (str(REPO) + os.sep, ""), (str(REPO), "."),
            (str(Path.home()) + os.sep, "~/")]
    if args.gold:
        repl.append((args.gold, S.math_gold))
    if args.squad_records:
        repl.append((args.squad_records, S.squad_records))
    for value in (inp.math_rep.get("gold"), inp.records_name):
        if value:
            repl.append((str(value), S.math_gold if value == inp.math_rep.get("gold") else S.squad_records))
    copies = [(run / s, d) for s, d, req in packaged_files() if req or (run / s).is_file()]
    eval_cfg_src = inp.eval_cfg_src
    if eval_cfg_src is None:  # resolved again from predict.py's record, with predict.py's own code
        from lorakit.config import dump_config

        eval_cfg_src = Path(tempfile.mkdtemp(prefix=".evalcfg-", dir=str(tmp))) / "eval.yaml"
        dump_config(inp.eval_cfg, eval_cfg_src)
    copies += [(eval_cfg_src, S.eval_config), (gold, S.math_gold), (records, S.squad_records)]
    if inp.tokenizer_source is not None:
        copies.append((inp.tokenizer_source, S.tokenizer))
    if inp.patch_files:
        copies.append((inp.series_file, S.series))
        copies += [(p, S.patches_dir + "/" + n) for n, p in inp.patch_files]
    for log in find_logs(run):
        copies.append((log, S.logs_dir + "/" + log.relative_to(run).as_posix().replace("/logs/", "/")
                       .replace("/log/", "/")))
    if inp.base_source is not None:
        mf.extract_base(inp.base_source, tmp / S.base_ckpt)
    for src, dst in copies:
        copy_scrubbed(src, tmp / dst, repl)
    for d in tmp.glob(".evalcfg-*"):
        shutil.rmtree(str(d), ignore_errors=True)
    return mf.scan_absolute_paths(tmp, [f["path"] for f in mf.file_entries(tmp)])


def copy_scrubbed(src, target, repl):
    """Copy src to target; JSON, YAML and text files with the absolute paths of `repl` rewritten."""
    import yaml

    target.parent.mkdir(parents=True, exist_ok=True)
    dst = target.name
    if dst.endswith(".json"):
        write_json(target, mf.scrub_json(read_json(src), repl))
    elif dst.endswith((".yaml", ".yml")):  # rewritten as data, so the YAML stays valid
        with open(str(src), encoding="utf-8") as fh:
            data = yaml.safe_load(fh)
        with open(str(target), "w", encoding="utf-8") as fh:
            yaml.safe_dump(mf.scrub_json(data, repl), fh, sort_keys=False, allow_unicode=True,
                           default_flow_style=False)
    elif mf.is_text_name(str(target)):
        text = Path(src).read_bytes().decode("utf-8", "replace")
        with open(str(target), "w", encoding="utf-8", newline="") as fh:  # write_text(newline=) is 3.10+
            fh.write(mf.scrub_text(text, repl))
    else:
        shutil.copyfile(str(src), str(target))




# ---------------------------------------------------------------- 4. manifest

def write_manifest(args, inp, tmp, leftovers):
    """manifest.json and REPORT.md into the staged folder (refused when absolute paths would remain) -> manifest."""
    files_so_far = mf.file_entries(tmp)
    adapter_cfg = inp.adapter_cfg
    ckpt_fp = adapter_cfg.get("base_model", {}).get("checkpoint") if isinstance(adapter_cfg.get("base_model"),
                                                                                dict) else None
    base_ckpt = None
    if isinstance(ckpt_fp, dict) and (ckpt_fp.get("sha256") or ckpt_fp.get("bytes")):
        base_ckpt = {"name": Path(str(ckpt_fp.get("path") or ckpt_fp.get("name") or "base.ckpt")).name,
                     "bytes": int(ckpt_fp.get("bytes") or 0), "sha256": ckpt_fp.get("sha256")}
        if ckpt_fp.get("note"):
            base_ckpt["note"] = str(ckpt_fp["note"])
    groups = {}
    for name in inp.expected:
        if name.endswith("_a"):
            cell = name.rsplit(".", 1)[0]
            shape_a, shape_b = inp.expected[name][0], inp.expected[cell + ".mindpet_delta_lora_b"][0]
            groups.setdefault((int(shape_a[1]), int(shape_b[0])), []).append(cell)
    mc = inp.mc
    manifest = {
        "schema_version": mf.SCHEMA_VERSION,
        "team": args.team,
        "created": datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0).isoformat().replace(
            "+00:00", "Z"),
        "kit": kit_info(),
        "profile": run_profile(inp.run_record, args.profile),
        "base_model": {"name": str((adapter_cfg.get("base_model") or {}).get("name") or
                                   inp.train_cfg.get("trainer", {}).get("model_name") or "llama3"),
                       "checkpoint": base_ckpt,
                       "packaged": S.base_ckpt if inp.base_source is not None else None},
        "model": {k: int(mc[k]) for k in ("hidden_size", "num_layers", "num_heads", "n_kv_heads",
                                          "intermediate_size", "vocab_size") if mc.get(k) is not None},
        "lora": LoraSpec.from_pet_config(inp.pet).to_manifest(),
        "params": {k: v for k, v in inp.params.items() if k != "source"},
        "data": data_section(inp.run_record, inp.data_report),
        "metrics": {"math": inp.math, "squad": inp.squad, "score": inp.score},
        "environment": environment(inp.run_record),
        "patches": {"series": [n for n, _ in inp.patch_files],
                    "files": [f for f in files_so_far if f["path"].startswith(S.patches_dir + "/")
                              and f["path"] != S.series]},
        "files": [],
    }
    ctx = {"manifest": manifest, "matrix_groups": groups, "hyper_table": hyper_table(inp.train_cfg),
           "inference": inference_text(inp.eval_cfg, inp.math_rep, inp.predict_record, inp.data_report),
           "files_so_far": files_so_far, "adapter_fp": next(f for f in files_so_far if f["path"] == S.adapter),
           "weights_url": args.weights_url}
    report = fill_report(ctx, inp.notes)
    leftovers = list(leftovers) + ["%s: %s" % (S.report, s) for s in mf.find_absolute_paths(report)]
    if leftovers:
        raise KitError("absolute paths would remain in the submission (nothing written): %s" % "; ".join(leftovers[:8]))
    (tmp / S.report).write_text(report, encoding="utf-8")
    manifest["files"] = mf.file_entries(tmp)
    errors = mf.schema_errors(manifest)
    if errors:
        raise KitError("the manifest would not validate: %s" % "; ".join(errors[:5]))
    write_json(tmp / S.manifest, manifest)
    return manifest


def self_verify(tmp, manifest):
    """verify's checks on the staged folder with the team's own gate and policy (a judge applies the contest's
    thresholds, or theirs, when verifying); a failure publishes nothing."""
    thr = manifest["metrics"]["squad"]["thresholds"]
    options = checks.Options(squad_thresholds=(float(thr["f1"]), float(thr["em"])),
                             policy=manifest["metrics"]["score"]["policy"])
    results = checks.verify_submission(tmp, options)
    fails = ["%s: %s" % (r.name, r.detail) for r in results if r.status == "FAIL"]
    if fails:
        raise KitError("the staged submission does not verify (nothing published): %s" % " | ".join(fails))


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
    patch_list = "\n".join("- `%s/%s`" % (S.patches_dir, p) for p in patches) or "- none"
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
        "score_ratio": contest.ratio_text(score["ratio"]), "score": "%.6f" % score["value"],
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
        "gold_desc": "`%s` (%s, %d records, sha256 `%s`)" % (
            S.math_gold, math["gold"]["name"], math["total"], math["gold"]["sha256"]),
        "ratio_table": "\n".join(ratio_rows), "trainable": params["trainable"], "total": params["total"],
        "contest_denominator": contest.CONTEST_DENOMINATOR_TEXT,
        "ratio_contest": contest.ratio_text(params["ratio_contest"]), "ratio_exact": contest.ratio_text(params["ratio_exact"]),
        "file_table": "\n".join(files),
    }
    try:
        return Template(TEMPLATE.read_text(encoding="utf-8")).substitute(values)
    except (KeyError, ValueError) as exc:
        raise KitError("%s: placeholder %s has no value" % (TEMPLATE, exc)) from None


def inference_text(eval_cfg, run_report, predict_record, data_report):
    from lorakit.config import get_path

    mc = get_path(eval_cfg, "model.model_config") or {}
    lines = ["- decoding: greedy (do_sample %s, top_k %s), max_new_tokens %s, min_new_tokens %s, batch %s" % (
        mc.get("do_sample"), mc.get("top_k"), mc.get("max_new_tokens"), mc.get("min_new_tokens"),
        mc.get("batch_size"))]
    train_t, infer_t = data_report.template, predict_record.template
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


def run_profile(run_record, default):
    """The profile name a run was trained with (run.json `config`), else `default`."""
    name = run_record.profile
    if name and "/" not in name and "\\" not in name and not name.endswith((".yaml", ".yml")):
        return name
    if name.endswith((".yaml", ".yml")):
        return Path(name).stem
    return default


def data_section(run_record, data_report):
    """The manifest's `data`: recipe and template (the run record's, else the data report's) and the training
    data files the run recorded."""
    files = []
    for f in run_record.data_files:
        name = Path(str(f.get("path") or f.get("name") or "data")).name
        entry = {"name": name, "bytes": int(f.get("bytes") or 0),
                 "sha256": f.get("sha256") if isinstance(f.get("sha256"), str) and len(f["sha256"]) == 64 else None}
        if f.get("note"):
            entry["note"] = str(f["note"])
        files.append(entry)

    def pick(key):
        rep = data_report.data
        for src in (run_record.data_section, run_record.data, rep, rep.get("args") or {}, rep.get("config") or {}):
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
    ap.add_argument("--no-verify", action="store_true", help="skip verifying the staged folder (verify.py's checks, lorakit.checks)")
    args = ap.parse_args(argv)
    if not re.match(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$", args.team):
        raise KitError("--team %r: use letters, digits, _ . - (at most 64, not starting with . or -)" % args.team)
    run = Path(args.run) if args.run else RUNS / args.profile
    if not run.is_dir():
        raise KitError("run folder %s does not exist (make train / make eval first, or RUN=...)" % run)
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    final = out_dir / args.team
    zip_path = out_dir / (args.team + ".zip")
    inp = collect(args, run.resolve())
    recompute_numbers(args, inp)
    tmp = Path(tempfile.mkdtemp(prefix=".%s.staging-" % args.team, dir=str(out_dir)))
    try:
        leftovers = stage_files(args, inp, tmp)
        manifest = write_manifest(args, inp, tmp, leftovers)
        if not args.no_verify:
            self_verify(tmp, manifest)
        publish(tmp, final, zip_path, args.team, not args.no_zip)
    finally:
        if tmp.exists():
            shutil.rmtree(str(tmp), ignore_errors=True)
    sc = manifest["metrics"]["score"]
    print("submission %s: %d files, score %.6f (accuracy %.4f %s, ratio %s)%s%s" % (
        final, len(manifest["files"]) + 1, sc["value"], sc["accuracy"], sc["policy"], contest.ratio_text(sc["ratio"]),
        "" if args.no_zip else ", zip %s (%d bytes)" % (zip_path, zip_path.stat().st_size),
        "" if args.no_verify else ", verified"))
    return 0


if __name__ == "__main__":
    run_main(main)
