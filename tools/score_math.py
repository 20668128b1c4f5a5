#!/usr/bin/env python3
"""Score math predictions against gold answers under three stated policies (exact, prediction-precision, tolerance).

Gold: JSONL {problem, solution[, id]} (train.json format). Predictions: JSONL {id, family, prompt, completion}
as written by predict.py. The answer is taken from the completion only (the recipe's final-answer marker, else a
\\boxed{}, else the last number); gold answers come from lorakit.families. Overall and per-family accuracy per
policy, sample misses, and the contest score for a given trainable ratio; JSON + Markdown + PNG with --out-dir.

  score_math.py --gold test.jsonl --pred runs/tiny/eval/predictions.jsonl --ratio 0.000424393 --out-dir runs/tiny/eval
"""

import argparse
import json
from pathlib import Path

from lorakit.contest import HEADLINE_POLICY, score_ratio
from lorakit.io import KitError, atomic_path, iter_jsonl, read_json, run_main, write_json
from lorakit.layout import MATH_REPORT
from lorakit.math_metrics import DEFAULT_TOLERANCE, POLICIES, score_predictions


def read_rows(path, required=()):
    rows, lines = [], []
    for lineno, obj in iter_jsonl(path, required=required):
        rows.append(obj)
        lines.append(lineno)
    if not rows:
        raise KitError(f"{path}: no records")
    return rows, lines


def pct(x):
    return "%.2f %%" % (100.0 * x)


def render_markdown(rep, gold, pred):
    out = ["# Math accuracy", "",
           f"- gold: `{gold}`", f"- predictions: `{pred}`",
           "- records: %d, matched by %s" % (rep["total"], rep["matched_by"]),
           "- tolerance policy: relative {:g} ({})".format(rep["tolerance"]["relative"], rep["tolerance"]["rule"]),
           "- prediction-precision policy: {}".format(rep["precision_rule"]),
           "- headline policy (the contest's likely rule): `{}`".format(rep["headline_policy"]), ""]
    out += ["| policy | correct | accuracy |", "|---|---:|---:|"]
    for p in POLICIES:
        s = rep["policies"][p]
        out.append("| %s | %d | %s |" % (p, s["correct"], pct(s["accuracy"])))
    wo = rep["prediction_precision_without_integer_rounding"]
    out.append("| prediction-precision without integer-rounded answers | %d | %s |" % (wo["correct"], pct(wo["accuracy"])))
    out += ["", "Integer-rounded (correct under prediction-precision only because a non-integer gold was answered with a plain "
            "integer): %d" % rep["integer_rounded"], ""]
    if "score" in rep:
        sc = rep["score"]
        out += ["## Contest score", "", "ratio {:.9g}, score = {}".format(sc["ratio"], sc["formula"]), "",
                "| policy | score |", "|---|---:|"]
        out += ["| {} | {:.6f} |".format(p, sc["by_policy"][p]) for p in POLICIES]
        out.append("")
    out += ["## Per family", "", "| family | n | " + " | ".join(POLICIES) + " | integer-rounded |",
            "|---|---:|" + "---:|" * (len(POLICIES) + 1)]
    for fam, fs in rep["families"].items():
        out.append("| %s | %d | %s | %d |" % (fam, fs["total"],
                                             " | ".join(pct(fs["policies"][p]["accuracy"]) for p in POLICIES),
                                             fs["integer_rounded"]))
    out += ["", "Answer taken from: " + ", ".join("%s %d" % kv for kv in rep["answer_sources"].items() if kv[1]),
            "; non-numeric gold answers: %d; echoed prompts removed: %d; missing predictions: %d"
            % (rep["non_numeric_gold"], rep["echoed_prompts_removed"], rep["missing_predictions"]), ""]
    if rep.get("note"):
        out += ["Note: " + rep["note"], ""]
    if rep["sample_misses"]:
        out += ["## Sample misses (exact policy)", "", "| id | family | gold | answer | source | completion (tail) |",
                "|---|---|---|---|---|---|"]
        for m in rep["sample_misses"]:
            tail = (m["completion_tail"] or "").replace("\n", "\\n").replace("|", "\\|")[-80:]
            out.append("| {} | {} | {} | {} | {} | {} |".format(m["id"], m["family"], m["gold"].replace("|", "\\|"),
                                                            (m["answer"] or "").replace("|", "\\|"), m["source"], tail))
        out.append("")
    return "\n".join(out)


def render_png(rep, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = ["overall"] + list(rep["families"])
    values = {p: [rep["policies"][p]["accuracy"]] + [rep["families"][f]["policies"][p]["accuracy"]
                                                      for f in rep["families"]] for p in POLICIES}
    width = 0.8 / len(POLICIES)
    fig, ax = plt.subplots(figsize=(max(6.0, 0.9 * len(names) + 2), 4.0))
    for i, p in enumerate(POLICIES):
        xs = [k + (i - (len(POLICIES) - 1) / 2.0) * width for k in range(len(names))]
        ax.bar(xs, [100.0 * v for v in values[p]], width, label=p)
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels(names, rotation=30, ha="right")
    ax.set_ylabel("accuracy %")
    ax.set_ylim(0, 118)
    ax.set_title("math accuracy by family and policy (n=%d)" % rep["total"])
    ax.legend(fontsize=8, ncol=len(POLICIES), loc="upper center")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(str(tmp), format="png", dpi=100)
    plt.close(fig)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gold", required=True, help="gold JSONL: problem, solution[, id]")
    ap.add_argument("--pred", required=True, help="predictions JSONL: id, family, prompt, completion")
    ap.add_argument("--json", action="store_true", help="print the report as one JSON object on stdout")
    ap.add_argument("--ratio", type=float, default=None, help="trainable-parameter ratio for the contest score")
    ap.add_argument("--params", default=None,
                    help="count_params.py JSON (e.g. RUN/eval/params.json): gives --ratio (trainable/8.03e9 for "
                         "Llama3-8B, trainable/total for other models)")
    ap.add_argument("--out-dir", default=None, help="write math_report.{json,md,png} here")
    ap.add_argument("--tolerance", type=float, default=DEFAULT_TOLERANCE,
                    help="relative tolerance of the `tolerance` policy (default %(default)g)")
    ap.add_argument("--allow-missing", action="store_true",
                    help="score gold ids without a prediction as wrong instead of failing")
    ap.add_argument("--misses", type=int, default=20, help="sample misses kept in the report (default 20)")
    args = ap.parse_args(argv)
    if not (args.tolerance >= 0):
        raise KitError("--tolerance must be >= 0")
    if args.params:
        if args.ratio is not None:
            raise KitError("give --ratio or --params, not both")
        params = read_json(args.params)
        try:
            args.ratio = score_ratio(params)  # 8.03e9 for Llama3-8B, the exact total for any other model
        except (KeyError, TypeError, ValueError):
            raise KitError("%s: no 'total' / 'ratio_contest' / 'ratio_exact' (write it with count_params.py --out)"
                           % args.params) from None
    if args.ratio is not None and not (0 <= args.ratio < 1):
        raise KitError("--ratio must be a fraction in [0, 1)")

    gold, gl = read_rows(args.gold, required=("problem", "solution"))
    pred, pl = read_rows(args.pred)
    rep = score_predictions(gold, pred, tolerance=args.tolerance, ratio=args.ratio,
                            allow_missing=args.allow_missing, max_misses=args.misses,
                            gold_lines=gl, pred_lines=pl, gold_name=args.gold, pred_name=args.pred)
    rep["gold"], rep["predictions"] = str(args.gold), str(args.pred)
    md = render_markdown(rep, args.gold, args.pred)
    if args.out_dir:
        out = Path(args.out_dir)
        write_json(out / MATH_REPORT.json, rep)
        with atomic_path(out / MATH_REPORT.md) as tmp:
            tmp.write_text(md, encoding="utf-8")
        render_png(rep, out / MATH_REPORT.png)
    if args.json:
        print(json.dumps(rep, ensure_ascii=False))
    else:
        head = rep["policies"][HEADLINE_POLICY]
        print(md if not args.out_dir else "math accuracy (%s): %s (%d/%d); report in %s"
              % (HEADLINE_POLICY, pct(head["accuracy"]), head["correct"], rep["total"], args.out_dir))
    return 0


if __name__ == "__main__":
    run_main(main)
