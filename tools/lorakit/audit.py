"""Audit a contest-format JSONL file: unreadable lines, duplicates, families, exact reproduction.

audit_file(path) streams the file once (memory: two 16-byte digests per distinct record/problem) and
returns a JSON-ready dict; audit_markdown(report) renders it. Used by `convert_dataset.py audit`.

Report keys:
  path, records (usable lines), chinese, english, bad_lines [{path, line, reason}],
  duplicates (exact (problem, solution) repeats beyond the first), unique_records,
  conflicting_duplicates (distinct problems seen with more than one solution) + conflict_samples,
  unrecognised_count + unrecognised [{line, problem}] (Chinese, no family; capped),
  families {name: {records, unique, parsed, reproduced}} (reproduced: solve(parse(problem)) == solution;
  None for english, which has no solver), reproduced / reproducible / reproduction_rate (Chinese records
  of a known family), mismatches [{line, family, problem, expected (solver), got (file), error}] (capped).
"""

import hashlib
from collections import OrderedDict

from .families import FAMILIES, UNKNOWN, classify, parse, solve
from .io import iter_jsonl


def _digest(*parts):
    h = hashlib.blake2b(digest_size=16)
    for p in parts:
        h.update(p.encode("utf-8", "surrogatepass"))
        h.update(b"\x00")
    return h.digest()


def audit_file(path, max_samples=20, max_unrecognised=50, progress=False):
    """Audit one JSONL file of {"problem","solution"} records; see the module docstring for the keys."""
    bad = []
    fams = OrderedDict((f, {"records": 0, "unique": 0, "parsed": 0, "reproduced": 0}) for f in FAMILIES)
    fams["english"]["reproduced"] = None
    seen_pairs = set()
    first_solution = {}
    conflicted = set()
    conflict_samples = []
    unrecognised = []
    mismatches = []
    n = dup = n_unknown = 0

    it = iter_jsonl(path, required=("problem", "solution"), bad=bad)
    bar = None
    if progress:
        try:
            from tqdm import tqdm
        except ImportError:  # progress is cosmetic; the Ascend image may lack tqdm
            tqdm = None
        if tqdm is not None:
            bar = tqdm(it, unit="rec", unit_scale=True, mininterval=0.5, desc="audit", leave=False)
            it = bar
    for lineno, obj in it:
        problem, solution = obj["problem"], obj["solution"]
        n += 1
        pkey = _digest(problem)
        pair = _digest(problem, solution)
        is_dup = pair in seen_pairs
        if is_dup:
            dup += 1
        else:
            seen_pairs.add(pair)
            skey = _digest(solution)
            prev = first_solution.setdefault(pkey, skey)
            if prev != skey and pkey not in conflicted:
                conflicted.add(pkey)
                if len(conflict_samples) < max_samples:
                    conflict_samples.append({"line": lineno, "problem": problem, "solution": solution})

        parsed = parse(problem)
        fam = parsed.family if parsed is not None else classify(problem)
        if fam == UNKNOWN:
            n_unknown += 1
            if len(unrecognised) < max_unrecognised:
                unrecognised.append({"line": lineno, "problem": problem[:200]})
            continue
        st = fams[fam]
        st["records"] += 1
        if not is_dup:
            st["unique"] += 1
        if parsed is None:
            if len(mismatches) < max_samples:
                mismatches.append({"line": lineno, "family": fam, "problem": problem, "expected": None,
                                   "got": solution, "error": "not parsed (wording/format differs)"})
            continue
        st["parsed"] += 1
        if fam == "english":
            continue
        try:
            expected, error = solve(parsed), None
        except (ValueError, ArithmeticError) as exc:
            expected, error = None, f"solver: {exc}"
        if expected == solution:
            st["reproduced"] += 1
        elif len(mismatches) < max_samples:
            mismatches.append({"line": lineno, "family": fam, "problem": problem, "expected": expected,
                               "got": solution, "error": error})
    if bar is not None:
        bar.close()

    english = fams["english"]["records"]
    reproducible = sum(s["records"] for f, s in fams.items() if f != "english")
    reproduced = sum(s["reproduced"] for f, s in fams.items() if f != "english")
    return {
        "path": str(path),
        "records": n,
        "chinese": n - english,
        "english": english,
        "bad_lines": [b.as_dict() for b in bad],
        "duplicates": dup,
        "unique_records": len(seen_pairs),
        "conflicting_duplicates": len(conflicted),
        "conflict_samples": conflict_samples,
        "unrecognised_count": n_unknown,
        "unrecognised": unrecognised,
        "families": dict(fams),
        "reproducible": reproducible,
        "reproduced": reproduced,
        "reproduction_rate": (reproduced / reproducible) if reproducible else None,
        "mismatches": mismatches,
    }


def _pct(a, b):
    return f"{100.0 * a / b:.2f} %" if b else "-"


def _cell(text, limit=80):
    text = str(text).replace("\n", "\\n").replace("|", "\\|")
    return text if len(text) <= limit else text[:limit - 1] + "…"


def audit_markdown(report, max_rows=50):
    """Render an audit_file() report as Markdown."""
    r = report
    rate = r["reproduction_rate"]
    rate_text = "-" if rate is None else f"{100 * rate:.4f} %"
    out = [
        f"# Data audit: `{r['path']}`",
        "",
        f"- records: {r['records']} (Chinese {r['chinese']}, English {r['english']}), unique {r['unique_records']},"
        f" exact duplicates {r['duplicates']}",
        f"- conflicting duplicates (same problem, different solution): {r['conflicting_duplicates']}",
        f"- unreadable lines: {len(r['bad_lines'])}",
        f"- unrecognised Chinese records: {r['unrecognised_count']}",
        f"- solutions reproduced exactly: {r['reproduced']} / {r['reproducible']} ({rate_text})",
        "",
        "| family | records | unique | parsed | reproduced | rate |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for fam, s in r["families"].items():
        if not s["records"]:
            continue
        if s["reproduced"] is None:
            rep, frate = "n/a", "n/a"
        else:
            rep, frate = str(s["reproduced"]), _pct(s["reproduced"], s["records"])
        out.append(f"| {fam} | {s['records']} | {s['unique']} | {s['parsed']} | {rep} | {frate} |")
    if r["bad_lines"]:
        out += ["", "## Unreadable lines", ""]
        for b in r["bad_lines"][:max_rows]:
            out.append(f"- {b['path']}:{b['line']}: {b['reason']}")
        if len(r["bad_lines"]) > max_rows:
            out.append(f"- … {len(r['bad_lines']) - max_rows} more")
    if r["unrecognised"]:
        out += ["", f"## Unrecognised Chinese records (first {len(r['unrecognised'])})", ""]
        for u in r["unrecognised"][:max_rows]:
            out.append(f"- line {u['line']}: `{_cell(u['problem'])}`")
    if r["mismatches"]:
        out += ["", f"## Not reproduced (first {len(r['mismatches'])})", "",
                "| line | family | problem | solver | file | error |", "|---:|---|---|---|---|---|"]
        for m in r["mismatches"][:max_rows]:
            cells = [str(m["line"]), m["family"], _cell(m["problem"], 60), _cell(m["expected"], 50),
                     _cell(m["got"], 50), _cell(m["error"] or "", 40)]
            out.append("| " + " | ".join(cells) + " |")
    if r["conflict_samples"]:
        out += ["", f"## Conflicting duplicates (first {len(r['conflict_samples'])})", ""]
        for c in r["conflict_samples"][:max_rows]:
            out.append(f"- line {c['line']}: `{_cell(c['problem'], 60)}` -> `{_cell(c['solution'], 60)}`")
    return "\n".join(out) + "\n"
