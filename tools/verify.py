#!/usr/bin/env python3
"""Verify a contest submission (folder or zip) by re-deriving every number it claims.

Checks, one line each (PASS / FAIL and why; SKIP when not asked for):
  input      the folder or zip is safe to read: no zip-slip (`../x`), absolute, backslash or over-long names,
             symlinks, special files, duplicate members, members or totals over the size limits, too many
             members; a zip is extracted only when its members and sizes are exactly what its manifest declares
  manifest   manifest.json present and strict JSON;  schema  it validates against manifest.schema.json, `created`
             is a real past UTC time
  files      every declared file present with its byte count and sha256; nothing missing, nothing undeclared
  paths      no absolute path in any text file (a text file too big to scan fails)
  patches    patches/series and the patch files match the manifest
  config     train and eval yaml pet_config == adapter_config.json == manifest lora; model shapes agree;
             provenance fingerprints agree
  adapter    every LoRA tensor of the declared config present, shape = closed form, finite, A and B of a
             meaningful size (B's RMS >= 1e-6 x A's); no other tensor; adapter_config.json's numbers
  ratio      trainable = the LoRA tensors in the adapter (not the config's freeze rules); every number of the
             manifest's params and eval/params.json recomputed (ratios to 1e-6 relative)
  math       accuracy per policy and family recomputed from raw predictions + gold; every id scored once; every
             number of the manifest's math section and eval/math_report.json recomputed
  squad      EmF1 (and official SQuAD v1.1) recomputed from raw predictions + records, every number of the
             manifest's squad section and eval/squad_report.json; the gate with the judge's thresholds
             (default: the contest's 53.8832 / 39.7533; thresholds in the submission are never used)
  base       (random-init runs) the packaged frozen base: shapes = closed form, finite
  score      (1 - ratio) * 0.3 + accuracy * 0.7 recomputed with the judge's policy (default: the contest's)
  report     REPORT.md states the manifest's score and trainable count
  rerun      (--rerun) inference re-run with the submitted adapter; completions and accuracy compared

The submission is hostile input. Nothing from it is executed, imported or unpickled: JSON strictly (no duplicate
keys, NaN, Infinity, overflowing or 40+-digit numbers, bounded nesting), YAML with a safe loader after its events
were checked (nesting, alias bombs), checkpoints through the bounded protobuf reader of lorakit.ckpt_io, regexes
with a time limit; every file read has a size cap; names are printed escaped. Exit 0 only when every check passes.

  verify.py submission/demo                       # folder (uses the gold copy packaged in eval/)
  verify.py submission/demo.zip --gold test.jsonl --squad-records squad_eval.jsonl --json
"""

import argparse
import datetime
import json
import math
import os
import re
import signal
import sys
from pathlib import Path

from lorakit import contest
from lorakit import manifest as mf
from lorakit.io import KitError, atomic_open, iter_jsonl, pid_tempdir, run_main, sha256_file, show

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
REGEX_TIMEOUT = 2.0  # seconds for matching the submitted target_modules / exclude_layers against the cell names
MAX_REPORT_BYTES = 4 << 20
A_MIN_RMS = 1e-5  # LoRA A starts at RMS ~0.01 (MindFormers: normal(0.01)); training does not shrink it 1000x
B_MIN_RMS_RATIO = 1e-6  # one Adam step at lr 1e-7 already moves B by ~1e-7 per value, ~1e-5 x A's RMS


class Result:
    __slots__ = ("name", "status", "detail")

    def __init__(self, name, status, detail):
        self.name, self.status, self.detail = name, status, show(detail, 4000)  # terminal-safe, bounded

    def line(self):
        return "%-4s %-9s %s" % (self.status, self.name, self.detail)

    def as_dict(self):
        return {"check": self.name, "status": self.status, "detail": self.detail}


class CheckFailed(Exception):
    """Raised inside a check: the message is the FAIL line."""


def is_number(x):
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def close(a, b, tol=REL_TOL):
    """a and b are finite numbers equal to `tol` relative (exactly equal when one is 0)."""
    if not (is_number(a) and is_number(b)) or not (math.isfinite(a) and math.isfinite(b)):
        return False
    return a == b or abs(a - b) <= tol * max(abs(a), abs(b))


def ratio_matches(claimed, exact):
    """A claimed ratio equals the exact quotient to RATIO_REL_TOL relative, or is its 6-significant-digit
    rounding (the leaderboard's format, which count_params writes)."""
    return close(claimed, exact, contest.RATIO_REL_TOL) or (is_number(claimed) and claimed == float("%.6g" % exact))


def number_problems(claimed, derived, where, limit=8):
    """Every number and boolean in `claimed` (a JSON value from the submission) must equal the one at the same
    place in `derived` (what verify recomputed): ints exactly, floats to REL_TOL relative, keys starting with
    `ratio` per ratio_matches. A number verify cannot re-derive is a problem too. Strings are not compared."""
    problems = []
    stack = [(claimed, derived, where)]
    while stack and len(problems) < limit:
        c, d, path = stack.pop()
        if isinstance(c, dict):
            dd = d if isinstance(d, dict) else {}
            # the headline numbers first, the long per-family / per-tensor lists last
            for k in sorted(c, key=lambda k: (k in ("families", "sample_misses", "tensors"), k), reverse=True):
                stack.append((c[k], dd.get(k, _MISSING), "%s.%s" % (path, k)))
        elif isinstance(c, list):
            dl = d if isinstance(d, list) else []
            for i in range(len(c) - 1, -1, -1):
                stack.append((c[i], dl[i] if i < len(dl) else _MISSING, "%s[%d]" % (path, i)))
        elif isinstance(c, bool) or is_number(c):
            if d is _MISSING or d is None:
                problems.append("%s=%s: not a number verify can re-derive" % (path, c))
            elif isinstance(c, bool) or isinstance(d, bool):
                if c is not d:
                    problems.append("%s=%s, recomputed %s" % (path, c, d))
            elif path.rsplit(".", 1)[-1].startswith("ratio") and is_number(d):
                if not ratio_matches(c, d):
                    problems.append("%s=%s, recomputed %.9g" % (path, c, d))
            elif isinstance(c, int) and isinstance(d, int):
                if c != d:
                    problems.append("%s=%s, recomputed %s" % (path, c, d))
            elif not close(c, d):
                problems.append("%s=%s, recomputed %s" % (path, c, "%.9g" % d if is_number(d) else d))
    return problems


_MISSING = object()


def read_jsonl_rows(path, limit, name):
    """Rows of a JSONL file from the submission (or the judge's gold/records): size cap, strict JSON per line,
    lines over mf.MAX_LINE_BYTES refused without being read whole."""
    size = Path(path).stat().st_size
    if size > limit:
        raise CheckFailed("%s: %d bytes, over the %d-byte limit" % (name, size, limit))
    rows, lines, bad = [], [], []
    for lineno, obj in iter_jsonl(path, bad=bad, strict=True, max_line_bytes=mf.MAX_LINE_BYTES):
        rows.append(obj)
        lines.append(lineno)
        if len(bad) > 0:
            break
    if bad:
        raise CheckFailed("%s:%d: %s" % (name, bad[0].lineno, bad[0].reason))
    return rows, lines


def named(exc, path, rel):
    """An error message about the file at `path`, naming it by its submission path `rel` exactly once."""
    msg = str(exc).replace(str(path), rel)
    return msg if msg.startswith(rel) else "%s: %s" % (rel, msg)


def parse_utc(text):
    """A manifest date-time (RFC 3339, e.g. 2024-07-01T12:00:00Z) as an aware datetime, else None."""
    if not isinstance(text, str) or not re.match(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?(Z|[+-]\d{2}:\d{2})$",
                                                 text):
        return None
    try:
        return datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


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
            return self.add(name, "FAIL", str(exc).replace(str(self.root) + os.sep, ""))
        except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
            return self.add(name, "FAIL", "cannot check: malformed input (%s: %s)" % (type(exc).__name__, exc))
        except OSError as exc:
            return self.add(name, "FAIL", "cannot read %s: %s" % (show(Path(exc.filename or "?").name),
                                                                  exc.strerror or exc))
        except (RecursionError, OverflowError, MemoryError, ArithmeticError) as exc:
            return self.add(name, "FAIL", "cannot check: input out of bounds (%s)" % type(exc).__name__)
        except Exception as exc:  # noqa: BLE001 - hostile input must end in a FAIL line, never a traceback
            return self.add(name, "FAIL", "cannot check: unexpected %s: %s" % (type(exc).__name__, exc))
        if isinstance(detail, tuple) and detail and detail[0] == "SKIP":
            return self.add(name, "SKIP", detail[1])
        return self.add(name, "PASS", detail)

    def path(self, rel):
        p = self.root / rel
        if not p.is_file() or p.is_symlink():
            raise CheckFailed("%s: missing" % rel)
        return p

    def cached(self, key, load):
        """load() once; a failure is remembered too, so a bad file costs its parse (or time limit) only once."""
        if key not in self.cache:
            try:
                self.cache[key] = load()
            except (KitError, CheckFailed) as exc:
                self.cache[key] = CheckFailed(str(exc))
        if isinstance(self.cache[key], CheckFailed):
            raise self.cache[key]
        return self.cache[key]

    def json_file(self, rel):
        """A JSON object of the submission: strict, size-capped; anything but an object fails."""
        return self.cached(rel, lambda: mf.read_json_limited(self.path(rel), self.limits.max_json_bytes, name=rel))

    def yaml_file(self, rel):
        return self.cached(rel, lambda: mf.read_yaml_limited(self.path(rel), mf.MAX_YAML_BYTES, name=rel))

    def expected_lora(self):
        """lorakit.params.lora_param_table of the declared config (submitted regexes matched under a time
        limit); computed once, a failure is remembered (a ReDoS pattern costs its time limit only once)."""
        from lorakit.params import lora_param_table

        return self.cached("expected", lambda: lora_param_table(self.model_config(), self.pet_config(),
                                                                regex_timeout=REGEX_TIMEOUT))

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
            raise CheckFailed("; ".join(problems[:10]) + ("; ... (%d problems)" % len(problems)
                                                           if len(problems) > 10 else ""))
        if mf.MANIFEST_NAME not in files:
            raise CheckFailed("no %s at the top of the submission" % mf.MANIFEST_NAME)
        return "%d files, none unsafe (%s)" % (len(files), self.source)

    def check_manifest(self):
        obj = mf.read_json_limited(self.root / mf.MANIFEST_NAME, mf.MAX_MANIFEST_BYTES, name=mf.MANIFEST_NAME,
                                   max_nodes=mf.MAX_MANIFEST_VALUES)
        self.manifest = obj
        return "manifest.json read (team %s)" % show(repr(obj.get("team")), 80)

    def check_schema(self):
        errors = mf.schema_errors(self.manifest, mf.load_schema(self.args.schema))
        if errors:
            raise CheckFailed("%d schema error(s): %s" % (len(errors), "; ".join(errors[:5])))
        # `format: date-time` is not enforced by jsonschema without an extra package: checked here
        created = parse_utc(self.m("created"))
        now = datetime.datetime.now(datetime.timezone.utc)
        if created is None:
            raise CheckFailed("created %r is not an RFC 3339 date-time (e.g. 2024-07-01T12:00:00Z)"
                              % self.m("created"))
        if created > now + datetime.timedelta(days=1):
            raise CheckFailed("created %s is in the future" % self.m("created"))
        return "valid against %s (JSON Schema 2020-12); created %s" % (mf.SCHEMA_NAME, self.m("created"))

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
                problems.append("files[%d] %s: %s" % (i, show(repr(rel)), why))
                continue
            if rel in seen:
                problems.append("%s: declared twice" % show(rel))
                continue
            seen[rel] = entry
        actual = set(self.all_files) - {mf.MANIFEST_NAME}
        for rel in sorted(set(seen) - actual):
            problems.append("%s: declared but missing" % show(rel))
        for rel in sorted(actual - set(seen)):
            problems.append("%s: undeclared file (not in the manifest)" % show(rel))
        if mf.MANIFEST_NAME in seen:
            problems.append("manifest.json lists itself")
        checked = 0
        for rel in sorted(set(seen) & actual):
            entry = seen[rel]
            full = self.root / rel
            size = full.stat().st_size
            if size != entry.get("bytes"):
                problems.append("%s: content changed (%d bytes, manifest says %s)" % (show(rel), size,
                                                                                    show(entry.get("bytes"), 40)))
                continue
            digest = sha256_file(full)
            if digest != entry.get("sha256"):
                problems.append("%s: content changed (sha256 %s..., manifest says %s...)"
                                % (show(rel), digest[:12], show(str(entry.get("sha256"))[:12])))
                continue
            checked += 1
        if problems:
            raise CheckFailed("; ".join(problems[:10]) + ("; ... (%d problems)" % len(problems)
                                                           if len(problems) > 10 else ""))
        self.files_ok = True
        return "%d files: sizes and sha256 match, none missing, none undeclared" % checked

    def check_paths(self):
        hits = mf.scan_absolute_paths(self.root, self.all_files, self.limits.max_json_bytes)
        if hits:
            raise CheckFailed("absolute path(s): %s%s" % ("; ".join(hits[:5]), "; ... (%s in all)" % (
                "%d" % len(hits) if len(hits) < 100 else "100 or more") if len(hits) > 5 else ""))
        n = sum(1 for f in self.all_files if mf.is_text_name(f))
        return "no absolute path in %d text files" % n

    def check_patches(self):
        declared = self.m("patches")
        series_rel = PATCH_DIR + "/series"
        names = []
        if (self.root / series_rel).exists():
            with open(str(self.path(series_rel)), "rb") as fh:
                raw = fh.read(self.limits.max_json_bytes + 1)
            if len(raw) > self.limits.max_json_bytes:
                raise CheckFailed("%s: over the %d-byte limit" % (series_rel, self.limits.max_json_bytes))
            text = raw.decode("utf-8", "replace")
            names = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.strip().startswith("#")]
        if names != list(declared.get("series", [])):
            raise CheckFailed("patches/series lists %s, manifest says %s" % (show(names, 300),
                                                                            show(declared.get("series"), 300)))
        files = {e["path"]: e for e in self.m("files")}
        for name in names:
            if mf.relpath_problem(name) or "/" in name:
                raise CheckFailed("patches/series: bad patch name %s" % show(repr(name)))
            if PATCH_DIR + "/" + name not in files:
                raise CheckFailed("patches/%s: listed in series but not in the submission" % show(name))
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
                    diffs.append("%s %s=%s but adapter_config.json has %s" % (src, key, show(repr(a), 80),
                                                                            show(repr(b), 80)))
        model = self.m("model")
        for src, sh in shapes.items():
            for key, value in model.items():
                if sh.get(key) is not None and sh.get(key) != value:
                    diffs.append("%s model_config.%s=%s but manifest model.%s=%s" % (
                        src, key, show(repr(sh.get(key)), 40), key, show(repr(value), 40)))
        diffs += self.provenance_problems()
        if diffs:
            raise CheckFailed("; ".join(diffs[:6]))
        # the declared config must itself be countable (valid dims and regex, targets exist)
        if not self.expected_lora():
            raise CheckFailed("target_modules %s matches no Linear cell of the model" % show(repr(ref["target_modules"])))
        detail = "pet_config equal in %s, adapter_config.json and manifest (r%s, alpha %s, %s)" % (
            "train yaml (eval yaml: folded checkpoint, no pet_config)" if folded_eval else "train yaml, eval yaml",
            ref["rank"], ref["alpha"], show(repr(ref["target_modules"]), 200))
        tok = self.tokenizer_problem()
        if tok:
            raise CheckFailed(tok)
        return detail + "; " + self.template_note()

    def provenance_problems(self):
        """Fingerprints of files outside the submission (training data, base checkpoint) cannot be re-derived
        here; they must at least agree with the records they were copied from (train/run.json,
        adapter_config.json). --rerun checks the base checkpoint's against the real file."""
        problems = []
        claimed = self.m("data").get("files") or []
        if (self.root / "train/run.json").is_file():
            run_data = self.json_file("train/run.json").get("data")
            recorded = run_data.get("files") if isinstance(run_data, dict) else None
            if isinstance(recorded, list):
                want = [{"name": Path(str(f.get("name") or f.get("path") or "")).name, "bytes": f.get("bytes"),
                         "sha256": f.get("sha256")} for f in recorded if isinstance(f, dict)]
                got = [{"name": f.get("name"), "bytes": f.get("bytes"), "sha256": f.get("sha256")} for f in claimed]
                if got != want:
                    problems.append("manifest data.files differ from the training data train/run.json records")
        elif claimed:
            problems.append("manifest data.files: no train/run.json to check them against")
        base = self.adapter_config().get("base_model")
        recorded = base.get("checkpoint") if isinstance(base, dict) else None
        claimed = self.m("base_model").get("checkpoint")
        if (claimed is None) != (recorded is None) or (claimed is not None and (
                claimed.get("bytes") != recorded.get("bytes") or claimed.get("sha256") != recorded.get("sha256"))):
            problems.append("manifest base_model.checkpoint differs from adapter_config.json base_model.checkpoint")
        return problems

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
                    "not the same tokenizer" % (show(str(data_tok)[:12]), show(str(pred_tok)[:12])))
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
                return "prompt template %s in training and inference" % show(repr(train_t), 40)
            return "NOTE: training template %s, inference template %s" % (show(repr(train_t), 40),
                                                                          show(repr(infer_t), 40))
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

    def stats(self):
        """lorakit.manifest.ckpt_stats of the adapter: values read (in bounded chunks) only for tensors with
        the declared config's names and shapes, so a lying file costs no more than the honest one would."""
        if "stats" not in self.cache:
            path = self.path(ADAPTER)
            try:
                expected = self.expected_lora()
            except CheckFailed:
                expected = {}
            try:
                self.cache["stats"] = mf.ckpt_stats(
                    path, self.limits.max_member_bytes,
                    load=lambda name, shape: name in expected and tuple(shape) == tuple(expected[name][0]))
            except KitError as exc:
                raise CheckFailed(named(exc, path, ADAPTER)) from None
        return self.cache["stats"]

    def check_adapter(self):
        from lorakit.params import numel

        expected = self.expected_lora()
        stats = self.stats()
        problems = []
        for name, (shape, _dtype) in expected.items():
            st = stats.get(name)
            if st is None:
                problems.append("%s: missing" % name)
            elif tuple(st.shape) != tuple(shape):
                problems.append("%s: shape %s, closed form says %s" % (name, tuple(st.shape), tuple(shape)))
            elif not st.finite:
                problems.append("%s: non-finite values" % name)
        for name in expected:
            if not name.endswith("_a"):
                continue
            a, b = stats.get(name), stats.get(name[:-1] + "b")
            if a is None or b is None or not a.finite or not b.finite or a.sumsq is None or b.sumsq is None:
                continue
            if not a.nonzero:
                problems.append("%s: all zero" % name)
            elif a.rms < A_MIN_RMS:
                problems.append("%s: RMS %.3g, below %g (LoRA A starts at ~0.01)" % (name, a.rms, A_MIN_RMS))
            if not b.nonzero:
                problems.append("%s: all zero (untrained or an empty sharded save)" % b.name)
            elif b.rms < B_MIN_RMS_RATIO * a.rms:
                problems.append("%s: RMS %.3g is below %g x its A's RMS %.3g (no real update: untrained)"
                                % (b.name, b.rms, B_MIN_RMS_RATIO, a.rms))
        extra = sorted(set(stats) - set(expected))
        if extra:
            problems.append("%d tensor(s) not in the declared config, e.g. %s" % (len(extra), show(extra[0])))
        acfg = self.adapter_config()
        listed = {str(t.get("name")): [int(d) for d in t.get("shape", [])] for t in acfg.get("tensors", [])}
        actual = {n: list(st.shape) for n, st in stats.items()}
        if listed != actual:
            problems.append("adapter_config.json tensors list differs from adapter.ckpt (%s)"
                            % show(", ".join(sorted(set(listed) ^ set(actual))[:2] or
                                             [n for n in listed if listed[n] != actual.get(n)][:2])))
        else:
            # every number adapter_config.json states: tensor norms, counts, dims
            derived = {"lora_rank": self.m("lora")["rank"], "lora_alpha": self.m("lora")["alpha"],
                       "scaling": float(self.m("lora")["alpha"]) / self.m("lora")["rank"],
                       "lora_dropout": self.m("lora")["dropout"],
                       "trainable_params": sum(st.numel for st in stats.values()),
                       "base_model": {"dims": dict(self.m("model")),
                                      "total_params": self.count()["total"]},
                       "tensors": [{"shape": list(stats[str(t.get("name"))].shape),
                                    "norm": stats[str(t.get("name"))].norm} for t in acfg.get("tensors", [])]}
            ckpt_fp = (acfg.get("base_model") or {}).get("checkpoint")
            if isinstance(ckpt_fp, dict):  # provenance, compared with the manifest in the config check
                derived["base_model"]["checkpoint"] = ckpt_fp
            src = acfg.get("source_checkpoint")
            if isinstance(src, dict):  # the full training checkpoint (not in a submission): provenance only
                derived["source_checkpoint"] = src
            problems += ["adapter_config.json: " + p for p in number_problems(acfg, derived, "$")]
        if problems:
            raise CheckFailed("; ".join(problems[:6]) + ("; ..." if len(problems) > 6 else ""))
        n = sum(numel(s) for s, _ in expected.values())
        return ("%d LoRA tensors, shapes = closed form, finite, every B's RMS >= %g x its A's (%d parameters)"
                % (len(expected), B_MIN_RMS_RATIO, n))

    def count(self):
        """params.summarize() from the adapter's tensors (trainable) and the closed form (total)."""
        if "count" not in self.cache:
            self.cache["count"] = mf.count_from_tensors(self.stats(), self.model_config())
        return self.cache["count"]

    def check_ratio(self):
        from lorakit.params import base_param_table, trainable_names

        got = self.count()
        stats = self.stats()
        problems = []
        # trainable = the LoRA tensors present in the adapter. Freeze rules in the config cannot move that count:
        # a LoRA tensor declared frozen is non-zero (it was trained, or A's random init), a base weight declared
        # trainable is not in the adapter, so the run is not what the count would say
        pet = self.pet_config()
        if pet.get("freeze_include") or pet.get("freeze_exclude"):
            names = list(base_param_table(self.model_config())) + list(self.expected_lora())
            rule = set(trainable_names(names, pet))
            frozen = [n for n in self.expected_lora() if n not in rule and stats.get(n) is not None
                      and stats[n].nonzero]
            base_trained = [n for n in rule if n not in self.expected_lora()]
            if frozen:
                problems.append("pet_config freeze_include/freeze_exclude freeze %d LoRA tensor(s) that are non-zero "
                                "in the adapter, e.g. %s: trainable is counted from the tensors (%d)"
                                % (len(frozen), frozen[0], got["trainable"]))
            if base_trained:
                problems.append("pet_config freeze_include/freeze_exclude make %d base weight(s) trainable, e.g. %s, "
                                "which the adapter does not hold" % (len(base_trained), sorted(base_trained)[0]))
        self.cache["params"] = got  # the score check uses the weights' numbers even when the manifest lies
        exact = dict(got, ratio_contest=got["trainable"] / got["contest_denominator"],
                     ratio_contest_full=got["trainable"] / got["contest_denominator"],
                     ratio_exact=got["trainable"] / float(got["total"]))
        problems += ["manifest " + p for p in number_problems(self.m("params"), exact, "params")]
        report = self.json_file(PARAMS_JSON)
        lora_cells = [n.rsplit(".", 1)[0] for n in self.expected_lora() if n.endswith("_a")]
        exact_report = dict(exact, lora_tensors=len(stats), lora_matrices=len(lora_cells),
                            lora_rank=self.m("lora")["rank"], config_trainable=got["trainable"],
                            config_total=got["total"], agrees_with_config=True)
        problems += number_problems(report, exact_report, PARAMS_JSON)
        if problems:
            raise CheckFailed("; ".join(problems[:6]))
        return "trainable %d (the adapter's LoRA tensors) / total %d: ratio_contest %.9g, ratio_exact %.9g" % (
            got["trainable"], got["total"], exact["ratio_contest"], exact["ratio_exact"])

    def gold_path(self):
        if self.args.gold:
            return Path(self.args.gold), "--gold %s" % Path(self.args.gold).name
        if (self.root / MATH_GOLD).is_file():
            return self.root / MATH_GOLD, "the gold copy inside the submission (pass --gold to use your own)"
        raise CheckFailed("no gold file: pass --gold FILE (the submission has no %s)" % MATH_GOLD)

    def judge_tolerance(self):
        from lorakit.metrics import DEFAULT_TOLERANCE, check_tolerance

        return check_tolerance(self.args.tolerance if self.args.tolerance is not None else DEFAULT_TOLERANCE,
                               "--tolerance")

    def judge_policy(self):
        return self.args.policy or contest.JUDGE_POLICY

    def check_math(self):
        from lorakit.metrics import POLICIES, score_predictions

        gold_path, gold_desc = self.gold_path()
        claimed = self.m("metrics", "math")
        gold_fp = claimed.get("gold", {})
        gold_sha = sha256_file(gold_path)
        if gold_fp.get("sha256") and gold_fp["sha256"] != gold_sha:
            raise CheckFailed("gold file %s (sha256 %s...) is not the one the submission was scored on "
                              "(manifest: %s, sha256 %s...)" % (show(gold_path.name), gold_sha[:12],
                                                                 show(gold_fp.get("name")),
                                                                 show(str(gold_fp["sha256"])[:12])))
        tol = self.judge_tolerance()
        if claimed.get("tolerance") is not None and not close(claimed["tolerance"], tol):
            raise CheckFailed("manifest tolerance %s differs from the judged tolerance %s" % (claimed["tolerance"], tol))
        if self.judge_policy() not in POLICIES:
            raise CheckFailed("policy %r is not one of %s" % (self.judge_policy(), ", ".join(POLICIES)))
        gold, gl = read_jsonl_rows(gold_path, self.limits.max_json_bytes, gold_path.name)
        pred, pl = read_jsonl_rows(self.path(MATH_PRED), self.limits.max_json_bytes, MATH_PRED)
        report = self.json_file(MATH_REPORT)
        misses = report.get("sample_misses")
        rep = score_predictions(gold, pred, tolerance=tol, gold_lines=gl, pred_lines=pl, gold_name=gold_path.name,
                                pred_name=MATH_PRED,
                                max_misses=min(len(misses), len(gold)) if isinstance(misses, list) else 20)
        self.cache["math"] = rep
        # every number the manifest's math section and eval/math_report.json state, recomputed
        derived = {"gold": {"bytes": gold_path.stat().st_size, "records": rep["total"]}, "total": rep["total"],
                   "tolerance": tol, "policies": rep["policies"], "integer_rounded": rep["integer_rounded"],
                   "families": {f: {"total": fs["total"], "policies": fs["policies"]}
                                for f, fs in rep["families"].items()}}
        problems = number_problems(claimed, derived, "manifest metrics.math")
        if set(claimed.get("families", {})) != set(rep["families"]):
            problems.append("families: manifest has %s, recomputed %s" % (show(sorted(claimed.get("families", {})),
                                                                               300), sorted(rep["families"])))
        if set(claimed.get("policies", {})) != set(rep["policies"]):
            problems.append("policies: manifest has %s, recomputed %s" % (show(sorted(claimed.get("policies", {})),
                                                                               200), sorted(rep["policies"])))
        derived_report = dict(rep)
        if isinstance(report.get("score"), dict):  # score_math --params: the score for the weights' ratio
            from lorakit.metrics import contest_score

            ratio = mf.score_ratio(self.count())
            derived_report["score"] = {"ratio": ratio, "by_policy": {
                p: contest_score(rep["policies"][p]["accuracy"], ratio) for p in POLICIES}}
        problems += number_problems(report, derived_report, MATH_REPORT)
        if problems:
            raise CheckFailed("; ".join(problems[:6]))
        if claimed.get("primary_policy") not in rep["policies"]:
            raise CheckFailed("primary_policy %s is not a scoring policy" % show(repr(claimed.get("primary_policy"))))
        pol = self.judge_policy()
        head = rep["policies"][pol]
        return "%d test ids each scored once against %s; %s accuracy %.4f (%d/%d); every number of the manifest and " \
               "%s recomputed" % (rep["total"], gold_desc, pol, head["accuracy"], head["correct"], rep["total"],
                                  MATH_REPORT)

    def judge_thresholds(self):
        """(f1, em, description, note) of the SQuAD gate: the judge's --squad-thresholds, else the contest's."""
        if self.args.squad_thresholds:
            return self.args.squad_thresholds[0], self.args.squad_thresholds[1], "judge thresholds", ""
        f1, em = contest.JUDGE_SQUAD_THRESHOLDS
        return f1, em, "the contest's thresholds", " (the default; --squad-thresholds sets the judge's)"

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
                              % (show(rec_path.name), show(fp.get("name"))))
        records, rl = read_jsonl_rows(rec_path, self.limits.max_json_bytes, rec_path.name)
        preds, pl = read_jsonl_rows(self.path(SQUAD_PRED), self.limits.max_json_bytes, SQUAD_PRED)
        rep = squad_tool.score_squad(list(zip(rl, records)), list(zip(pl, preds)), rec_path.name, SQUAD_PRED)
        got = {"records": rep["total"], "f1": float(rep["emf1"]["F1"]), "em": float(rep["emf1"]["Em"])}
        # the team's own gate (thresholds they state) is a statement, not a result: `passed` is re-derived under
        # it; the verdict below uses the judge's thresholds only
        thr = claimed.get("thresholds") if isinstance(claimed.get("thresholds"), dict) else {}
        team_thr = {k: thr.get(k) for k in ("f1", "em") if is_number(thr.get(k))}
        derived = {"records": rep["total"], "f1": got["f1"], "em": got["em"],
                   "records_file": {"bytes": rec_path.stat().st_size, "records": rep["total"]},
                   "official": {"f1": rep["squad_v1.1"]["f1"], "em": rep["squad_v1.1"]["exact_match"]},
                   "thresholds": team_thr}
        if len(team_thr) == 2:
            derived["passed"] = got["f1"] >= team_thr["f1"] and got["em"] >= team_thr["em"]
        problems = number_problems(claimed, derived, "manifest metrics.squad")
        report = self.json_file(SQUAD_REPORT)
        derived_report = dict(rep)
        gate = report.get("gate")
        if isinstance(gate, dict):
            team = {k: gate.get(k) for k in ("f1_min", "em_min") if is_number(gate.get(k))}
            derived_report["gate"] = dict(team, f1=got["f1"], em=got["em"])
            if len(team) == 2:
                derived_report["gate"]["pass"] = got["f1"] >= team["f1_min"] and got["em"] >= team["em_min"]
        problems += number_problems(report, derived_report, SQUAD_REPORT)
        f1_min, em_min, thr_desc, note = self.judge_thresholds()
        passed = got["f1"] >= f1_min and got["em"] >= em_min
        if not passed:
            problems.append("gate not met: F1 %.4f / EM %.4f below %s F1 %s / EM %s%s" % (
                got["f1"], got["em"], thr_desc, f1_min, em_min, note))
        if problems:
            raise CheckFailed("; ".join(problems[:6]))
        self.cache["squad"] = got
        return "%d records (%s): EmF1 F1 %.4f EM %.4f >= %s %s / %s; gate passed" % (
            got["records"], rec_desc, got["f1"], got["em"], thr_desc, f1_min, em_min)

    def check_score(self):
        from lorakit.metrics import contest_score

        if "math" not in self.cache or "params" not in self.cache:
            raise CheckFailed("not recomputed: the math or ratio check failed")
        claimed = self.m("metrics", "score")
        policy = self.judge_policy()
        if claimed.get("policy") != policy:
            raise CheckFailed("the score uses policy %s, the judge's policy is %r%s" % (
                show(repr(claimed.get("policy")), 60), policy,
                "" if self.args.policy else " (the contest's; --policy / POLICY= for another)"))
        if claimed.get("policy") != self.m("metrics", "math", "primary_policy"):
            raise CheckFailed("score policy %s differs from the math primary policy" % show(repr(claimed.get("policy"))))
        acc = self.cache["math"]["policies"][policy]["accuracy"]
        ratio = mf.score_ratio(self.cache["params"])
        value = contest_score(acc, ratio)
        problems = number_problems(claimed, {"accuracy": acc, "ratio": ratio, "value": value}, "manifest metrics.score")
        if problems:
            raise CheckFailed("; ".join(problems))
        return "score %.6f = (1 - %.9g) * 0.3 + %.6f * 0.7 (%s)" % (value, ratio, acc, policy)

    def check_report(self):
        path = self.path(REPORT_MD)
        size = path.stat().st_size
        if size > MAX_REPORT_BYTES:
            raise CheckFailed("REPORT.md: %d bytes, over the %d-byte limit" % (size, MAX_REPORT_BYTES))
        with open(str(path), "rb") as fh:
            text = fh.read(MAX_REPORT_BYTES + 1).decode("utf-8", "replace")
        value = self.m("metrics", "score", "value")
        if not is_number(value) or not math.isfinite(value):
            raise CheckFailed("manifest score %s is not a finite number" % show(repr(value), 40))
        score = "%.6f" % value
        trainable = str(self.m("params", "trainable"))
        # whole numbers only: "0.8" must not be found inside "0.81", nor "inf" inside "inference"
        for label, token in (("score", score), ("trainable count", trainable)):
            if not re.search(r"(?<![\w.])%s(?![\w]|\.\d)" % re.escape(token), text):
                raise CheckFailed("REPORT.md does not state the manifest's %s %s" % (label, show(token, 40)))
        return "REPORT.md states score %s and trainable %s" % (score, trainable)

    def check_base(self):
        from lorakit.params import base_param_table

        rel = self.m("base_model").get("packaged")
        if not rel:
            return ("SKIP", "no base weights packaged (the base is the public checkpoint %s)"
                    % show((self.m("base_model").get("checkpoint") or {}).get("name") or "named by the team"))
        if mf.relpath_problem(rel):
            raise CheckFailed("base_model.packaged %s: %s" % (show(repr(rel)), mf.relpath_problem(rel)))
        path = self.path(rel)
        expected = base_param_table(self.model_config())
        try:
            stats = mf.ckpt_stats(path, self.limits.max_member_bytes,
                                  load=lambda name, shape: name in expected and tuple(shape) == tuple(expected[name][0]))
        except KitError as exc:
            raise CheckFailed(named(exc, path, rel)) from None
        problems = []
        for name, (shape, _dtype) in expected.items():
            if name not in stats:
                problems.append("%s: missing" % name)
            elif tuple(stats[name].shape) != tuple(shape):
                problems.append("%s: shape %s, closed form %s" % (name, tuple(stats[name].shape), tuple(shape)))
        extra = sorted(set(stats) - set(expected))
        if extra:
            problems.append("%d tensor(s) that are not base weights, e.g. %s" % (len(extra), show(extra[0])))
        bad = [n for n, st in stats.items() if st.finite is False]
        if bad:
            problems.append("non-finite values in %s" % bad[0])
        if problems:
            raise CheckFailed("; ".join(problems[:5]))
        self.cache["base"] = path
        return "%s: %d frozen base tensors, shapes = closed form of the model (random-init run)" % (rel, len(stats))

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
    with pid_tempdir("kit-rerun-") as workdir:
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
    policy = v.judge_policy()
    new_rep = score_predictions(gold_sub, new_rows, tolerance=v.judge_tolerance(), gold_name=test_path.name,
                                pred_name="rerun")
    got = new_rep["policies"][policy]["correct"]
    detail = "%d records re-predicted: %d/%d completions identical; %s correct %d/%d" % (
        len(ids), same, len(ids), policy, got, len(ids))
    missing_old = [i for i in ids if i not in old]
    if not missing_old:
        old_rep = score_predictions(gold_sub, [old[i] for i in ids], tolerance=v.judge_tolerance(),
                                    gold_name=test_path.name, pred_name=MATH_PRED)
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
        return None, show(str(src)), ["%s: is a symbolic link" % show(src.name)]
    if src.is_dir():
        return src, "folder", []
    if not src.is_file():
        raise KitError("%s: no such folder or zip" % show(str(src)))
    problems = mf.extract_zip(src, workdir, limits)
    if problems:
        return None, "zip", problems
    top = [p for p in Path(workdir).iterdir()]
    if (Path(workdir) / mf.MANIFEST_NAME).is_file():
        return Path(workdir), "zip", []
    if len(top) == 1 and top[0].is_dir():
        return top[0], "zip, folder %s/" % top[0].name, []
    return Path(workdir), "zip", []


def _finite_float(text):
    """argparse type: a finite float (`inf`, `nan`, `1e999` are refused in one line)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError("%r is not a number" % text) from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError("%r is not a finite number" % text)
    return value


class _Terminated(Exception):
    pass


def _on_signal(signum, _frame):
    raise _Terminated(signum)


def main(argv=None):
    from lorakit.metrics import POLICIES

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("submission", help="submission folder (submission/<team>) or its zip")
    ap.add_argument("--gold", help="math gold test file (JSONL problem, solution[, id]); default: the packaged copy")
    ap.add_argument("--squad-records", help="SQuAD eval records (JSONL from squad.py prepare); default: packaged copy")
    ap.add_argument("--squad-thresholds", nargs=2, type=_finite_float, metavar=("F1", "EM"),
                    help="the judge's SQuAD gate (default: the contest's %s %s; thresholds written in the submission "
                         "are never used)" % contest.JUDGE_SQUAD_THRESHOLDS)
    ap.add_argument("--tolerance", type=_finite_float, default=None,
                    help="relative tolerance of the `tolerance` policy, in [0, 1) (default 1e-4)")
    ap.add_argument("--policy", default=None, choices=POLICIES,
                    help="math policy the score is judged with (default: the contest's, %s)" % contest.JUDGE_POLICY)
    ap.add_argument("--rerun", action="store_true", help="re-run inference with the submitted adapter and compare")
    ap.add_argument("--test", help="problems file for --rerun (default: the gold file)")
    ap.add_argument("--rerun-limit", type=int, default=0, help="--rerun only the first N test records (0: all)")
    ap.add_argument("--base-checkpoint", help="base model checkpoint for --rerun (default: the base packaged with a "
                                              "random-init run)")
    ap.add_argument("--tokenizer", help="tokenizer.model for --rerun (default: `tiny` when the run used it)")
    ap.add_argument("--rerun-agreement", type=_finite_float, default=1.0,
                    help="--rerun: share of completions that must be identical (default 1.0)")
    ap.add_argument("--rerun-tolerance", type=int, default=0,
                    help="--rerun: records by which the re-run's correct count may differ (default 0)")
    ap.add_argument("--schema", help="manifest schema (default: the kit's submission/schema/manifest.schema.json)")
    ap.add_argument("--max-members", type=int, default=mf.DEFAULT_MAX_MEMBERS, help="most files allowed")
    ap.add_argument("--max-member-bytes", type=int, default=mf.DEFAULT_MAX_MEMBER_BYTES, help="largest file allowed")
    ap.add_argument("--max-total-bytes", type=int, default=mf.DEFAULT_MAX_TOTAL_BYTES, help="largest total allowed")
    ap.add_argument("--max-json-bytes", type=int, default=mf.DEFAULT_MAX_JSON_BYTES,
                    help="largest JSON/JSONL/text file (the manifest: %d, a YAML: %d bytes)"
                         % (mf.MAX_MANIFEST_BYTES, mf.MAX_YAML_BYTES))
    ap.add_argument("--json", action="store_true", help="print one JSON object on stdout instead of lines")
    ap.add_argument("--json-out", metavar="FILE", help="also write the JSON object to FILE (the lines still print)")
    args = ap.parse_args(argv)
    if args.tolerance is not None:
        from lorakit.metrics import check_tolerance

        check_tolerance(args.tolerance, "--tolerance")
    limits = mf.Limits(args.max_members, args.max_member_bytes, args.max_total_bytes, args.max_json_bytes)

    # SIGTERM / SIGHUP (a judge's timeout, a closed terminal) unwind like Ctrl-C so the extraction folder is
    # removed; after a SIGKILL the next run sweeps it (lorakit.io.pid_tempdir)
    handlers = {}
    for sig in (signal.SIGTERM, signal.SIGHUP):
        try:
            handlers[sig] = signal.signal(sig, _on_signal)
        except (ValueError, OSError):  # not the main thread
            pass
    try:
        with pid_tempdir("kit-verify-") as work:
            root, desc, problems = open_submission(args.submission, limits, work)
            if root is None:
                v = Verifier(work, args, desc)
                v.add("input", "FAIL", "%s refused: %s%s" % (desc, "; ".join(problems[:10]),
                                                              "; ... (%d problems)" % len(problems)
                                                              if len(problems) > 10 else ""))
            else:
                v = Verifier(root, args, desc)
                v.add("input", "PASS", "%s opened as %s" % (show(Path(args.submission).name), desc))
                v.run()
            results = v.results
    except _Terminated as exc:
        print("verify: stopped by signal %d; temporary files removed" % exc.args[0], file=sys.stderr)
        return 128 + exc.args[0]
    finally:
        for sig, old in handlers.items():
            signal.signal(sig, old)
    failed = [r for r in results if r.status == "FAIL"]
    passed = [r for r in results if r.status == "PASS"]
    skipped = [r for r in results if r.status == "SKIP"]
    ok = not failed
    name = show(Path(args.submission).name)
    summary = "%s: %d passed, %d failed, %d skipped -> %s" % (
        name, len(passed), len(failed), len(skipped), "VERIFIED" if ok else "NOT VERIFIED")
    doc = {"submission": name, "verified": ok, "passed": len(passed), "failed": len(failed),
           "skipped": len(skipped), "checks": [r.as_dict() for r in results]}
    if args.json_out:
        with atomic_open(args.json_out) as fh:
            fh.write(json.dumps(doc, ensure_ascii=False) + "\n")
    if args.json:
        print(json.dumps(doc, ensure_ascii=False))
    else:
        print(summary)
    sys.stdout.flush()
    return 0 if ok else 1


if __name__ == "__main__":
    run_main(main)
