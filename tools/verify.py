#!/usr/bin/env python3
"""Verify a contest submission (folder or zip) by re-deriving every number it claims.

Checks, one line each (PASS / FAIL and why; SKIP when not asked for):
  input      the folder or zip is safe to read: no zip-slip (`../x`), absolute or backslash names, symlinks,
             special files, duplicate members, members or totals over the size limits, too many members
  manifest   manifest.json present and valid JSON;  schema  it validates against manifest.schema.json (2020-12)
  files      every declared file present with its byte count and sha256; nothing missing, nothing undeclared
  paths      no absolute path in any text file
  patches    patches/series and the patch files match the manifest
  config     train and eval yaml pet_config == adapter_config.json == manifest lora; model shapes agree
  adapter    every LoRA tensor of the declared config present, shape = closed form, finite, not all zero;
             no other tensor
  ratio      trainable parameters counted from the weights; ratio recomputed = manifest = eval/params.json
  math       accuracy per policy and family recomputed from raw predictions + gold; every id scored once
  squad      EmF1 (and official SQuAD v1.1) recomputed from raw predictions + records; gate checked
  base       (random-init runs) the packaged frozen base: shapes = closed form, finite
  score      (1 - ratio) * 0.3 + accuracy * 0.7 recomputed
  report     REPORT.md states the manifest's score and ratio
  rerun      (--rerun) inference re-run with the submitted adapter; completions and accuracy compared

Nothing from the submission is executed, imported or unpickled: JSON with json, YAML with yaml.safe_load,
checkpoints through the protobuf reader of lorakit.ckpt_io; every file read has a size cap.
Exit 0 only when every check passes.

  verify.py submission/demo                       # folder (uses the gold copy packaged in eval/)
  verify.py submission/demo.zip --gold test.jsonl --squad-records squad_eval.jsonl --json
"""

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

from lorakit import manifest as mf
from lorakit.io import KitError, iter_jsonl, run_main, sha256_file

# Fixed layout of a submission (written by package.py, read here)
ADAPTER = "adapter/adapter.ckpt"
ADAPTER_CONFIG = "adapter/adapter_config.json"
TRAIN_YAML = "config/train.yaml"
EVAL_YAML = "config/eval.yaml"
PARAMS_JSON = "eval/params.json"
MATH_PRED = "eval/predictions.jsonl"
MATH_REPORT = "eval/math_report.json"
MATH_GOLD = "eval/math_gold.jsonl"
SQUAD_PRED = "eval/squad_predictions.jsonl"
SQUAD_REPORT = "eval/squad_report.json"
SQUAD_RECORDS = "eval/squad_records.jsonl"
REPORT_MD = "REPORT.md"
TOKENIZER_REL = "tokenizer/tiny.tiktoken"
PATCH_DIR = "patches"
REL_TOL = 1e-9
RATIO_TOL = 1e-5  # ratios are printed to 6+ significant digits


class Result:
    __slots__ = ("name", "status", "detail")

    def __init__(self, name, status, detail):
        self.name, self.status, self.detail = name, status, detail

    def line(self):
        return "%-4s %-9s %s" % (self.status, self.name, self.detail)

    def as_dict(self):
        return {"check": self.name, "status": self.status, "detail": self.detail}


class CheckFailed(Exception):
    """Raised inside a check: the message is the FAIL line."""


def close(a, b, tol=REL_TOL):
    try:
        a, b = float(a), float(b)
    except (TypeError, ValueError):
        return False
    return abs(a - b) <= tol * max(1.0, abs(a), abs(b))


def load_yaml(path, limit):
    import yaml

    size = Path(path).stat().st_size
    if size > limit:
        raise CheckFailed("%s: %d bytes, over the %d-byte limit" % (path.name, size, limit))
    try:
        with open(str(path), encoding="utf-8") as fh:
            data = yaml.safe_load(fh)
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise CheckFailed("%s: bad YAML: %s" % (path.name, str(exc).replace("\n", " ").replace(
            str(path), path.name))) from None
    if not isinstance(data, dict):
        raise CheckFailed("%s: top level is not a mapping" % path.name)
    return data


def read_jsonl_rows(path, limit, name):
    if Path(path).stat().st_size > limit:
        raise CheckFailed("%s: over the %d-byte limit" % (name, limit))
    rows, lines, bad = [], [], []
    for lineno, obj in iter_jsonl(path, bad=bad):
        rows.append(obj)
        lines.append(lineno)
    if bad:
        raise CheckFailed("%s:%d: %s" % (name, bad[0].lineno, bad[0].reason))
    return rows, lines


class Verifier:
    def __init__(self, root, args, manifest_source):
        self.root = Path(root)
        self.args = args
        self.limits = mf.Limits(args.max_members, args.max_member_bytes, args.max_total_bytes, args.max_json_bytes)
        self.results = []
        self.manifest = None
        self.source = manifest_source
        self.files_ok = False
        self.cache = {}

    # ---------------------------------------------------------------- plumbing
    def add(self, name, status, detail):
        r = Result(name, status, detail)
        self.results.append(r)
        if not self.args.json:
            print(r.line(), flush=True)
        return r

    def run_check(self, name, fn):
        try:
            detail = fn()
        except CheckFailed as exc:
            return self.add(name, "FAIL", str(exc))
        except KitError as exc:
            return self.add(name, "FAIL", str(exc))
        except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
            return self.add(name, "FAIL", "cannot check: malformed input (%s: %s)" % (type(exc).__name__, exc))
        if isinstance(detail, tuple) and detail and detail[0] == "SKIP":
            return self.add(name, "SKIP", detail[1])
        return self.add(name, "PASS", detail)

    def path(self, rel):
        p = self.root / rel
        if not p.is_file() or p.is_symlink():
            raise CheckFailed("%s: missing" % rel)
        return p

    def json_file(self, rel):
        if rel not in self.cache:
            try:
                self.cache[rel] = mf.read_json_limited(self.path(rel), self.limits.max_json_bytes)
            except KitError as exc:
                raise CheckFailed(str(exc).replace(str(self.root) + os.sep, "")) from None
        return self.cache[rel]

    def yaml_file(self, rel):
        if rel not in self.cache:
            self.cache[rel] = load_yaml(self.path(rel), self.limits.max_json_bytes)
        return self.cache[rel]

    def m(self, *keys):
        node = self.manifest
        for k in keys:
            if not isinstance(node, dict) or k not in node:
                raise CheckFailed("manifest lacks %s" % ".".join(keys))
            node = node[k]
        return node

    # ---------------------------------------------------------------- checks
    def check_layout(self):
        files, problems = mf.walk_folder(self.root, self.limits)
        self.all_files = files
        if problems:
            raise CheckFailed("; ".join(problems[:10]) + ("; ..." if len(problems) > 10 else ""))
        if mf.MANIFEST_NAME not in files:
            raise CheckFailed("no %s at the top of the submission" % mf.MANIFEST_NAME)
        return "%d files, none unsafe (%s)" % (len(files), self.source)

    def check_manifest(self):
        obj = mf.read_json_limited(self.root / mf.MANIFEST_NAME, self.limits.max_json_bytes)
        if not isinstance(obj, dict):
            raise CheckFailed("manifest.json is not a JSON object")
        self.manifest = obj
        return "manifest.json read (team %r)" % obj.get("team")

    def check_schema(self):
        errors = mf.schema_errors(self.manifest, mf.load_schema(self.args.schema))
        if errors:
            raise CheckFailed("%d schema error(s): %s" % (len(errors), "; ".join(errors[:5])))
        return "valid against %s (JSON Schema 2020-12)" % mf.SCHEMA_NAME

    def check_files(self):
        declared = self.m("files")
        if not isinstance(declared, list):
            raise CheckFailed("manifest files is not a list")
        problems = []
        seen = {}
        for i, entry in enumerate(declared):
            if not isinstance(entry, dict) or not isinstance(entry.get("path"), str):
                problems.append("files[%d]: not an entry with a path" % i)
                continue
            rel = entry["path"]
            why = mf.relpath_problem(rel)
            if why:
                problems.append("files[%d] %r: %s" % (i, rel, why))
                continue
            if rel in seen:
                problems.append("%s: declared twice" % rel)
                continue
            seen[rel] = entry
        actual = set(self.all_files) - {mf.MANIFEST_NAME}
        for rel in sorted(set(seen) - actual):
            problems.append("%s: declared but missing" % rel)
        for rel in sorted(actual - set(seen)):
            problems.append("%s: undeclared file (not in the manifest)" % rel)
        if mf.MANIFEST_NAME in seen:
            problems.append("manifest.json lists itself")
        checked = 0
        for rel in sorted(set(seen) & actual):
            entry = seen[rel]
            full = self.root / rel
            size = full.stat().st_size
            if size != entry.get("bytes"):
                problems.append("%s: content changed (%d bytes, manifest says %s)" % (rel, size, entry.get("bytes")))
                continue
            digest = sha256_file(full)
            if digest != entry.get("sha256"):
                problems.append("%s: content changed (sha256 %s..., manifest says %s...)"
                                % (rel, digest[:12], str(entry.get("sha256"))[:12]))
                continue
            checked += 1
        if problems:
            raise CheckFailed("; ".join(problems[:10]) + ("; ..." if len(problems) > 10 else ""))
        self.files_ok = True
        return "%d files: sizes and sha256 match, none missing, none undeclared" % checked

    def check_paths(self):
        hits = mf.scan_absolute_paths(self.root, self.all_files, self.limits.max_json_bytes)
        if hits:
            raise CheckFailed("absolute path(s): %s" % "; ".join(hits[:5]))
        n = sum(1 for f in self.all_files if mf.is_text_name(f))
        return "no absolute path in %d text files" % n

    def check_patches(self):
        declared = self.m("patches")
        series_rel = PATCH_DIR + "/series"
        names = []
        if (self.root / series_rel).exists():
            text = self.path(series_rel).read_text(encoding="utf-8")
            names = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.strip().startswith("#")]
        if names != list(declared.get("series", [])):
            raise CheckFailed("patches/series lists %s, manifest says %s" % (names, declared.get("series")))
        files = {e["path"]: e for e in self.m("files")}
        for name in names:
            if mf.relpath_problem(name) or "/" in name:
                raise CheckFailed("patches/series: bad patch name %r" % name)
            if PATCH_DIR + "/" + name not in files:
                raise CheckFailed("patches/%s: listed in series but not in the submission" % name)
        for e in declared.get("files", []):
            if files.get(e["path"], {}).get("sha256") != e["sha256"]:
                raise CheckFailed("%s: patch hash differs from the file list" % e["path"])
        trained = None
        if (self.root / "train/run.json").is_file():
            rec = self.json_file("train/run.json")
            trained = (rec.get("patches") or {}).get("patches") if isinstance(rec.get("patches"), dict) else None
        if trained:
            was = [(t.get("name"), t.get("sha256")) for t in trained if isinstance(t, dict)]
            now = [(n, files.get(PATCH_DIR + "/" + n, {}).get("sha256")) for n in names]
            if was != now:
                raise CheckFailed("train/run.json records patches %s applied in training, the submission carries %s"
                                  % ([w[0] for w in was], names))
            return "%d MindFormers patch(es) in series order, hashes match the training run's" % len(names)
        return "%d MindFormers patch(es) in series order, hashes match" % len(names)

    def adapter_config(self):
        if "adapter_config" not in self.cache:
            from lorakit import ckpt_io

            obj = self.json_file(ADAPTER_CONFIG)  # size-capped JSON parse first, then its schema
            errors = mf.schema_errors(obj, mf.load_schema(mf.SCHEMA_DIR / mf.ADAPTER_SCHEMA_NAME))
            if errors:
                raise CheckFailed("%s: %d schema error(s): %s" % (ADAPTER_CONFIG, len(errors), "; ".join(errors[:3])))
            try:
                self.cache["adapter_config"] = ckpt_io.read_adapter_config(self.path(ADAPTER_CONFIG))
            except KitError as exc:
                raise CheckFailed(str(exc).replace(str(self.root) + os.sep, "")) from None
        return self.cache["adapter_config"]

    def check_config(self):
        from lorakit.params import lora_param_table

        train = self.yaml_file(TRAIN_YAML)
        evalc = self.yaml_file(EVAL_YAML)
        views = {}
        shapes = {}
        folded_eval = False
        for rel, cfg in ((TRAIN_YAML, train), (EVAL_YAML, evalc)):
            mc = cfg.get("model", {}).get("model_config") if isinstance(cfg.get("model"), dict) else None
            if not isinstance(mc, dict):
                raise CheckFailed("%s: no model.model_config" % rel)
            shapes[rel] = {k: mc.get(k) for k in self.m("model")}
            if rel == EVAL_YAML and not mc.get("pet_config"):
                folded_eval = True  # inference on the folded checkpoint: a plain network, no LoRA cells
                continue
            views[rel] = mf.adapter_view(mc.get("pet_config"))
        views[ADAPTER_CONFIG] = mf.adapter_view(self.adapter_config())
        views["manifest.lora"] = dict(self.m("lora"))
        ref = views[ADAPTER_CONFIG]
        diffs = []
        for src, view in views.items():
            for key in ("pet_type", "rank", "alpha", "dropout", "target_modules"):
                a, b = view.get(key), ref.get(key)
                same = close(a, b) if key in ("alpha", "dropout") else a == b
                if not same:
                    diffs.append("%s %s=%r but adapter_config.json has %r" % (src, key, a, b))
        model = self.m("model")
        for src, sh in shapes.items():
            for key, value in model.items():
                if sh.get(key) is not None and sh.get(key) != value:
                    diffs.append("%s model_config.%s=%r but manifest model.%s=%r" % (src, key, sh.get(key), key, value))
        if diffs:
            raise CheckFailed("; ".join(diffs[:6]))
        # the declared config must itself be countable (valid regex, targets exist)
        table = lora_param_table(self.model_config(), self.pet_config())
        if not table:
            raise CheckFailed("target_modules %r matches no Linear cell of the model" % ref["target_modules"])
        detail = "pet_config equal in %s, adapter_config.json and manifest (r%s, alpha %s, %r)" % (
            "train yaml (eval yaml: folded checkpoint, no pet_config)" if folded_eval else "train yaml, eval yaml",
            ref["rank"], ref["alpha"], ref["target_modules"])
        tok = self.tokenizer_problem()
        if tok:
            raise CheckFailed(tok)
        return detail + "; " + self.template_note()

    def tokenizer_problem(self):
        """Training data and predictions must come from the same tokenizer file (sha256 in their records)."""
        data_tok = pred_tok = None
        if (self.root / "data/data_report.json").is_file():
            t = self.json_file("data/data_report.json").get("tokenizer")
            data_tok = t.get("sha256") if isinstance(t, dict) else None
        if (self.root / (MATH_PRED + ".run.json")).is_file():
            pred_tok = self.json_file(MATH_PRED + ".run.json").get("tokenizer_sha256")
        if data_tok and pred_tok and data_tok != pred_tok:
            return ("training data tokenized with tokenizer sha256 %s..., predictions made with %s...: "
                    "not the same tokenizer" % (str(data_tok)[:12], str(pred_tok)[:12]))
        return None

    def template_note(self):
        """Which prompt template training and inference used (a train/inference mismatch cost contest teams)."""
        train_t = infer_t = None
        if (self.root / "data/data_report.json").is_file():
            train_t = self.json_file("data/data_report.json").get("template")
        if (self.root / (MATH_PRED + ".run.json")).is_file():
            infer_t = self.json_file(MATH_PRED + ".run.json").get("template")
        if train_t and infer_t:
            if train_t == infer_t:
                return "prompt template %r in training and inference" % train_t
            return "NOTE: training template %r, inference template %r" % (train_t, infer_t)
        return "prompt templates not recorded"

    def model_config(self):
        mc = dict(self.yaml_file(TRAIN_YAML)["model"]["model_config"])
        mc.update(self.m("model"))
        return mc

    def pet_config(self):
        lora = self.m("lora")
        pet = dict(self.yaml_file(TRAIN_YAML)["model"]["model_config"].get("pet_config") or {})
        pet.update({"pet_type": "lora", "lora_rank": lora["rank"], "lora_alpha": lora["alpha"],
                    "lora_dropout": lora["dropout"], "target_modules": lora["target_modules"]})
        return pet

    def tensors(self):
        if "tensors" not in self.cache:
            path = self.path(ADAPTER)
            try:
                self.cache["tensors"] = mf.read_ckpt_safe(path, self.limits.max_member_bytes)
            except KitError as exc:
                raise CheckFailed("%s: %s" % (ADAPTER, str(exc).replace(str(path), ADAPTER))) from None
        return self.cache["tensors"]

    def check_adapter(self):
        import numpy as np

        from lorakit.params import lora_param_table, numel

        expected = lora_param_table(self.model_config(), self.pet_config())
        tensors = self.tensors()
        problems = []
        for name, (shape, _dtype) in expected.items():
            if name not in tensors:
                problems.append("%s: missing" % name)
                continue
            arr = tensors[name]
            if tuple(arr.shape) != tuple(shape):
                problems.append("%s: shape %s, closed form says %s" % (name, tuple(arr.shape), tuple(shape)))
                continue
            if not np.all(np.isfinite(arr)):
                problems.append("%s: non-finite values" % name)
            elif not np.any(arr):
                problems.append("%s: all zero (untrained or an empty sharded save)" % name)
        extra = sorted(set(tensors) - set(expected))
        if extra:
            problems.append("%d tensor(s) not in the declared config, e.g. %s" % (len(extra), extra[0]))
        acfg = self.adapter_config()
        listed = {str(t.get("name")): [int(d) for d in t.get("shape", [])] for t in acfg.get("tensors", [])}
        actual = {n: list(a.shape) for n, a in tensors.items()}
        if listed != actual:
            problems.append("adapter_config.json tensors list differs from adapter.ckpt (%s)"
                            % ", ".join(sorted(set(listed) ^ set(actual))[:2] or
                                        [n for n in listed if listed[n] != actual.get(n)][:2]))
        dims = (acfg.get("base_model") or {}).get("dims") if isinstance(acfg.get("base_model"), dict) else None
        if isinstance(dims, dict):
            for key, value in self.m("model").items():
                if dims.get(key) is not None and dims[key] != value:
                    problems.append("adapter_config.json base_model.dims.%s=%r, manifest model.%s=%r"
                                    % (key, dims[key], key, value))
        if problems:
            raise CheckFailed("; ".join(problems[:6]) + ("; ..." if len(problems) > 6 else ""))
        n = sum(numel(s) for s, _ in expected.values())
        return "%d LoRA tensors, shapes = closed form, finite, none all-zero (%d parameters)" % (len(expected), n)

    def check_ratio(self):
        got = mf.count_from_tensors(self.tensors(), self.model_config(), self.pet_config())
        self.cache["params"] = got  # the score check uses the weights' numbers even when the manifest lies
        claimed = self.m("params")
        problems = []
        for key in ("trainable", "total"):
            if got[key] != claimed.get(key):
                problems.append("%s: weights give %d, manifest says %s" % (key, got[key], claimed.get(key)))
        # ratios against the exact quotients, to 6 significant digits (count_params rounds its printed ratios;
        # a kit version that rounds differently must not fail an honest submission)
        exact = {"ratio_contest": got["trainable"] / float(got["contest_denominator"]),
                 "ratio_exact": got["trainable"] / float(got["total"]),
                 "contest_denominator": float(got["contest_denominator"])}
        for key, value in exact.items():
            if not close(value, claimed.get(key), RATIO_TOL):
                problems.append("%s: weights give %.9g, manifest says %s" % (key, value, claimed.get(key)))
        report = self.json_file(PARAMS_JSON)
        for key in ("trainable", "total", "ratio_contest", "ratio_exact"):
            want = got[key] if key in ("trainable", "total") else exact[key]
            if key in report and not close(report[key], want, RATIO_TOL):
                problems.append("eval/params.json %s=%s but weights give %.9g" % (key, report[key], want))
        if problems:
            raise CheckFailed("; ".join(problems))
        return "trainable %d / total %d: ratio_contest %.9g, ratio_exact %.9g (from the weights)" % (
            got["trainable"], got["total"], got["ratio_contest"], got["ratio_exact"])

    def gold_path(self):
        if self.args.gold:
            return Path(self.args.gold), "--gold %s" % Path(self.args.gold).name
        if (self.root / MATH_GOLD).is_file():
            return self.root / MATH_GOLD, "the gold copy inside the submission (pass --gold to use your own)"
        raise CheckFailed("no gold file: pass --gold FILE (the submission has no %s)" % MATH_GOLD)

    def check_math(self):
        from lorakit.metrics import DEFAULT_TOLERANCE, score_predictions

        gold_path, gold_desc = self.gold_path()
        claimed = self.m("metrics", "math")
        gold_fp = claimed.get("gold", {})
        gold_sha = sha256_file(gold_path)
        if gold_fp.get("sha256") and gold_fp["sha256"] != gold_sha:
            raise CheckFailed("gold file %s (sha256 %s...) is not the one the submission was scored on "
                              "(manifest: %s, sha256 %s...)" % (gold_path.name, gold_sha[:12], gold_fp.get("name"),
                                                                 str(gold_fp["sha256"])[:12]))
        tol = self.args.tolerance if self.args.tolerance is not None else DEFAULT_TOLERANCE
        if claimed.get("tolerance") is not None and not close(claimed["tolerance"], tol):
            raise CheckFailed("manifest tolerance %s differs from the judged tolerance %s" % (claimed["tolerance"], tol))
        gold, gl = read_jsonl_rows(gold_path, self.limits.max_json_bytes, gold_path.name)
        pred, pl = read_jsonl_rows(self.path(MATH_PRED), self.limits.max_json_bytes, MATH_PRED)
        rep = score_predictions(gold, pred, tolerance=tol, gold_lines=gl, pred_lines=pl,
                                gold_name=gold_path.name, pred_name=MATH_PRED)
        self.cache["math"] = rep
        problems = []
        if rep["total"] != claimed.get("total"):
            problems.append("total: %d gold records scored, manifest says %s" % (rep["total"], claimed.get("total")))
        for pol, got in rep["policies"].items():
            c = claimed.get("policies", {}).get(pol)
            if c is None:
                problems.append("policy %s: missing in the manifest" % pol)
            elif c.get("correct") != got["correct"] or not close(c.get("accuracy"), got["accuracy"]):
                problems.append("%s accuracy: manifest says %s (%s correct), recomputed %.6f (%d/%d)"
                                % (pol, c.get("accuracy"), c.get("correct"), got["accuracy"], got["correct"],
                                   rep["total"]))
        cf = claimed.get("families", {})
        if set(cf) != set(rep["families"]):
            problems.append("families: manifest has %s, recomputed %s" % (sorted(cf), sorted(rep["families"])))
        else:
            for fam, fs in rep["families"].items():
                if cf[fam].get("total") != fs["total"]:
                    problems.append("family %s: total %s in the manifest, %d recomputed" % (fam, cf[fam].get("total"),
                                                                                          fs["total"]))
                for pol, got in fs["policies"].items():
                    c = cf[fam].get("policies", {}).get(pol, {})
                    if c.get("correct") != got["correct"] or not close(c.get("accuracy"), got["accuracy"]):
                        problems.append("family %s %s: manifest %s, recomputed %.6f" % (fam, pol, c.get("accuracy"),
                                                                                       got["accuracy"]))
        report = self.json_file(MATH_REPORT)
        for pol, got in rep["policies"].items():
            r = report.get("policies", {}).get(pol, {})
            if r.get("correct") != got["correct"]:
                problems.append("%s: %s correct=%s, recomputed %d" % (MATH_REPORT, pol, r.get("correct"), got["correct"]))
        if problems:
            raise CheckFailed("; ".join(problems[:6]))
        head = rep["policies"][claimed["primary_policy"]] if claimed.get("primary_policy") in rep["policies"] else None
        if head is None:
            raise CheckFailed("primary_policy %r is not a scoring policy" % claimed.get("primary_policy"))
        return "%d test ids each scored once against %s; %s accuracy %.4f (%d/%d), all policies and %d families equal" % (
            rep["total"], gold_desc, claimed["primary_policy"], head["accuracy"], head["correct"], rep["total"],
            len(rep["families"]))

    def check_squad(self):
        from lorakit import metrics as squad_tool  # score_squad: the one implementation squad.py uses too

        claimed = self.m("metrics", "squad")
        if self.args.squad_records:
            rec_path, rec_desc = Path(self.args.squad_records), "--squad-records"
        elif (self.root / SQUAD_RECORDS).is_file():
            rec_path, rec_desc = self.root / SQUAD_RECORDS, "records copy inside the submission"
        else:
            raise CheckFailed("no SQuAD records: pass --squad-records FILE (the submission has no %s)" % SQUAD_RECORDS)
        fp = claimed.get("records_file") or {}
        if fp.get("sha256") and fp["sha256"] != sha256_file(rec_path):
            raise CheckFailed("SQuAD records %s differ from the ones the submission was scored on (%s)"
                              % (rec_path.name, fp.get("name")))
        records, rl = read_jsonl_rows(rec_path, self.limits.max_json_bytes, rec_path.name)
        preds, pl = read_jsonl_rows(self.path(SQUAD_PRED), self.limits.max_json_bytes, SQUAD_PRED)
        rep = squad_tool.score_squad(list(zip(rl, records)), list(zip(pl, preds)), rec_path.name, SQUAD_PRED)
        got = {"records": rep["total"], "f1": float(rep["emf1"]["F1"]), "em": float(rep["emf1"]["Em"])}
        problems = []
        if got["records"] != claimed.get("records"):
            problems.append("records: %d scored, manifest says %s" % (got["records"], claimed.get("records")))
        for key in ("f1", "em"):
            if not close(got[key], claimed.get(key)):
                problems.append("%s: manifest says %s, recomputed %.4f" % (key.upper(), claimed.get(key), got[key]))
        thr = claimed.get("thresholds", {})
        thr_desc = "manifest thresholds"
        if self.args.squad_thresholds:
            thr = {"f1": self.args.squad_thresholds[0], "em": self.args.squad_thresholds[1]}
            thr_desc = "judge thresholds"
        passed = got["f1"] >= float(thr["f1"]) and got["em"] >= float(thr["em"])
        if bool(claimed.get("passed")) != passed and not self.args.squad_thresholds:
            problems.append("gate: manifest says passed=%s, recomputed %s" % (claimed.get("passed"), passed))
        if not passed:
            problems.append("gate not met: F1 %.4f / EM %.4f below %s F1 %s / EM %s" % (
                got["f1"], got["em"], thr_desc, thr["f1"], thr["em"]))
        if problems:
            raise CheckFailed("; ".join(problems))
        self.cache["squad"] = got
        return "%d records (%s): EmF1 F1 %.4f EM %.4f >= %s %s / %s; gate passed" % (
            got["records"], rec_desc, got["f1"], got["em"], thr_desc, thr["f1"], thr["em"])

    def check_score(self):
        from lorakit.metrics import contest_score

        if "math" not in self.cache or "params" not in self.cache:
            raise CheckFailed("not recomputed: the math or ratio check failed")
        claimed = self.m("metrics", "score")
        policy = claimed.get("policy")
        if policy != self.m("metrics", "math", "primary_policy"):
            raise CheckFailed("score policy %r differs from the math primary policy" % policy)
        if self.args.policy and policy != self.args.policy:
            raise CheckFailed("score uses policy %r, the judge asked for %r" % (policy, self.args.policy))
        acc = self.cache["math"]["policies"][policy]["accuracy"]
        ratio = mf.score_ratio(self.cache["params"])
        value = contest_score(acc, ratio)
        problems = []
        for key, want, tol in (("accuracy", acc, REL_TOL), ("ratio", ratio, RATIO_TOL), ("value", value, 1e-7)):
            if not close(claimed.get(key), want, tol):
                problems.append("%s: manifest says %s, recomputed %.9g" % (key, claimed.get(key), want))
        if problems:
            raise CheckFailed("; ".join(problems))
        return "score %.6f = (1 - %.9g) * 0.3 + %.6f * 0.7 (%s)" % (value, ratio, acc, policy)

    def check_report(self):
        text = self.path(REPORT_MD).read_text(encoding="utf-8")
        score = "%.6f" % float(self.m("metrics", "score", "value"))
        if score not in text:
            raise CheckFailed("REPORT.md does not state the manifest's score %s" % score)
        trainable = str(self.m("params", "trainable"))
        if trainable not in text:
            raise CheckFailed("REPORT.md does not state the trainable count %s" % trainable)
        return "REPORT.md states score %s and trainable %s" % (score, trainable)

    def check_base(self):
        from lorakit.params import base_param_table

        rel = self.m("base_model").get("packaged")
        if not rel:
            return ("SKIP", "no base weights packaged (the base is the public checkpoint %s)"
                    % ((self.m("base_model").get("checkpoint") or {}).get("name") or "named by the team"))
        if mf.relpath_problem(rel):
            raise CheckFailed("base_model.packaged %r: %s" % (rel, mf.relpath_problem(rel)))
        path = self.path(rel)
        try:
            tensors = mf.read_ckpt_safe(path, self.limits.max_member_bytes)
        except KitError as exc:
            raise CheckFailed("%s: %s" % (rel, str(exc).replace(str(path), rel))) from None
        expected = base_param_table(self.model_config())
        problems = []
        for name, (shape, _dtype) in expected.items():
            if name not in tensors:
                problems.append("%s: missing" % name)
            elif tuple(tensors[name].shape) != tuple(shape):
                problems.append("%s: shape %s, closed form %s" % (name, tuple(tensors[name].shape), tuple(shape)))
        extra = sorted(set(tensors) - set(expected))
        if extra:
            problems.append("%d tensor(s) that are not base weights, e.g. %s" % (len(extra), extra[0]))
        import numpy as np

        bad = [n for n, t in tensors.items() if not np.all(np.isfinite(t))]
        if bad:
            problems.append("non-finite values in %s" % bad[0])
        if problems:
            raise CheckFailed("; ".join(problems[:5]))
        self.cache["base"] = path
        return "%s: %d frozen base tensors, shapes = closed form of the model (random-init run)" % (rel, len(tensors))

    def check_rerun(self):
        if not self.args.rerun:
            return ("SKIP", "inference not re-run (pass --rerun, or RERUN=1 to make verify)")
        return rerun(self)

    def run(self):
        self.run_check("layout", self.check_layout)
        if self.results[-1].status != "PASS":
            return
        self.run_check("manifest", self.check_manifest)
        if self.manifest is None:
            return
        for name in ("schema", "files", "paths", "patches", "config", "adapter", "base", "ratio", "math", "squad",
                     "score", "report", "rerun"):
            self.run_check(name, getattr(self, "check_" + name))


def rerun(v):
    """Re-run inference with the submitted adapter through tools/predict.py and compare with the submission.

    What is built comes from the kit, not from the submission: the kit's own yaml/<profile>.yaml (its model shape
    must equal the manifest's), pet_config from adapter_config.json (numbers and a regex, checked), the base
    weights packaged in the submission (random-init runs) or --base-checkpoint (checked against the manifest's
    fingerprint). Decoding settings come from the submission's predict record, validated.
    """
    import subprocess

    from lorakit.config import load_config, model_config
    from lorakit.metrics import score_predictions
    from lorakit.paths import YAML_DIR
    from lorakit.templates import TEMPLATES

    failed_before = [r.name for r in v.results if r.status == "FAIL"]
    if failed_before:
        raise CheckFailed("not re-run: earlier checks failed (%s)" % ", ".join(failed_before))
    profile = str(v.m("profile"))
    if mf.relpath_problem(profile) or "/" in profile or not (YAML_DIR / (profile + ".yaml")).is_file():
        raise CheckFailed("profile %r is not one of the kit's yaml profiles" % profile)
    cfg = load_config(profile)
    mc = model_config(cfg)
    diff = ["%s %r != %r" % (k, mc.get(k), val) for k, val in v.m("model").items() if mc.get(k) != val]
    if diff:
        raise CheckFailed("the kit's %s profile differs from the submission's model: %s" % (profile, "; ".join(diff)))
    base = v.cache.get("base")
    if base is None:
        if not v.args.base_checkpoint:
            raise CheckFailed("pass --base-checkpoint (the base model the adapter was trained on)")
        base = Path(v.args.base_checkpoint)
        fp = v.m("base_model").get("checkpoint") or {}
        if fp.get("bytes") and base.stat().st_size != fp["bytes"]:
            raise CheckFailed("--base-checkpoint has %d bytes, the manifest's base %s has %s"
                              % (base.stat().st_size, fp.get("name"), fp["bytes"]))
        if fp.get("sha256") and sha256_file(base) != fp["sha256"]:
            raise CheckFailed("--base-checkpoint sha256 differs from the manifest's base %s" % fp.get("name"))
    rec = {}
    rec_rel = MATH_PRED + ".run.json"
    if (v.root / rec_rel).is_file():
        rec = v.json_file(rec_rel)
    template = rec.get("template") or "vicuna"
    if template not in TEMPLATES:
        raise CheckFailed("%s: unknown template %r" % (rec_rel, template))
    nums = {}
    for key, lo, hi, default in (("max_new_tokens", 1, 8192, mc.get("max_new_tokens")),
                                 ("min_new_tokens", 1, 8192, 1), ("batch_size", 1, 1024, 8)):
        val = rec.get(key, default)
        if not isinstance(val, int) or isinstance(val, bool) or not lo <= val <= hi:
            raise CheckFailed("%s: %s=%r is not an integer in [%d, %d]" % (rec_rel, key, val, lo, hi))
        nums[key] = val
    tokenizer = v.args.tokenizer
    if not tokenizer and (v.root / TOKENIZER_REL).is_file():
        tokenizer = str(v.root / TOKENIZER_REL)  # the very file the predictions were made with (tiny profile)
    if not tokenizer and rec.get("tokenizer") == "tiny":
        tokenizer = "tiny"
    if not tokenizer:
        raise CheckFailed("pass --tokenizer (the submission was predicted with a tokenizer file)")
    tok_sha = sha256_file(tokenizer) if Path(tokenizer).is_file() else None
    if tok_sha is None and tokenizer == "tiny":
        from lorakit.tokenizer import tiny_tokenizer_path

        tok_sha = sha256_file(tiny_tokenizer_path())
    if rec.get("tokenizer_sha256") and tok_sha != rec["tokenizer_sha256"]:
        raise CheckFailed("tokenizer %s (sha256 %s...) is not the one the predictions were made with (%s...)"
                          % (Path(tokenizer).name, str(tok_sha)[:12], rec["tokenizer_sha256"][:12]))
    test_path = Path(v.args.test) if v.args.test else v.gold_path()[0]
    workdir = Path(tempfile.mkdtemp(prefix="kit-rerun-"))
    try:
        out = workdir / "predictions.jsonl"
        cmd = [sys.executable, str(Path(__file__).resolve().parent / "predict.py"), "--input", str(test_path),
               "--out", str(out), "--config", profile, "--checkpoint", str(base), "--adapter",
               str(v.root / "adapter"), "--tokenizer", str(tokenizer), "--template", template,
               "--max-new-tokens", str(nums["max_new_tokens"]), "--min-new-tokens", str(nums["min_new_tokens"]),
               "--batch-size", str(nums["batch_size"])]
        if v.args.rerun_limit:
            cmd += ["--limit", str(v.args.rerun_limit)]
        if not v.args.json:
            print("...  rerun     running tools/predict.py on %s (%s records) with the submitted adapter"
                  % (test_path.name, v.args.rerun_limit or "all"), flush=True)
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=None if not v.args.json else subprocess.PIPE,
                              text=True)
        if proc.returncode != 0:
            tail = (proc.stderr or "").strip().splitlines()[-1:] if v.args.json else []
            raise CheckFailed("predict.py failed (exit %d)%s" % (proc.returncode, ": " + tail[0] if tail else ""))
        new_rows, _ = read_jsonl_rows(out, v.limits.max_json_bytes, "rerun predictions")
    finally:
        import shutil

        shutil.rmtree(str(workdir), ignore_errors=True)
    old_rows, _ = read_jsonl_rows(v.path(MATH_PRED), v.limits.max_json_bytes, MATH_PRED)
    old = {str(r.get("id")): r for r in old_rows}
    ids = [str(r["id"]) for r in new_rows]
    same = sum(1 for r in new_rows if old.get(str(r["id"]), {}).get("completion") == r.get("completion"))
    gold_rows, _ = read_jsonl_rows(test_path, v.limits.max_json_bytes, test_path.name)
    keep = set(ids)
    gold_sub = []
    for k, r in enumerate(gold_rows, 1):
        rid = str(r.get("id")) if r.get("id") not in (None, "") else str(k)
        if rid in keep:
            gold_sub.append(dict(r, id=rid))
    policy = v.m("metrics", "math", "primary_policy")
    new_rep = score_predictions(gold_sub, new_rows, gold_name=test_path.name, pred_name="rerun")
    got = new_rep["policies"][policy]["correct"]
    detail = "%d records re-predicted: %d/%d completions identical; %s correct %d/%d" % (
        len(ids), same, len(ids), policy, got, len(ids))
    missing_old = [i for i in ids if i not in old]
    if not missing_old:
        old_rep = score_predictions(gold_sub, [old[i] for i in ids], gold_name=test_path.name, pred_name=MATH_PRED)
        want = old_rep["policies"][policy]["correct"]
        detail += " (submitted: %d)" % want
        if abs(got - want) > v.args.rerun_tolerance:
            raise CheckFailed(detail + ": accuracy differs by more than %d record(s)" % v.args.rerun_tolerance)
    if same < v.args.rerun_agreement * len(ids):
        raise CheckFailed(detail + ": fewer identical completions than --rerun-agreement %g" % v.args.rerun_agreement)
    return detail


def open_submission(src, limits, workdir):
    """(root folder, description, problems) for a folder or a zip (extracted safely below workdir)."""
    src = Path(src)
    if src.is_symlink():
        return None, str(src), ["%s: is a symbolic link" % src.name]
    if src.is_dir():
        return src, "folder", []
    if not src.is_file():
        raise KitError("%s: no such folder or zip" % src)
    problems = mf.extract_zip(src, workdir, limits)
    if problems:
        return None, "zip", problems
    top = [p for p in Path(workdir).iterdir()]
    if (Path(workdir) / mf.MANIFEST_NAME).is_file():
        return Path(workdir), "zip", []
    if len(top) == 1 and top[0].is_dir():
        return top[0], "zip, folder %s/" % top[0].name, []
    return Path(workdir), "zip", []


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("submission", help="submission folder (submission/<team>) or its zip")
    ap.add_argument("--gold", help="math gold test file (JSONL problem, solution[, id]); default: the packaged copy")
    ap.add_argument("--squad-records", help="SQuAD eval records (JSONL from squad.py prepare); default: packaged copy")
    ap.add_argument("--squad-thresholds", nargs=2, type=float, metavar=("F1", "EM"),
                    help="judge's SQuAD gate (default: the thresholds recorded in the manifest)")
    ap.add_argument("--tolerance", type=float, default=None, help="relative tolerance of the `tolerance` policy")
    ap.add_argument("--policy", default=None, help="require the score to use this math policy")
    ap.add_argument("--rerun", action="store_true", help="re-run inference with the submitted adapter and compare")
    ap.add_argument("--test", help="problems file for --rerun (default: the gold file)")
    ap.add_argument("--rerun-limit", type=int, default=0, help="--rerun only the first N test records (0: all)")
    ap.add_argument("--base-checkpoint", help="base model checkpoint for --rerun (default: the base packaged with a "
                                              "random-init run)")
    ap.add_argument("--tokenizer", help="tokenizer.model for --rerun (default: `tiny` when the run used it)")
    ap.add_argument("--rerun-agreement", type=float, default=1.0,
                    help="--rerun: share of completions that must be identical (default 1.0)")
    ap.add_argument("--rerun-tolerance", type=int, default=0,
                    help="--rerun: records by which the re-run's correct count may differ (default 0)")
    ap.add_argument("--schema", help="manifest schema (default: the kit's submission/schema/manifest.schema.json)")
    ap.add_argument("--max-members", type=int, default=mf.DEFAULT_MAX_MEMBERS, help="most files allowed")
    ap.add_argument("--max-member-bytes", type=int, default=mf.DEFAULT_MAX_MEMBER_BYTES, help="largest file allowed")
    ap.add_argument("--max-total-bytes", type=int, default=mf.DEFAULT_MAX_TOTAL_BYTES, help="largest total allowed")
    ap.add_argument("--max-json-bytes", type=int, default=mf.DEFAULT_MAX_JSON_BYTES,
                    help="largest JSON/JSONL/YAML file parsed")
    ap.add_argument("--json", action="store_true", help="print one JSON object on stdout instead of lines")
    args = ap.parse_args(argv)
    limits = mf.Limits(args.max_members, args.max_member_bytes, args.max_total_bytes, args.max_json_bytes)

    with tempfile.TemporaryDirectory(prefix="kit-verify-") as work:
        root, desc, problems = open_submission(args.submission, limits, work)
        if root is None:
            v = Verifier(work, args, desc)
            v.add("input", "FAIL", "%s refused: %s" % (desc, "; ".join(problems[:10])))
        else:
            v = Verifier(root, args, desc)
            v.add("input", "PASS", "%s opened as %s" % (Path(args.submission).name, desc))
            v.run()
        results = v.results
    failed = [r for r in results if r.status == "FAIL"]
    passed = [r for r in results if r.status == "PASS"]
    skipped = [r for r in results if r.status == "SKIP"]
    ok = not failed
    summary = "%s: %d passed, %d failed, %d skipped -> %s" % (
        Path(args.submission).name, len(passed), len(failed), len(skipped), "VERIFIED" if ok else "NOT VERIFIED")
    if args.json:
        print(json.dumps({"submission": Path(args.submission).name, "verified": ok,
                          "passed": len(passed), "failed": len(failed), "skipped": len(skipped),
                          "checks": [r.as_dict() for r in results]}, ensure_ascii=False))
    else:
        print(summary)
    sys.stdout.flush()
    return 0 if ok else 1


if __name__ == "__main__":
    run_main(main)
