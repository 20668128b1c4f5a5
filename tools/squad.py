#!/usr/bin/env python3
"""The contest's SQuAD reading-comprehension gate: prepare eval records, score predictions, check the gate.

  squad.py prepare --dev dev-v1.1.json --out squad_records.jsonl
      one record {id, context, question, answer, answers} per paragraph: its first question and first answer, as
      the contest's squad_data_process.py --mode eval keeps them (2,067 records for the real dev-v1.1). Predict
      them with `predict.py --template squad --max-new-tokens 20 --min-new-tokens 1`: the contest prompt
      "Read the passage and answer the question below.\\n\\n### Instruction:\\n{context}\\n\\n### Input:
      \\n{question}\\n\\n### Response:" (lorakit.templates), without BOS, as the stock eval feeds it.
  squad.py score --records squad_records.jsonl --pred squad_predictions.jsonl [--json] [--out-dir DIR]
      MindFormers' EmF1Metric (re-implemented exactly; what the contest reports) and, beside it, the official
      SQuAD v1.1 EM/F1 (against all gold answers of the question).
  squad.py gate --report squad_report.json [--base-report base_report.json] [--json]
      pass when EmF1 F1 >= 53.8832 and Em >= 39.7533 (90 % of base Llama3-8B), or 90 % of a base run's report.
      Exit 0 pass, 1 fail, 2 bad input.
"""

import argparse
import json
import os
from pathlib import Path

# scoring and the gate live in lorakit.squad_metrics (thresholds: lorakit.contest) (package.py and verify.py recompute with the same code)
from lorakit.contest import SQUAD_FRACTION as FRACTION
from lorakit.contest import SQUAD_GATE_EM as DEFAULT_EM
from lorakit.contest import SQUAD_GATE_F1 as DEFAULT_F1
from lorakit.io import KitError, atomic_path, iter_jsonl, read_json, run_main, sha256_file, write_json, write_jsonl
from lorakit.layout import SQUAD_REPORT
from lorakit.squad_metrics import score_squad as score
from lorakit.squad_metrics import squad_gate as gate
from lorakit.templates import SQUAD as PROMPT


def _need(obj, key, kind, where):
    if not isinstance(obj, dict) or key not in obj:
        raise KitError(f"{where}: missing {key!r}")
    value = obj[key]
    if not isinstance(value, kind):
        raise KitError("{}.{}: expected {}".format(where, key, kind.__name__ if isinstance(kind, type) else "list/str"))
    return value


def build_records(dev, name="dev"):
    """Records from a parsed SQuAD v1.1 file, plus counts. Paragraphs without a question or answer are skipped
    and counted (the stock script would crash on them)."""
    data = _need(dev, "data", list, name)
    records, skipped = [], []
    paragraphs = 0
    for a, article in enumerate(data):
        where_a = "%s: data[%d]" % (name, a)
        for p, para in enumerate(_need(article, "paragraphs", list, where_a)):
            paragraphs += 1
            where = "%s.paragraphs[%d]" % (where_a, p)
            context = _need(para, "context", str, where)
            qas = _need(para, "qas", list, where)
            if not qas:
                skipped.append({"where": where, "reason": "no questions"})
                continue
            qa = qas[0]
            question = _need(qa, "question", str, where + ".qas[0]")
            answers = _need(qa, "answers", list, where + ".qas[0]")
            texts = [_need(x, "text", str, "%s.qas[0].answers[%d]" % (where, i)) for i, x in enumerate(answers)]
            if not texts:
                skipped.append({"where": where, "reason": "first question has no answer"})
                continue
            qid = qa.get("id")
            records.append({"id": str(qid) if qid not in (None, "") else str(len(records) + 1),
                            "family": "squad",
                            "context": context, "question": question, "answer": texts[0], "answers": texts,
                            "title": article.get("title", "") if isinstance(article, dict) else ""})
    return records, {"articles": len(data), "paragraphs": paragraphs, "records": len(records),
                     "skipped": len(skipped), "skipped_examples": skipped[:10]}


def cmd_prepare(args):
    dev = read_json(args.dev)
    records, info = build_records(dev, str(args.dev))
    if not records:
        raise KitError(f"{args.dev}: no paragraph with a question and an answer")
    seen = {}
    for k, r in enumerate(records, 1):
        if r["id"] in seen:
            raise KitError("%s: duplicate question id %r (records %d and %d)" % (args.dev, r["id"], seen[r["id"]], k))
        seen[r["id"]] = k
    write_jsonl(args.out, records)
    info.update({"dev": str(args.dev), "dev_sha256": sha256_file(args.dev), "out": str(args.out),
                 "prompt": PROMPT})
    if args.json:
        print(json.dumps(info, ensure_ascii=False))
    else:
        print("squad prepare: %d records from %d paragraphs of %d articles (%d skipped) -> %s"
              % (info["records"], info["paragraphs"], info["articles"], info["skipped"], args.out))
    return 0


def render_markdown(rep):
    lines = ["# SQuAD gate", "", "- records: %d (empty predictions: %d, missing: %d)"
             % (rep["total"], rep["empty_predictions"], rep["missing_predictions"]), "",
             "| metric | F1 | EM |", "|---|---:|---:|",
             "| EmF1Metric (contest) | {:.4f} | {:.4f} |".format(rep["emf1"]["F1"], rep["emf1"]["Em"]),
             "| SQuAD v1.1 official | {:.4f} | {:.4f} |".format(rep["squad_v1.1"]["f1"], rep["squad_v1.1"]["exact_match"]), ""]
    if "gate" in rep:
        g = rep["gate"]
        lines += ["Gate ({}): F1 >= {:.4f} and EM >= {:.4f}: **{}**".format(g["basis"], g["f1_min"], g["em_min"],
                                                                 "PASS" if g["pass"] else "FAIL"), ""]
    lines += ["| id | prediction (first line) | answer |", "|---|---|---|"]
    for s in rep["samples"]:
        lines.append("| {} | {} | {} |".format(s["id"], s["prediction"].replace("|", "\\|"), s["answer"].replace("|", "\\|")))
    return "\n".join(lines) + "\n"


def cmd_score(args):
    records = list(iter_jsonl(args.records))
    preds = list(iter_jsonl(args.pred))
    if not records:
        raise KitError(f"{args.records}: no records")
    rep = score(records, preds, str(args.records), str(args.pred), allow_missing=args.allow_missing)
    rep.update({"records": str(args.records), "predictions": str(args.pred)})
    if args.out_dir:
        out = Path(args.out_dir)
        write_json(out / SQUAD_REPORT.json, rep)
        with atomic_path(out / SQUAD_REPORT.md) as tmp:
            tmp.write_text(render_markdown(rep), encoding="utf-8")
    if args.json:
        print(json.dumps(rep, ensure_ascii=False))
    else:
        print("SQuAD (%d): EmF1Metric F1 %.4f Em %.4f | official v1.1 F1 %.4f EM %.4f"
              % (rep["total"], rep["emf1"]["F1"], rep["emf1"]["Em"], rep["squad_v1.1"]["f1"],
                 rep["squad_v1.1"]["exact_match"]))
    return 0


def _portable_name(path):
    """How a report names the base run: relative to the working directory, or by file name when outside it
    (reports end up in submissions, which must hold no absolute paths)."""
    if not path:
        return "base"
    rel = os.path.relpath(os.path.abspath(path))
    return rel if not rel.startswith("..") else os.path.basename(path)


def cmd_gate(args):
    rep = read_json(args.report)
    base = read_json(args.base_report) if args.base_report else None
    g = gate(rep, base, args.f1, args.em, args.fraction, _portable_name(args.base_report))
    if args.write:
        rep["gate"] = g
        write_json(args.report, rep)
        md = Path(args.report).with_suffix(".md")
        if md.exists() and "emf1" in rep and "samples" in rep:
            with atomic_path(md) as tmp:
                tmp.write_text(render_markdown(rep), encoding="utf-8")
    if args.json:
        print(json.dumps(g))
    else:
        print("SQuAD gate {}: F1 {:.4f} (min {:.4f}), Em {:.4f} (min {:.4f}) [{}]".format("PASS" if g["pass"] else "FAIL", g["f1"], g["f1_min"], g["em"], g["em_min"], g["basis"]))
    return 0 if g["pass"] else 1


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("prepare", help="dev-v1.1.json -> eval records JSONL")
    p.add_argument("--dev", required=True, help="SQuAD v1.1 JSON (dev-v1.1.json)")
    p.add_argument("--out", required=True, help="records JSONL to write")
    p.add_argument("--json", action="store_true", help="print the counts as one JSON object")
    p.set_defaults(func=cmd_prepare)
    s = sub.add_parser("score", help="EmF1Metric + official SQuAD v1.1 of predictions")
    s.add_argument("--records", required=True, help="records JSONL from `prepare`")
    s.add_argument("--pred", required=True, help="predictions JSONL from predict.py (id, completion)")
    s.add_argument("--out-dir", default=None, help="write squad_report.{json,md} here")
    s.add_argument("--allow-missing", action="store_true", help="score records without a prediction as empty")
    s.add_argument("--json", action="store_true", help="print the report as one JSON object")
    s.set_defaults(func=cmd_score)
    g = sub.add_parser("gate", help="check a squad report against the thresholds; exit 1 when it fails")
    g.add_argument("--report", required=True, help="squad_report.json from `score`")
    g.add_argument("--base-report", default=None, help="a base model's squad_report.json: thresholds = fraction x it")
    g.add_argument("--fraction", type=float, default=FRACTION, help="share of the base run (default %(default)s)")
    g.add_argument("--f1", type=float, default=DEFAULT_F1, help="F1 threshold (default %(default)s)")
    g.add_argument("--em", type=float, default=DEFAULT_EM, help="Em threshold (default %(default)s)")
    g.add_argument("--write", action="store_true", help="also record the verdict in the report (and its .md)")
    g.add_argument("--json", action="store_true", help="print the verdict as one JSON object")
    g.set_defaults(func=cmd_gate)
    args = ap.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    run_main(main)
