"""The checks a submission must pass, as one registry: CHECKS names each check, its group, what it needs and
what it verifies. verify.py runs them (its doc, --help and tests are derived from CHECKS), and package.py runs
them on the folder it staged before publishing it; the numbers are recomputed with lorakit.recompute, the code
package.py wrote them with.

The submission is hostile input. Nothing from it is executed, imported or unpickled: JSON strictly (no duplicate
keys, NaN, Infinity, overflowing or 40+-digit numbers, bounded nesting), YAML with a safe loader after its events
were checked (nesting, alias bombs), checkpoints through the bounded protobuf reader of lorakit.ckpt_io, regexes
with a time limit; every file read has a size cap; names are printed escaped.
"""

import datetime
import math
import os
import re
import sys
import textwrap
from pathlib import Path

from . import contest, recompute
from . import manifest as mf
from .config import load_config, model_config
from .io import KitError, iter_jsonl, pid_tempdir, sha256_file, show
from .layout import SUBMISSION as S
from .math_metrics import DEFAULT_TOLERANCE, POLICIES, check_tolerance, score_predictions, score_section
from .params import base_param_table, lora_param_table, numel, trainable_names
from .patches import read_series
from .paths import TOOLS, YAML_DIR
from .records import DataReport, LoraSpec, PredictRecord, RunRecord, tokenizer_mismatch
from .squad_metrics import score_squad

REL_TOL = 1e-9
REGEX_TIMEOUT = 2.0  # seconds for matching the submitted target_modules / exclude_layers against the cell names
MAX_REPORT_BYTES = 4 << 20
A_MIN_RMS = 1e-5  # LoRA A starts at RMS ~0.01 (MindFormers: normal(0.01)); training does not shrink it 1000x
B_MIN_RMS_RATIO = 1e-6  # one Adam step at lr 1e-7 already moves B by ~1e-7 per value, ~1e-5 x A's RMS


# ---------------------------------------------------------------- the registry

class Check:
    """One check: its name (the PASS/FAIL line's), group, the checks whose numbers it uses (`needs`; EARLIER: it
    runs only when no earlier check failed), whether a failure ends the run (`stops`), the Options flag that
    asks for it (`option`; SKIP with `skip` otherwise), and what it verifies."""

    __slots__ = ("name", "group", "needs", "stops", "doc", "option", "skip")

    def __init__(self, name, group, doc, needs=(), stops=False, option=None, skip=None):
        self.name, self.group, self.doc, self.needs, self.stops = name, group, doc, tuple(needs), stops
        self.option, self.skip = option, skip


EARLIER = ("*",)
GROUPS = ("integrity", "config", "numbers", "rerun")
CHECKS = [
    Check("input", "integrity", "the folder or zip is safe to read: no zip-slip (`../x`), absolute, backslash or "
          "over-long names, symlinks, special files, duplicate members, members or totals over the size limits, "
          "too many members; a zip is extracted only when its members and sizes are exactly what its manifest "
          "declares", stops=True),
    Check("layout", "integrity", "manifest.json at the top; every file of the folder safe (no symlink, special "
          "file, bad name, file or total over the limits)", needs=("input",), stops=True),
    Check("manifest", "integrity", "manifest.json present and strict JSON", needs=("layout",), stops=True),
    Check("schema", "integrity", "the manifest validates against manifest.schema.json, `created` is a real past UTC "
          "time", needs=("manifest",)),
    Check("files", "integrity", "every declared file present with its byte count and sha256; nothing missing, "
          "nothing undeclared", needs=("manifest",)),
    Check("paths", "integrity", "no absolute path in any text file (a text file too big to scan fails)",
          needs=("layout",)),
    Check("patches", "integrity", "patches/series and the patch files match the manifest and the patches "
          "train/run.json says training applied", needs=("manifest",)),
    Check("config", "config", "train and eval yaml pet_config == adapter_config.json == manifest lora; model shapes "
          "agree; provenance fingerprints agree; training data and predictions from one tokenizer",
          needs=("manifest",)),
    Check("adapter", "config", "every LoRA tensor of the declared config present, shape = closed form, finite, A "
          "and B of a meaningful size (B's RMS >= 1e-6 x A's); no other tensor; adapter_config.json's numbers",
          needs=("manifest",)),
    Check("base", "config", "(random-init runs) the packaged frozen base: shapes = closed form, finite",
          needs=("manifest",)),
    Check("ratio", "numbers", "trainable = the LoRA tensors in the adapter (not the config's freeze rules); every "
          "number of the manifest's params and eval/params.json recomputed (ratios to 1e-6 relative)",
          needs=("manifest",)),
    Check("math", "numbers", "accuracy per policy and family recomputed from raw predictions + gold; every id "
          "scored once; every number of the manifest's math section and eval/math_report.json recomputed",
          needs=("manifest",)),
    Check("squad", "numbers", "EmF1 (and official SQuAD v1.1) recomputed from raw predictions + records, every "
          "number of the manifest's squad section and eval/squad_report.json; the gate with the judge's thresholds "
          "(default: the contest's %s / %s; thresholds in the submission are never used)"
          % contest.JUDGE_SQUAD_THRESHOLDS, needs=("manifest",)),
    Check("score", "numbers", "%s recomputed from the math and ratio checks' numbers with the judge's policy "
          "(default: the contest's)" % contest.SCORE_FORMULA, needs=("math", "ratio")),
    Check("report", "numbers", "REPORT.md states the manifest's score and trainable count", needs=("manifest",)),
    Check("rerun", "rerun", "(--rerun) inference re-run with the submitted adapter through tools/predict.py; "
          "completions and accuracy compared (only when no earlier check failed)", needs=EARLIER, option="rerun",
          skip="inference not re-run (pass --rerun, or RERUN=1 to make verify)"),
]
# the cache entry in which a check leaves the numbers it recomputed (for the checks that need them)
PROVIDES = {"math": "math", "ratio": "params"}


def describe(width=116):
    """The registry as text: one paragraph per check, grouped (verify.py's doc and --help)."""
    out = []
    for group in GROUPS:
        out.append("%s:" % group)
        for c in CHECKS:
            if c.group == group:
                out += textwrap.wrap(c.doc, width, initial_indent="  %-9s " % c.name, subsequent_indent=" " * 12)
    return "\n".join(out)


# ---------------------------------------------------------------- the judge's options

class Options:
    """What the judge decides (verify.py's command line; package.py sets the team's own gate and policy)."""

    DEFAULTS = dict(gold=None, squad_records=None, squad_thresholds=None, tolerance=None, policy=None, rerun=False,
                    test=None, rerun_limit=0, base_checkpoint=None, tokenizer=None, rerun_agreement=1.0,
                    rerun_tolerance=0, schema=None, max_members=mf.DEFAULT_MAX_MEMBERS,
                    max_member_bytes=mf.DEFAULT_MAX_MEMBER_BYTES, max_total_bytes=mf.DEFAULT_MAX_TOTAL_BYTES,
                    max_json_bytes=mf.DEFAULT_MAX_JSON_BYTES)

    def __init__(self, **values):
        unknown = set(values) - set(self.DEFAULTS)
        if unknown:
            raise TypeError("unknown verify options: %s" % ", ".join(sorted(unknown)))
        for key, default in self.DEFAULTS.items():
            setattr(self, key, values.get(key, default))

    @classmethod
    def from_namespace(cls, ns):
        return cls(**{k: getattr(ns, k) for k in cls.DEFAULTS if hasattr(ns, k)})

    def limits(self):
        return mf.Limits(self.max_members, self.max_member_bytes, self.max_total_bytes, self.max_json_bytes)


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
                if not contest.ratio_matches(c, d):
                    problems.append("%s=%s, recomputed %s" % (path, c, contest.ratio_text(d)))
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
    """Runs the CHECKS on one opened submission folder; `args` are the judge's Options."""

    def __init__(self, root, args, manifest_source, echo=None):
        self.root = Path(root)
        self.args = args
        self.limits = args.limits()
        self.results = []
        self.manifest = None
        self.source = manifest_source
        self.files_ok = False
        self.cache = {}
        self.echo = echo  # called with each result line as it is decided (verify.py prints them)

    # ---------------------------------------------------------------- plumbing
    def add(self, name, status, detail):
        r = Result(name, status, detail)
        self.results.append(r)
        if self.echo is not None:
            self.echo(r.line())
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
        series_rel = S.series
        names = []
        if (self.root / series_rel).exists():
            names = [n for _, n in read_series(self.path(series_rel), self.limits.max_json_bytes,
                                                    name=series_rel)]
        if names != list(declared.get("series", [])):
            raise CheckFailed("patches/series lists %s, manifest says %s" % (show(names, 300),
                                                                            show(declared.get("series"), 300)))
        files = {e["path"]: e for e in self.m("files")}
        for name in names:
            if mf.relpath_problem(name) or "/" in name:
                raise CheckFailed("patches/series: bad patch name %s" % show(repr(name)))
            if S.patches_dir + "/" + name not in files:
                raise CheckFailed("patches/%s: listed in series but not in the submission" % show(name))
        for e in declared.get("files", []):
            if files.get(e["path"], {}).get("sha256") != e["sha256"]:
                raise CheckFailed("%s: patch hash differs from the file list" % e["path"])
        trained = self.run_record().trained_patches
        if trained:
            was = trained
            now = [(n, files.get(S.patches_dir + "/" + n, {}).get("sha256")) for n in names]
            if was != now:
                raise CheckFailed(S.run_record + " records patches %s applied in training, the submission carries %s"
                                  % ([w[0] for w in was], names))
            return "%d MindFormers patch(es) in series order, hashes match the training run's" % len(names)
        return "%d MindFormers patch(es) in series order, hashes match" % len(names)

    def adapter_config(self):
        if "adapter_config" not in self.cache:
            from . import ckpt_io

            obj = self.json_file(S.adapter_config)  # size-capped JSON parse first, then its schema
            errors = mf.schema_errors(obj, mf.load_schema(mf.SCHEMA_DIR / mf.ADAPTER_SCHEMA_NAME))
            if errors:
                raise CheckFailed("%s: %d schema error(s): %s" % (S.adapter_config, len(errors), "; ".join(errors[:3])))
            try:
                self.cache["adapter_config"] = ckpt_io.read_adapter_config(self.path(S.adapter_config))
            except KitError as exc:
                raise CheckFailed(str(exc).replace(str(self.root) + os.sep, "")) from None
        return self.cache["adapter_config"]

    def check_config(self):
        train = self.yaml_file(S.train_config)
        evalc = self.yaml_file(S.eval_config)
        views = {}
        shapes = {}
        folded_eval = False
        for rel, cfg in ((S.train_config, train), (S.eval_config, evalc)):
            mc = cfg.get("model", {}).get("model_config") if isinstance(cfg.get("model"), dict) else None
            if not isinstance(mc, dict):
                raise CheckFailed("%s: no model.model_config" % rel)
            shapes[rel] = {k: mc.get(k) for k in self.m("model")}
            if rel == S.eval_config and not mc.get("pet_config"):
                folded_eval = True  # inference on the folded checkpoint: a plain network, no LoRA cells
                continue
            views[rel] = LoraSpec.from_pet_config(mc.get("pet_config")).view()
        views[S.adapter_config] = LoraSpec.from_pet_config(self.adapter_config()).view()
        views["manifest.lora"] = dict(self.m("lora"))
        ref = views[S.adapter_config]
        diffs = []
        for src, view in views.items():
            for key in LoraSpec.FIELDS:
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
        tok = tokenizer_mismatch(self.data_report(), self.predict_record())
        if tok:
            raise CheckFailed(show(tok))
        return detail + "; " + self.template_note()

    def provenance_problems(self):
        """Fingerprints of files outside the submission (training data, base checkpoint) cannot be re-derived
        here; they must at least agree with the records they were copied from (train/run.json,
        adapter_config.json). --rerun checks the base checkpoint's against the real file."""
        problems = []
        claimed = self.m("data").get("files") or []
        if (self.root / S.run_record).is_file():
            run_data = self.run_record().data_section
            recorded = run_data.get("files")
            if isinstance(recorded, list):
                want = [{"name": Path(str(f.get("name") or f.get("path") or "")).name, "bytes": f.get("bytes"),
                         "sha256": f.get("sha256")} for f in recorded if isinstance(f, dict)]
                got = [{"name": f.get("name"), "bytes": f.get("bytes"), "sha256": f.get("sha256")} for f in claimed]
                if got != want:
                    problems.append("manifest data.files differ from the training data %s records" % S.run_record)
        elif claimed:
            problems.append("manifest data.files: no %s to check them against" % S.run_record)
        base = self.adapter_config().get("base_model")
        recorded = base.get("checkpoint") if isinstance(base, dict) else None
        claimed = self.m("base_model").get("checkpoint")
        if (claimed is None) != (recorded is None) or (claimed is not None and (
                claimed.get("bytes") != recorded.get("bytes") or claimed.get("sha256") != recorded.get("sha256"))):
            problems.append("manifest base_model.checkpoint differs from adapter_config.json base_model.checkpoint")
        return problems

    def run_record(self):
        """train/run.json as a RunRecord (empty when the submission has none)."""
        return RunRecord(self.json_file(S.run_record) if (self.root / S.run_record).is_file() else {})

    def data_report(self):
        return DataReport(self.json_file(S.data_report) if (self.root / S.data_report).is_file() else {})

    def predict_record(self):
        return PredictRecord(self.json_file(S.predict_record) if (self.root / S.predict_record).is_file() else {})

    def template_note(self):
        """Which prompt template training and inference used (a train/inference mismatch cost contest teams)."""
        train_t, infer_t = self.data_report().template, self.predict_record().template
        if train_t and infer_t:
            if train_t == infer_t:
                return "prompt template %s in training and inference" % show(repr(train_t), 40)
            return "NOTE: training template %s, inference template %s" % (show(repr(train_t), 40),
                                                                          show(repr(infer_t), 40))
        return "prompt templates not recorded"

    def model_config(self):
        mc = dict(self.yaml_file(S.train_config)["model"]["model_config"])
        mc.update(self.m("model"))
        return mc

    def pet_config(self):
        """The train yaml's pet_config with the LoRA the manifest declares (what the adapter must hold)."""
        base = self.yaml_file(S.train_config)["model"]["model_config"].get("pet_config")
        return LoraSpec.from_manifest(self.m("lora")).to_pet_config(base)

    def stats(self):
        """lorakit.manifest.ckpt_stats of the adapter: values read (in bounded chunks) only for tensors with
        the declared config's names and shapes, so a lying file costs no more than the honest one would."""
        if "stats" not in self.cache:
            path = self.path(S.adapter)
            try:
                expected = self.expected_lora()
            except CheckFailed:
                expected = {}
            try:
                self.cache["stats"] = mf.ckpt_stats(
                    path, self.limits.max_member_bytes,
                    load=lambda name, shape: name in expected and tuple(shape) == tuple(expected[name][0]))
            except KitError as exc:
                raise CheckFailed(named(exc, path, S.adapter)) from None
        return self.cache["stats"]

    def check_adapter(self):
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
        exact = recompute.exact_params(got)
        problems += ["manifest " + p for p in number_problems(self.m("params"), exact, "params")]
        report = self.json_file(S.params)
        lora_cells = [n.rsplit(".", 1)[0] for n in self.expected_lora() if n.endswith("_a")]
        exact_report = dict(exact, lora_tensors=len(stats), lora_matrices=len(lora_cells),
                            lora_rank=self.m("lora")["rank"], config_trainable=got["trainable"],
                            config_total=got["total"], agrees_with_config=True)
        problems += number_problems(report, exact_report, S.params)
        if problems:
            raise CheckFailed("; ".join(problems[:6]))
        return "trainable %d (the adapter's LoRA tensors) / total %d: ratio_contest %s, ratio_exact %s" % (
            got["trainable"], got["total"], contest.ratio_text(exact["ratio_contest"]),
            contest.ratio_text(exact["ratio_exact"]))

    def gold_path(self):
        if self.args.gold:
            return Path(self.args.gold), "--gold %s" % Path(self.args.gold).name
        if (self.root / S.math_gold).is_file():
            return self.root / S.math_gold, "the gold copy inside the submission (pass --gold to use your own)"
        raise CheckFailed("no gold file: pass --gold FILE (the submission has no %s)" % S.math_gold)

    def judge_tolerance(self):
        return check_tolerance(self.args.tolerance if self.args.tolerance is not None else DEFAULT_TOLERANCE,
                               "--tolerance")

    def judge_policy(self):
        return self.args.policy or contest.JUDGE_POLICY

    def check_math(self):
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
        pred, pl = read_jsonl_rows(self.path(S.predictions), self.limits.max_json_bytes, S.predictions)
        report = self.json_file(S.math_report)
        misses = report.get("sample_misses")
        rep = score_predictions(gold, pred, tolerance=tol, gold_lines=gl, pred_lines=pl, gold_name=gold_path.name,
                                pred_name=S.predictions,
                                max_misses=min(len(misses), len(gold)) if isinstance(misses, list) else 20)
        self.cache["math"] = rep
        # every number the manifest's math section and eval/math_report.json state, recomputed
        problems = number_problems(claimed, recompute.math_section(rep, gold_path, tol), "manifest metrics.math")
        if set(claimed.get("families", {})) != set(rep["families"]):
            problems.append("families: manifest has %s, recomputed %s" % (show(sorted(claimed.get("families", {})),
                                                                               300), sorted(rep["families"])))
        if set(claimed.get("policies", {})) != set(rep["policies"]):
            problems.append("policies: manifest has %s, recomputed %s" % (show(sorted(claimed.get("policies", {})),
                                                                               200), sorted(rep["policies"])))
        derived_report = dict(rep)
        if isinstance(report.get("score"), dict):  # score_math --params: the score for the weights' ratio
            derived_report["score"] = score_section(rep["policies"], contest.score_ratio(self.count()))
        problems += number_problems(report, derived_report, S.math_report)
        if problems:
            raise CheckFailed("; ".join(problems[:6]))
        if claimed.get("primary_policy") not in rep["policies"]:
            raise CheckFailed("primary_policy %s is not a scoring policy" % show(repr(claimed.get("primary_policy"))))
        pol = self.judge_policy()
        head = rep["policies"][pol]
        return "%d test ids each scored once against %s; %s accuracy %.4f (%d/%d); every number of the manifest and " \
               "%s recomputed" % (rep["total"], gold_desc, pol, head["accuracy"], head["correct"], rep["total"],
                                  S.math_report)

    def judge_thresholds(self):
        """(f1, em, description, note) of the SQuAD gate: the judge's --squad-thresholds, else the contest's."""
        if self.args.squad_thresholds:
            return self.args.squad_thresholds[0], self.args.squad_thresholds[1], "judge thresholds", ""
        f1, em = contest.JUDGE_SQUAD_THRESHOLDS
        return f1, em, "the contest's thresholds", " (the default; --squad-thresholds sets the judge's)"

    def check_squad(self):
        claimed = self.m("metrics", "squad")
        if self.args.squad_records:
            rec_path, rec_desc = Path(self.args.squad_records), "--squad-records"
        elif (self.root / S.squad_records).is_file():
            rec_path, rec_desc = self.root / S.squad_records, "records copy inside the submission"
        else:
            raise CheckFailed("no SQuAD records: pass --squad-records FILE (the submission has no %s)" % S.squad_records)
        fp = claimed.get("records_file") or {}
        if fp.get("sha256") and fp["sha256"] != sha256_file(rec_path):
            raise CheckFailed("SQuAD records %s differ from the ones the submission was scored on (%s)"
                              % (show(rec_path.name), show(fp.get("name"))))
        records, rl = read_jsonl_rows(rec_path, self.limits.max_json_bytes, rec_path.name)
        preds, pl = read_jsonl_rows(self.path(S.squad_predictions), self.limits.max_json_bytes, S.squad_predictions)
        rep = score_squad(list(zip(rl, records)), list(zip(pl, preds)), rec_path.name, S.squad_predictions)
        f1, em = recompute.emf1(rep)
        got = {"records": rep["total"], "f1": f1, "em": em}
        # the team's own gate (thresholds they state) is a statement, not a result: `passed` is re-derived under
        # it; the verdict below uses the judge's thresholds only
        thr = claimed.get("thresholds") if isinstance(claimed.get("thresholds"), dict) else {}
        team_thr = {k: thr.get(k) for k in ("f1", "em") if is_number(thr.get(k))}
        problems = number_problems(claimed, recompute.squad_section(rep, rec_path, team_thr), "manifest metrics.squad")
        report = self.json_file(S.squad_report)
        derived_report = dict(rep)
        gate = report.get("gate")
        if isinstance(gate, dict):
            team = {k: gate.get(k) for k in ("f1_min", "em_min") if is_number(gate.get(k))}
            derived_report["gate"] = dict(team, f1=got["f1"], em=got["em"])
            if len(team) == 2:
                derived_report["gate"]["pass"] = contest.gate_passes(f1, em, team["f1_min"], team["em_min"])
        problems += number_problems(report, derived_report, S.squad_report)
        f1_min, em_min, thr_desc, note = self.judge_thresholds()
        if not contest.gate_passes(f1, em, f1_min, em_min):
            problems.append("gate not met: F1 %.4f / EM %.4f below %s F1 %s / EM %s%s" % (
                got["f1"], got["em"], thr_desc, f1_min, em_min, note))
        if problems:
            raise CheckFailed("; ".join(problems[:6]))
        self.cache["squad"] = got
        return "%d records (%s): EmF1 F1 %.4f EM %.4f >= %s %s / %s; gate passed" % (
            got["records"], rec_desc, got["f1"], got["em"], thr_desc, f1_min, em_min)

    def check_score(self):
        claimed = self.m("metrics", "score")
        policy = self.judge_policy()
        if claimed.get("policy") != policy:
            raise CheckFailed("the score uses policy %s, the judge's policy is %r%s" % (
                show(repr(claimed.get("policy")), 60), policy,
                "" if self.args.policy else " (the contest's; --policy / POLICY= for another)"))
        if claimed.get("policy") != self.m("metrics", "math", "primary_policy"):
            raise CheckFailed("score policy %s differs from the math primary policy" % show(repr(claimed.get("policy"))))
        derived = recompute.score_section(self.cache["math"], self.cache["params"], policy)
        problems = number_problems(claimed, derived, "manifest metrics.score")
        if problems:
            raise CheckFailed("; ".join(problems))
        return "score %.6f = %s (%s)" % (derived["value"], contest.SCORE_FORMULA.replace("ratio", contest.ratio_text(
            derived["ratio"])).replace("accuracy", "%.6f" % derived["accuracy"]), policy)

    def check_report(self):
        path = self.path(S.report)
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
        return rerun(self)

    def run(self):
        """Every check of CHECKS after `input`, in order: a `stops` check that does not pass ends the run; a check
        whose `needs` did not recompute their numbers fails without running; rerun needs no earlier FAIL."""
        for c in CHECKS[1:]:
            if c.option and not getattr(self.args, c.option):
                self.add(c.name, "SKIP", c.skip)
                continue
            if c.needs == EARLIER:
                failed = [r.name for r in self.results if r.status == "FAIL"]
                if failed:
                    self.add(c.name, "FAIL", "not re-run: earlier checks failed (%s)" % ", ".join(failed))
                    continue
            else:
                missing = [n for n in c.needs if n in PROVIDES and PROVIDES[n] not in self.cache]
                if missing:
                    self.add(c.name, "FAIL", "not recomputed: the %s check could not recompute its numbers"
                             % " and ".join(missing))
                    continue
            result = self.run_check(c.name, getattr(self, "check_" + c.name))
            if c.stops and result.status != "PASS":
                return


def rerun(v):
    """Re-run inference with the submitted adapter through tools/predict.py and compare with the submission.

    What is built comes from the kit, not from the submission: the kit's own yaml/<profile>.yaml (its model shape
    must equal the manifest's), pet_config from adapter_config.json (numbers and a regex, checked), the base
    weights packaged in the submission (random-init runs) or --base-checkpoint (checked against the manifest's
    fingerprint). Decoding settings come from the submission's predict record, validated.
    """
    import subprocess

    from .templates import TEMPLATES

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
    rec = v.predict_record().data
    rec_rel = S.predict_record
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
    if not tokenizer and (v.root / S.tokenizer).is_file():
        tokenizer = str(v.root / S.tokenizer)  # the very file the predictions were made with (tiny profile)
    if not tokenizer and rec.get("tokenizer") == "tiny":
        tokenizer = "tiny"
    if not tokenizer:
        raise CheckFailed("pass --tokenizer (the submission was predicted with a tokenizer file)")
    tok_sha = sha256_file(tokenizer) if Path(tokenizer).is_file() else None
    if tok_sha is None and tokenizer == "tiny":
        from .tokenizer import tiny_tokenizer_path

        tok_sha = sha256_file(tiny_tokenizer_path())
    if rec.get("tokenizer_sha256") and tok_sha != rec["tokenizer_sha256"]:
        raise CheckFailed("tokenizer %s (sha256 %s...) is not the one the predictions were made with (%s...)"
                          % (Path(tokenizer).name, str(tok_sha)[:12], rec["tokenizer_sha256"][:12]))
    test_path = Path(v.args.test) if v.args.test else v.gold_path()[0]
    with pid_tempdir("kit-rerun-") as workdir:
        out = workdir / "predictions.jsonl"
        cmd = [sys.executable, str(TOOLS / "predict.py"), "--input", str(test_path),
               "--out", str(out), "--config", profile, "--checkpoint", str(base), "--adapter",
               str(v.root / "adapter"), "--tokenizer", str(tokenizer), "--template", template,
               "--max-new-tokens", str(nums["max_new_tokens"]), "--min-new-tokens", str(nums["min_new_tokens"]),
               "--batch-size", str(nums["batch_size"])]
        if v.args.rerun_limit:
            cmd += ["--limit", str(v.args.rerun_limit)]
        if v.echo is not None:
            v.echo("...  rerun     running tools/predict.py on %s (%s records) with the submitted adapter"
                   % (test_path.name, v.args.rerun_limit or "all"))
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=None if v.echo else subprocess.PIPE, text=True)
        if proc.returncode != 0:
            tail = (proc.stderr or "").strip().splitlines()[-1:] if not v.echo else []
            raise CheckFailed("predict.py failed (exit %d)%s" % (proc.returncode, ": " + tail[0] if tail else ""))
        new_rows, _ = read_jsonl_rows(out, v.limits.max_json_bytes, "rerun predictions")
    old_rows, _ = read_jsonl_rows(v.path(S.predictions), v.limits.max_json_bytes, S.predictions)
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
                                    gold_name=test_path.name, pred_name=S.predictions)
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


def verify_submission(src, options, echo=None):
    """Open `src` (folder or zip, extracted safely to a temporary folder) and run every check -> [Result].
    `echo(line)` sees each line as it is decided."""
    limits = options.limits()
    with pid_tempdir("kit-verify-") as work:
        root, desc, problems = open_submission(src, limits, work)
        if root is None:
            v = Verifier(work, options, desc, echo)
            v.add("input", "FAIL", "%s refused: %s%s" % (desc, "; ".join(problems[:10]),
                                                          "; ... (%d problems)" % len(problems)
                                                          if len(problems) > 10 else ""))
        else:
            v = Verifier(root, options, desc, echo)
            v.add("input", "PASS", "%s opened as %s" % (show(Path(src).name), desc))
            v.run()
        return v.results


def summary(name, results):
    """(one-line verdict, JSON-able result) of a verification."""
    failed = [r for r in results if r.status == "FAIL"]
    passed = [r for r in results if r.status == "PASS"]
    skipped = [r for r in results if r.status == "SKIP"]
    ok = not failed
    line = "%s: %d passed, %d failed, %d skipped -> %s" % (
        name, len(passed), len(failed), len(skipped), "VERIFIED" if ok else "NOT VERIFIED")
    doc = {"submission": name, "verified": ok, "passed": len(passed), "failed": len(failed),
           "skipped": len(skipped), "checks": [r.as_dict() for r in results]}
    return line, doc
