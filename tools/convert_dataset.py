"""Contest math data -> verified, sampled, rewritten conversation JSON -> MindRecord rows, with a report.

Subcommands (each stage alone, or `convert` for all of them in one streaming pass):
  audit INPUT [--json]            families, parsed, solutions reproduced, bad lines, duplicates (exit 1 on
                                  unreadable lines)
  to-conversation INPUT --out F   clean, dedup, verify gold, sample, rewrite (--recipe) -> contest conversation
                                  JSON [{"id","conversations":[{"from":"human",..},{"from":"gpt",..}]}]
  to-mindrecord INPUT --out F     conversation JSON (or {"problem","solution"} JSONL) -> MindRecord
                                  input_ids/labels int32 [seq_length+1], template --template
  convert INPUT --out-dir DIR     all of it: DIR/conversation.json, DIR/train.mindrecord(.db),
                                  DIR/data_report.{json,md,png}

Bad lines (not UTF-8, not JSON, truncated, missing/non-string/empty field) are reported with file and
line, counted and skipped. Every output is written to a temp name and renamed, so a failed run leaves
nothing half-written. Over-long rows are never cut silently: dropped (default) or truncated
(--overlong truncate) and counted per family.
"""

import argparse
import hashlib
import json
import random
import sys
import time
from collections import OrderedDict
from pathlib import Path

import numpy as np

from lorakit.io import KitError, atomic_open, file_fingerprint, iter_jsonl, run_main, write_json

PCTS = (50, 90, 95, 99, 100)
BATCH = 8192
MAX_SAMPLES = 20
STAGES = ("read", "unique", "verified", "sampled", "rewritten", "rows")
OTHER = "unknown"


def _family_names():
    from lorakit.families import FAMILIES

    return list(FAMILIES) + [OTHER]


def _progress(total=None, desc="", unit="rec", disable=False):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit=unit, unit_scale=True, mininterval=0.5, leave=False,
                disable=disable, file=sys.stderr)


# --------------------------------------------------------------------------------------------- the report

class Report:
    """Counts per family and stage, samples of everything excluded, token lengths; JSON + Markdown + PNG."""

    def __init__(self):
        self.data = OrderedDict()
        self.counts = OrderedDict((s, OrderedDict()) for s in STAGES)
        self.excluded = OrderedDict()  # reason -> {"count", "samples"}
        self.lengths = {}  # family -> list of numpy arrays of row token counts (BOS..EOS)
        self.answer_lengths = {}
        self.overlong = OrderedDict()  # status -> {family: n}
        self.png = None
        self.t0 = time.time()

    def count(self, stage, family, n=1):
        c = self.counts[stage]
        c[family] = c.get(family, 0) + n

    def exclude(self, reason, sample=None, n=1):
        e = self.excluded.setdefault(reason, {"count": 0, "samples": []})
        e["count"] += n
        if sample is not None and len(e["samples"]) < MAX_SAMPLES:
            e["samples"].append(sample)

    def add_lengths(self, family, totals, answers):
        self.lengths.setdefault(family, []).append(np.asarray(totals, np.int32))
        self.answer_lengths.setdefault(family, []).append(np.asarray(answers, np.int32))

    def mark(self, status, family):
        d = self.overlong.setdefault(status, OrderedDict())
        d[family] = d.get(family, 0) + 1

    def token_stats(self):
        def stats(arr):
            if arr.size == 0:
                return None
            out = OrderedDict([("n", int(arr.size)), ("mean", round(float(arr.mean()), 2))])
            srt = np.sort(arr)
            for p in PCTS:  # nearest-rank percentile: the smallest value with >= p % of rows at or below it
                k = max(0, -(-p * srt.size // 100) - 1)
                out["p%d" % p if p < 100 else "max"] = int(srt[k])
            return out

        per, ans = OrderedDict(), OrderedDict()
        alls, alla = [], []
        for fam in _family_names():
            if fam in self.lengths:
                a = np.concatenate(self.lengths[fam])
                b = np.concatenate(self.answer_lengths[fam])
                per[fam], ans[fam] = stats(a), stats(b)
                alls.append(a)
                alla.append(b)
        if alls:
            per["all"] = stats(np.concatenate(alls))
            ans["all"] = stats(np.concatenate(alla))
            seq = self.data.get("seq_length")
            if isinstance(seq, int) and self.data.get("overlong_mode") != "truncate":
                # predict.py's max_new_tokens: the longest answer among the rows that fit (were written)
                rows, answers = np.concatenate(alls), np.concatenate(alla)
                kept = answers[rows <= seq + 1]
                self.data["max_new_tokens"] = int(kept.max()) if kept.size else None
        return per, ans

    def finish(self, **extra):
        per, ans = self.token_stats()
        self.data.update(extra)
        self.data["stages"] = OrderedDict((s, OrderedDict(sorted(c.items(), key=lambda kv: _order(kv[0]))))
                                          for s, c in self.counts.items() if c)
        self.data["stage_totals"] = OrderedDict((s, sum(c.values())) for s, c in self.counts.items() if c)
        self.data["excluded"] = self.excluded
        if per:
            self.data["tokens"] = OrderedDict([("row_tokens", per), ("answer_tokens", ans)])
            need = per["all"]["max"] - 1  # a row is seq_length + 1 tokens: BOS .. EOS
            p99 = per["all"]["p99"] - 1
            math = [v["max"] for f, v in per.items() if f not in ("all", "english")]
            self.data["seq_length_needed"] = OrderedDict([
                ("max", need), ("p99", p99), ("recommended", int(-(-need // 32) * 32)),
                ("math_max", max(math) - 1 if math else None),
                ("per_family", OrderedDict((f, v["max"] - 1) for f, v in per.items() if f != "all"))])
        self.data["overlong"] = self.overlong
        self.data["seconds"] = round(time.time() - self.t0, 2)
        return self.data


def _order(fam):
    names = _family_names()
    return names.index(fam) if fam in names else len(names)


def report_markdown(r):
    out = ["# Data report", ""]
    for key in ("command", "input", "recipe", "template", "seq_length", "tokenizer", "overlong_mode",
                "seed", "sample", "multiple_of", "rows_written", "seconds"):
        if key in r and r[key] is not None:
            out.append("- %s: `%s`" % (key, r[key] if not isinstance(r[key], dict) else json.dumps(r[key])))
    if "seq_length_needed" in r:
        s = r["seq_length_needed"]
        out.append("- seq_length this recipe needs: max %d, p99 %d (recommended %d); Chinese math families "
                   "alone: %s" % (s["max"], s["p99"], s["recommended"], s.get("math_max")))
    stages = r.get("stages", {})
    if stages:
        fams = sorted({f for c in stages.values() for f in c}, key=_order)
        out += ["", "## Records per family and stage", "",
                "| family | " + " | ".join(stages) + " |", "|---|" + "---:|" * len(stages)]
        for f in fams:
            out.append("| %s | %s |" % (f, " | ".join(str(stages[s].get(f, 0)) for s in stages)))
        out.append("| **total** | %s |" % " | ".join(str(sum(stages[s].values())) for s in stages))
    tok = r.get("tokens")
    if tok:
        out += ["", "## Row tokens per family (BOS + prompt + answer + EOS; a row holds seq_length+1)", "",
                "| family | n | mean | p50 | p90 | p95 | p99 | max | answer p50 | answer max |",
                "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for f, s in tok["row_tokens"].items():
            a = tok["answer_tokens"][f]
            out.append("| %s | %d | %.1f | %d | %d | %d | %d | %d | %d | %d |" % (
                f, s["n"], s["mean"], s["p50"], s["p90"], s["p95"], s["p99"], s["max"], a["p50"], a["max"]))
    if r.get("overlong"):
        out += ["", "## Rows over budget (mode `%s`)" % r.get("overlong_mode"), ""]
        for status, d in r["overlong"].items():
            out.append("- %s: %d (%s)" % (status, sum(d.values()), ", ".join("%s %d" % kv for kv in d.items())))
    if r.get("excluded"):
        out += ["", "## Excluded records", ""]
        for reason, e in r["excluded"].items():
            out.append("- %s: %d" % (reason, e["count"]))
            for s in e["samples"][:5]:
                out.append("  - `%s`" % json.dumps(s, ensure_ascii=False)[:200].replace("`", "'"))
    return "\n".join(out) + "\n"


def report_png(report, lengths, seq_length):
    """PNG bytes: histogram of row token counts per family, with the row budget (seq_length+1) marked."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fams = [f for f in _family_names() if f in lengths]
    if not fams:
        return None
    arrays = {f: np.concatenate(lengths[f]) for f in fams}
    budget = seq_length + 1
    hi = max(int(a.max()) for a in arrays.values())
    top = min(hi, max(2 * budget, int(np.percentile(np.concatenate(list(arrays.values())), 99)) + 8))
    width = max(1, top // 150)
    bins = np.arange(0, top + 2 * width, width)  # the last bin collects everything longer (clipped)
    fig, ax = plt.subplots(figsize=(10, 5.5))
    colors = plt.get_cmap("tab20").colors
    bottom = np.zeros(len(bins) - 1)
    for i, f in enumerate(fams):  # stacked, one artist per family (ax.hist makes one patch per bin: slow)
        counts, _ = np.histogram(np.minimum(arrays[f], bins[-2]), bins=bins)
        ax.stairs(bottom + counts, bins, baseline=bottom.copy(), fill=True, label=f, color=colors[i % 20])
        bottom = bottom + counts
    if hi > top:
        ax.text(bins[-2], bottom[-1], " >= %d" % bins[-2], fontsize=7, va="bottom")
    ax.axvline(budget, color="red", linestyle="--", label="row budget %d (seq_length+1)" % budget)
    ax.set_yscale("symlog", linthresh=10)
    ax.set_xlabel("tokens per row (BOS + prompt + answer + EOS)")
    ax.set_ylabel("rows")
    ax.set_title("%s, recipe %s, template %s" % (Path(report.get("input", "")).name, report.get("recipe"),
                                                 report.get("template")))
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    return buf.getvalue()


# --------------------------------------------------------------------------------------------- front end

def parse_caps(text):
    """"mul=0,div=20000,*=5000" -> {"mul": 0, "div": 20000, "*": 5000}."""
    out = {}
    if not text:
        return out
    names = set(_family_names()) | {"*"}
    for item in filter(None, (s.strip() for s in text.split(","))):
        name, sep, value = item.partition("=")
        name = name.strip()
        if not sep or name not in names:
            raise KitError("--cap: %r is not FAMILY=N (families: %s, or *)" % (item, ", ".join(sorted(names))))
        try:
            out[name] = int(value)
        except ValueError:
            raise KitError("--cap: %s: %r is not an integer" % (name, value)) from None
        if out[name] < 0:
            raise KitError("--cap: %s must be >= 0" % name)
    return out


def parse_weights(text, n):
    """"unique" (families.DEFAULT_WEIGHTS) or "add=1,mul=2,..." with a total n -> caps per family."""
    from lorakit.families import DEFAULT_WEIGHTS

    if text in (None, "", "unique"):
        weights = dict(DEFAULT_WEIGHTS, english=9993)
    else:
        weights = {}
        for item in filter(None, (s.strip() for s in text.split(","))):
            name, sep, value = item.partition("=")
            if not sep or name.strip() not in _family_names():
                raise KitError("--weights: %r is not FAMILY=W" % item)
            try:
                weights[name.strip()] = float(value)
            except ValueError:
                raise KitError("--weights: %r is not a number" % value) from None
    total = sum(w for w in weights.values() if w > 0)
    if total <= 0:
        raise KitError("--weights: all weights are zero")
    caps = {f: int(round(n * w / total)) for f, w in weights.items() if w > 0}
    for f in _family_names():
        caps.setdefault(f, 0)
    return caps


class Record:
    __slots__ = ("line", "family", "problem", "solution", "target", "parsed")

    def __init__(self, line, family, problem, solution, parsed=None):
        self.line, self.family, self.problem, self.solution = line, family, problem, solution
        self.parsed = parsed
        self.target = solution


def read_records(path, report, progress=True):
    """Yield (lineno, problem, solution) of usable lines; bad lines are reported and counted."""
    bad = []
    bar = _progress(desc="read", disable=not progress)
    k = 0
    for lineno, obj in iter_jsonl(path, required=("problem", "solution"), bad=bad):
        if bad:
            _report_bad(report, bad)
        yield lineno, obj["problem"], obj["solution"]
        k += 1
        if k == 4096:
            bar.update(k)
            k = 0
    _report_bad(report, bad)
    bar.close()


def _report_bad(report, bad):
    for b in bad:
        report.exclude("bad line", {"line": b.lineno, "reason": b.reason})
        print("convert_dataset: %s (skipped)" % b, file=sys.stderr)
    del bad[:]


def clean(records, report, dedup=True, verify=True):
    """Classify, dedup exact (problem, solution) pairs, verify the gold solution with the family solver."""
    from lorakit.families import UNKNOWN, classify, parse, solve

    seen = set()
    for lineno, problem, solution in records:
        parsed = parse(problem)
        family = parsed.family if parsed is not None else classify(problem)
        if family == UNKNOWN:
            family = OTHER
        report.count("read", family)
        if dedup:
            key = hashlib.blake2b((problem + "\x00" + solution).encode("utf-8", "surrogatepass"),
                                  digest_size=12).digest()
            if key in seen:
                report.exclude("duplicate")
                continue
            seen.add(key)
        report.count("unique", family)
        if verify and family != "english":
            if parsed is None:
                report.exclude("unrecognised or unparsed problem (cannot verify)",
                               {"line": lineno, "family": family, "problem": problem[:200]})
                continue
            try:
                expected = solve(parsed)
            except (ValueError, ArithmeticError) as exc:
                expected = "solver error: %s" % exc
            if expected != solution:
                report.exclude("gold solution not reproduced",
                               {"line": lineno, "family": family, "problem": problem, "gold": solution,
                                "solver": expected})
                continue
        report.count("verified", family)
        yield Record(lineno, family, problem, solution, parsed)


def sample(records, report, caps, seed):
    """Per-family reservoir sample (caps: family -> max records, "*" for the rest); input order kept."""
    if not caps:
        for r in records:
            report.count("sampled", r.family)
            yield r
        return
    rng = random.Random(seed)
    default = caps.get("*")
    pools, seen = {}, {}
    for r in records:
        cap = caps.get(r.family, default)
        if cap is None:
            pools.setdefault(r.family, []).append(r)
            continue
        k = seen.get(r.family, 0)
        seen[r.family] = k + 1
        pool = pools.setdefault(r.family, [])
        if k < cap:
            pool.append(r)
        else:
            j = rng.randrange(k + 1)
            if j < cap:
                pool[j] = r
    chosen = sorted((r for pool in pools.values() for r in pool), key=lambda r: r.line)
    for fam, k in seen.items():
        cap = caps.get(fam, default)
        if cap is not None and k > cap:
            report.exclude("not sampled (cap)", n=k - cap)
        if cap is not None and k < cap:
            report.data.setdefault("sample_shortfall", {})[fam] = cap - k
    for r in chosen:
        report.count("sampled", r.family)
        yield r


def rewrite(records, report, recipe):
    """Target rewrite by recipe; every target is verified (lorakit.cot.verify); failures are excluded."""
    from lorakit import cot

    rec = cot.parse_recipe(recipe)
    for r in records:
        if rec.kind != "stock":
            try:
                target = cot.rewrite(rec, {"problem": r.problem, "solution": r.solution}, r.parsed)
            except KitError as exc:
                report.exclude("recipe could not rewrite", {"line": r.line, "family": r.family,
                                                            "problem": r.problem, "error": str(exc)})
                continue
            errors = cot.verify(target, r.parsed, r.solution, rec)
            if errors:
                report.exclude("recipe target failed verification",
                               {"line": r.line, "family": r.family, "problem": r.problem, "target": target,
                                "errors": errors[:3]})
                continue
            r.target = target
        report.count("rewritten", r.family)
        yield r


def front_end(path, report, args, progress=True):
    caps = parse_caps(args.cap)
    if args.n is not None:
        caps = dict(parse_weights(args.weights, args.n), **caps)
    elif args.weights:
        raise KitError("--weights needs --n (the total to sample)")
    report.data["sample"] = {"caps": caps, "seed": args.seed} if caps else None
    recs = read_records(path, report, progress)
    recs = clean(recs, report, dedup=not args.no_dedup, verify=not args.no_verify)
    recs = sample(recs, report, caps, args.seed)
    if args.shuffle:
        recs = list(recs)
        random.Random(args.seed).shuffle(recs)
    return rewrite(recs, report, args.recipe)


# --------------------------------------------------------------------------------------------- conversation JSON

_json_str = getattr(json.encoder, "c_encode_basestring", None) or json.encoder.py_encode_basestring


class ConversationWriter:
    """Stream the contest conversation JSON array: one object per line, ids "1", "2", ..."""

    def __init__(self, path):
        self.path = path
        self.n = 0
        self._cm = None
        self._fh = None

    def __enter__(self):
        self._cm = atomic_open(self.path)
        self._fh = self._cm.__enter__()
        self._fh.write("[\n")
        return self

    def add(self, human, gpt):
        self.n += 1
        # the same text json.dumps(item, ensure_ascii=False) gives, without its per-call overhead
        self._fh.write('%s{"id": "%d", "conversations": [{"from": "human", "value": %s}, '
                       '{"from": "gpt", "value": %s}]}' % (",\n" if self.n > 1 else "", self.n,
                                                           _json_str(human), _json_str(gpt)))

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self._fh.write("\n]\n")
        return self._cm.__exit__(exc_type, exc, tb)


def conversation_pair(item, where):
    """(human, gpt) of one contest conversation item, or a reason string when it is malformed."""
    if not isinstance(item, dict):
        return "item is not an object"
    conv = item.get("conversations")
    if not isinstance(conv, list):
        return "no 'conversations' list"
    if len(conv) != 2:
        return "'conversations' has %d turns, expected 2 (human, gpt)" % len(conv)
    roles = [t.get("from") if isinstance(t, dict) else None for t in conv]
    if roles != ["human", "gpt"]:
        return "turns are %r, expected ['human', 'gpt']" % roles
    values = [t.get("value") for t in conv]
    for role, v in zip(roles, values):
        if not isinstance(v, str):
            return "%s value is not a string" % role
        if not v.strip():
            return "%s value is empty" % role
    return values[0], values[1]


def iter_json_array(path, chunk=1 << 20):
    """Stream the items of a top-level JSON array: yield (index, line, item) without loading the file.

    A syntax error is fatal (KitError with file and line): the rest of an array cannot be trusted.
    """
    dec = json.JSONDecoder()
    try:
        fh = open(str(path), encoding="utf-8")
    except OSError as exc:
        raise KitError("%s: cannot read: %s" % (path, exc.strerror or exc)) from None
    with fh:
        buf, pos, line, eof, index = "", 0, 1, False, 0
        state = "start"

        def fill():
            nonlocal buf, pos, eof
            try:
                more = fh.read(chunk)
            except UnicodeDecodeError as exc:
                raise KitError("%s: not UTF-8 near line %d (%s)" % (path, line, exc.reason)) from None
            if not more:
                eof = True
            buf = buf[pos:] + more
            pos = 0

        while True:
            while True:  # skip whitespace
                while pos < len(buf) and buf[pos] in " \t\r\n":
                    if buf[pos] == "\n":
                        line += 1
                    pos += 1
                if pos < len(buf) or eof:
                    break
                fill()
            if pos >= len(buf):
                raise KitError("%s:%d: truncated JSON (the array is not closed)" % (path, line))
            ch = buf[pos]
            if state == "start":
                if ch != "[":
                    raise KitError("%s:%d: expected a JSON array of conversations" % (path, line))
                pos += 1
                state = "item_or_end"
                continue
            if state == "sep":
                if ch == ",":
                    pos += 1
                    state = "item"
                    continue
                if ch == "]":
                    return
                raise KitError("%s:%d: expected ',' or ']' after item %d" % (path, line, index))
            if ch == "]" and state == "item_or_end":
                return
            while True:
                try:
                    item, end = dec.raw_decode(buf, pos)
                except ValueError as exc:
                    if not eof:
                        fill()
                        continue
                    raise KitError("%s:%d: not JSON: %s" % (path, line, exc.args[0].split(":")[0])) from None
                if end == len(buf) and not eof:  # a number may continue in the next chunk
                    fill()
                    continue
                break
            index += 1
            yield index, line, item
            line += buf.count("\n", pos, end)
            pos = end
            state = "sep"


def read_conversations(path, report, progress=True):
    """(lineno, human, gpt) from conversation JSON, or from {"problem","solution"} JSONL."""
    from lorakit.families import UNKNOWN, classify

    p = Path(path)
    with open(str(p), "rb") as fh:
        head = fh.read(4096).lstrip()
    if head[:1] == b"[":
        bar = _progress(desc="read", disable=not progress)
        for index, line, item in iter_json_array(p):
            pair = conversation_pair(item, index)
            bar.update(1)
            if isinstance(pair, str):
                report.exclude("bad conversation", {"item": index, "line": line, "reason": pair})
                print("convert_dataset: %s:%d: item %d: %s (skipped)" % (p, line, index, pair), file=sys.stderr)
                continue
            fam = classify(pair[0])
            yield Record(line, OTHER if fam == UNKNOWN else fam, pair[0], pair[1])
        bar.close()
    else:
        for lineno, problem, solution in read_records(p, report, progress):
            fam = classify(problem)
            yield Record(lineno, OTHER if fam == UNKNOWN else fam, problem, solution)


# --------------------------------------------------------------------------------------------- MindRecord

class RowPacker:
    """Tokenise records in batches, build rows, drop/truncate over-long ones, write MindRecord batches.

    With multiple_of N, the last (total % N) rows are held back and dropped, so the row count is a
    multiple of the global batch (MindFormers drops the remainder in sink mode anyway).
    """

    def __init__(self, tok, template, seq_length, writer, report, truncate=False, multiple_of=None, batch=BATCH):
        self.tok, self.template, self.seq_length = tok, template, seq_length
        self.writer, self.report, self.truncate = writer, report, truncate
        self.multiple_of = multiple_of or 1
        self.batch = batch
        self.pending = []
        self.held = None  # rows written to neither file yet (multiple_of)
        self.rows = 0
        self.trimmed = 0

    def add(self, record):
        self.pending.append(record)
        if len(self.pending) >= self.batch:
            self.flush()

    def flush(self):
        from lorakit import templates as T

        recs, self.pending = self.pending, []
        if not recs:
            return
        prompts = T.encode_prompts(self.tok, self.template, [r.problem for r in recs])
        answers = T.encode_answers(self.tok, self.template, [r.target for r in recs])
        status, totals, ids, labels = T.pack_rows(self.tok, prompts, answers, self.seq_length, self.truncate)
        fams = [r.family for r in recs]
        alens = [len(a) + 1 for a in answers]
        by_fam = {}
        for i, (f, st) in enumerate(zip(fams, status)):
            d = by_fam.get(f)
            if d is None:
                d = by_fam[f] = ([], [], [0])
            d[0].append(i)
            if st != T.OK:
                self.report.mark(st, f)
                if st != T.TRUNCATED:
                    r = recs[i]
                    self.report.exclude("over-long row (%s)" % st,
                                        {"line": r.line, "family": f, "tokens": int(totals[i])})
                    continue
            d[2][0] += 1
        for f, (idx, _, kept) in by_fam.items():
            self.report.add_lengths(f, totals[idx], [alens[i] for i in idx])
            self.report.count("rows", f, kept[0])
        self._emit(ids, labels)

    def _emit(self, ids, labels):
        if self.multiple_of > 1:
            ids = np.concatenate([self.held[0], ids]) if self.held is not None else ids.copy()
            labels = np.concatenate([self.held[1], labels]) if self.held is not None else labels.copy()
            keep = len(ids) - (self.multiple_of - 1)
            if keep <= 0:
                self.held = (ids, labels)
                return
            self.held = (ids[keep:].copy(), labels[keep:].copy())
            ids, labels = ids[:keep], labels[:keep]
        if len(ids):
            self.writer.write(ids, labels)
            self.rows += len(ids)

    def close(self):
        self.flush()
        if self.multiple_of > 1 and self.held is not None:
            total = self.rows + len(self.held[0])
            keep = total - total % self.multiple_of - self.rows
            if keep > 0:
                self.writer.write(self.held[0][:keep], self.held[1][:keep])
                self.rows += keep
            self.trimmed = len(self.held[0]) - max(keep, 0)
            self.held = None


def load_tok(spec, profile=None):
    from lorakit.tokenizer import load_tokenizer

    tok = load_tokenizer(spec)
    if profile is not None:
        from lorakit.config import load_config, model_config

        mc = model_config(load_config(profile))
        want = {"vocab_size": tok.n_vocab, "bos_token_id": tok.bos_id, "eos_token_id": tok.eos_id,
                "pad_token_id": tok.pad_id}
        bad = ["%s %s (tokenizer %s)" % (k, mc.get(k), v) for k, v in want.items()
               if mc.get(k) is not None and int(mc[k]) != v]
        if bad:
            raise KitError("tokenizer %s does not fit profile %s: %s" % (tok.path, profile, "; ".join(bad)))
    return tok


def resolve_defaults(args):
    """--profile fills --seq-length and --tokenizer (tiny for a vocab-1280 model) when not given."""
    if args.profile:
        from lorakit.config import load_config, model_config

        mc = model_config(load_config(args.profile))
        if args.seq_length is None:
            args.seq_length = int(mc["seq_length"])
        if args.tokenizer is None and int(mc.get("vocab_size", 0)) == 1280:
            args.tokenizer = "tiny"
    if args.multiple_of == "batch":
        if not args.profile:
            raise KitError("--multiple-of batch needs --profile (global batch = batch_size x data_parallel)")
        from lorakit.config import get_path, load_config

        cfg = load_config(args.profile)
        args.multiple_of = int(get_path(cfg, "runner_config.batch_size", 1)) * int(
            get_path(cfg, "parallel_config.data_parallel", 1) or 1)
    elif args.multiple_of is not None:
        try:
            args.multiple_of = int(args.multiple_of)
        except ValueError:
            raise KitError("--multiple-of: %r is not an integer or 'batch'" % args.multiple_of) from None
        if args.multiple_of < 1:
            raise KitError("--multiple-of must be >= 1")
    if args.seq_length is None:
        args.seq_length = 256
    if args.seq_length < 2:
        raise KitError("--seq-length must be >= 2")


def to_mindrecord(records, out, args, report, progress=True):
    from lorakit.mindrecord_io import MindRecordRows, MindRecordRowsProcess

    writer_cls = MindRecordRowsProcess if args.writer == "process" else MindRecordRows
    # the writer process imports MindSpore (seconds) while this one loads the tokenizer and tokenises
    with writer_cls(out, args.seq_length) as writer:
        tok = load_tok(args.tokenizer, args.profile)
        report.data.update(template=args.template, seq_length=args.seq_length, overlong_mode=args.overlong,
                           tokenizer={"path": str(tok.path), "sha256": tok.sha256, "n_vocab": tok.n_vocab},
                           multiple_of=args.multiple_of)
        packer = RowPacker(tok, args.template, args.seq_length, writer, report,
                           truncate=args.overlong == "truncate", multiple_of=args.multiple_of)
        for r in records:
            packer.add(r)
        packer.close()
        if packer.rows == 0:
            raise KitError("no rows left to write to %s (all records dropped; see the messages above)" % out)
        if getattr(args, "png", True):
            # plot now, while the writer process still writes and indexes (the files are written after success)
            report.png = report_png(report.data, report.lengths, args.seq_length)
    report.data["rows_written"] = packer.rows
    if packer.trimmed:
        report.data["trimmed_for_multiple_of"] = packer.trimmed
        report.exclude("trimmed to a multiple of %d" % args.multiple_of, n=packer.trimmed)
    return packer.rows


def write_reports(report, prefix, seq_length, png=True):
    data = report.finish()
    write_json(str(prefix) + ".json", data)
    with atomic_open(str(prefix) + ".md") as fh:
        fh.write(report_markdown(data))
    if png and report.lengths and seq_length:
        image = report.png or report_png(data, report.lengths, seq_length)
        if image:
            with atomic_open(str(prefix) + ".png", "wb") as fh:
                fh.write(image)
    return data


# --------------------------------------------------------------------------------------------- commands

def _report_prefix(out):
    """x/train.mindrecord -> x/train_report (-> .json/.md/.png); never the output's own name."""
    p = Path(out)
    return p.with_name(p.stem + "_report")


def cmd_audit(args):
    from lorakit.audit import audit_file, audit_markdown

    rep = audit_file(args.input, progress=not args.no_progress)
    if args.md:
        with atomic_open(args.md) as fh:
            fh.write(audit_markdown(rep))
    if args.json:
        print(json.dumps(rep, ensure_ascii=False))
    else:
        sys.stdout.write(audit_markdown(rep))
    for b in rep["bad_lines"]:
        print("convert_dataset: %s:%d: %s" % (b["path"], b["line"], b["reason"]), file=sys.stderr)
    return 1 if rep["bad_lines"] else 0


def cmd_to_conversation(args):
    report = Report()
    report.data.update(command="to-conversation", input=str(args.input), recipe=args.recipe, seed=args.seed,
                       input_fingerprint=file_fingerprint(args.input))
    with ConversationWriter(args.out) as conv:
        for r in front_end(args.input, report, args, not args.no_progress):
            conv.add(r.problem, r.target)
    report.data["conversations_written"] = conv.n
    data = write_reports(report, args.report or _report_prefix(args.out), None)
    return _finish(args, data)


def cmd_to_mindrecord(args):
    resolve_defaults(args)
    report = Report()
    report.data.update(command="to-mindrecord", input=str(args.input), input_fingerprint=file_fingerprint(args.input))
    to_mindrecord(read_conversations(args.input, report, not args.no_progress), args.out, args, report,
                  not args.no_progress)
    data = write_reports(report, args.report or _report_prefix(args.out), args.seq_length, png=args.png)
    return _finish(args, data)


def cmd_convert(args):
    resolve_defaults(args)
    out = Path(args.out_dir)
    report = Report()
    report.data.update(command="convert", input=str(args.input), recipe=args.recipe, seed=args.seed,
                       input_fingerprint=file_fingerprint(args.input))
    conv_path = out / "conversation.json"

    def tee(records, conv):
        for r in records:
            conv.add(r.problem, r.target)
            yield r

    with ConversationWriter(conv_path) as conv:
        to_mindrecord(tee(front_end(args.input, report, args, not args.no_progress), conv),
                      out / "train.mindrecord", args, report, not args.no_progress)
    report.data["conversations_written"] = conv.n
    report.data["outputs"] = {"conversation": str(conv_path), "mindrecord": str(out / "train.mindrecord"),
                              "report": str(out / "data_report.json")}
    data = write_reports(report, out / "data_report", args.seq_length)
    return _finish(args, data)


def _finish(args, data):
    if args.json:
        print(json.dumps(data, ensure_ascii=False))
    else:
        tot = data.get("stage_totals", {})
        print("convert_dataset: %s: %s; %.1f s" % (
            data["command"], ", ".join("%s %d" % kv for kv in tot.items()), data["seconds"]), file=sys.stderr)
        for reason, e in data.get("excluded", {}).items():
            print("convert_dataset:   excluded %s: %d" % (reason, e["count"]), file=sys.stderr)
        if "rows_written" in data:
            print("convert_dataset: %d rows of %d tokens" % (data["rows_written"], data["seq_length"] + 1),
                  file=sys.stderr)
    if args.strict and any(k == "bad line" or k == "bad conversation" for k in data.get("excluded", {})):
        return 1
    return 0


def _common(p):
    p.add_argument("--json", action="store_true", help="print the report as one JSON object on stdout")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--strict", action="store_true", help="exit 1 when any input line was unreadable")


def _front_args(p):
    p.add_argument("--recipe", default="stock", help="target rewrite: stock (default), cot, cot:D, round:N")
    p.add_argument("--no-dedup", action="store_true", help="keep exact (problem, solution) duplicates")
    p.add_argument("--no-verify", action="store_true",
                   help="keep records whose gold solution the family solver does not reproduce")
    p.add_argument("--cap", metavar="FAM=N,...", help="per-family maximum (reservoir sample; * = other families)")
    p.add_argument("--n", type=int, help="sample this many records in total, split by --weights")
    p.add_argument("--weights", metavar="FAM=W,...|unique",
                   help="family weights for --n (default: the real unique-count distribution)")
    p.add_argument("--seed", type=int, default=0, help="sampling / shuffling seed (default 0)")
    p.add_argument("--shuffle", action="store_true", help="shuffle the output order (default: input order)")


def _row_args(p):
    from lorakit.templates import DEFAULT_TEMPLATE, TEMPLATES

    p.add_argument("--template", default=DEFAULT_TEMPLATE, choices=TEMPLATES,
                   help="prompt template (default %(default)s = stock llama_preprocess.py wrapper)")
    p.add_argument("--seq-length", type=int, help="rows are seq_length+1 tokens (default 256, or the profile's)")
    p.add_argument("--tokenizer", help="tokenizer.model path, or 'tiny' (default .cache/tokenizer/tokenizer.model)")
    p.add_argument("--profile", help="yaml profile: default seq_length/tokenizer from it and check the vocab fits")
    p.add_argument("--overlong", choices=("drop", "truncate"), default="drop",
                   help="rows longer than seq_length+1: drop (default) or cut the tail; counted either way")
    p.add_argument("--writer", choices=("process", "inline"), default="process",
                   help="MindRecord writing in a child process on the other core (default) or in this one")
    p.add_argument("--multiple-of", metavar="N|batch",
                   help="trim the row count to a multiple of N; 'batch' = the profile's batch_size x data_parallel "
                        "(MindFormers drops the remainder: drop_remainder / sink mode)")


def build_parser():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", metavar="COMMAND")
    sub.required = True

    p = sub.add_parser("audit", help="families, reproduction, bad lines, duplicates of a JSONL file")
    p.add_argument("input")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--md", help="also write the Markdown report here")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_audit)

    p = sub.add_parser("to-conversation", help="JSONL -> clean/dedup/verify/sample/rewrite -> conversation JSON")
    p.add_argument("input")
    p.add_argument("--out", required=True, help="conversation JSON to write")
    p.add_argument("--report", help="report prefix (default: OUT stem + _report -> .json/.md)")
    _front_args(p)
    _common(p)
    p.set_defaults(func=cmd_to_conversation)

    p = sub.add_parser("to-mindrecord", help="conversation JSON (or problem/solution JSONL) -> MindRecord")
    p.add_argument("input")
    p.add_argument("--out", required=True, help="MindRecord file to write (+ .db)")
    p.add_argument("--report", help="report prefix (default: OUT stem + _report -> .json/.md, .png with --png)")
    p.add_argument("--png", action="store_true", help="also plot the token-length histogram (convert always does)")
    _row_args(p)
    _common(p)
    p.set_defaults(func=cmd_to_mindrecord)

    p = sub.add_parser("convert", help="all stages: JSONL -> DIR/conversation.json + train.mindrecord + report")
    p.add_argument("input")
    p.add_argument("--out-dir", required=True, help="output folder (RUN/data)")
    _front_args(p)
    _row_args(p)
    _common(p)
    p.set_defaults(func=cmd_convert)
    return ap


def main(argv=None):
    args = build_parser().parse_args(argv)
    if getattr(args, "recipe", None):
        from lorakit.cot import parse_recipe

        args.recipe = parse_recipe(args.recipe).name
    if getattr(args, "n", None) is not None and args.n < 1:
        raise KitError("--n must be >= 1")
    src = getattr(args, "input", None)
    if isinstance(src, str) and src != "-" and not Path(src).is_file():
        raise KitError("%s: %s" % (src, "is a folder, not a file" if Path(src).is_dir() else "no such file"))
    return args.func(args)


if __name__ == "__main__":
    run_main(main)
