#!/usr/bin/env python3
"""One-screen summary of a finished run: where each artefact is, the loss, the counts and the score table.

Reads only the files the other tools wrote (RUN/train/run.json, RUN/eval/math_report.json,
squad_report.json, params.json, a `verify.py --json` result when given, and RUN/stage_times.tsv: one
`<unix time>\t<stage>` line per stage start that `make demo` appends); it computes nothing new.

  summary.py --run runs/demo --submission submission/demo --verify-json runs/demo/verify.json
"""

import argparse
import json
from pathlib import Path

from lorakit.io import KitError, read_json, run_main

TINY_NOTE = ("Tiny-model accuracy says nothing about Llama3-8B: this model has ~0.3 M parameters and was "
             "pre-trained for minutes on a few generated families; the demo shows the pipeline works end to end. "
             "mass and fraction have only 100 and 45 possible problems, so every test problem of theirs also "
             "occurs in training (reproduction, not generalisation); area, where unseen problems exist, stays "
             "near 0 %. The tiny base cannot read English (its SQuAD F1 is chance level), so the demo's SQuAD "
             "gate runs with thresholds 0; on the notebook the gate is the contest's F1 53.8832 / EM 39.7533.")


def _load(path):
    path = Path(path)
    return read_json(path) if path.exists() else None


def _pct(x):
    return "%6.2f %%" % (100.0 * x) if x is not None else "    -   "


def _loss_line(name, rec):
    loss = (rec or {}).get("loss") or {}
    if not loss:
        return None
    return "%-6s loss %.3f -> %.3f over %d steps (mean of first/last %d: %.3f -> %.3f)" % (
        name, loss.get("first", float("nan")), loss.get("last", float("nan")), loss.get("steps_logged", 0),
        loss.get("window", 0), loss.get("first_mean", float("nan")), loss.get("last_mean", float("nan")))


def math_table(rep, base=None):
    """Per-family accuracy under each policy; with `base` (the base model's report on the same test set) a first
    column with the base model's prediction-precision accuracy, so the LoRA's effect is visible."""
    pols = ["exact", "prediction-precision", "tolerance"]
    head = ("family", "n") + (("base pp",) if base else ()) + ("exact", "pred-prec", "tolerance")
    fmt = "  %-10s %5s" + ("  %8s " if base else "") + "  %8s  %9s  %9s"
    lines = [fmt % head]

    def row_of(name, row, brow):
        accs = [row.get("policies", {}).get(p, {}).get("accuracy") for p in pols]
        cells = [name, str(row.get("total", 0))]
        if base:
            cells.append(_pct((brow or {}).get("policies", {}).get("prediction-precision", {}).get("accuracy")))
        return fmt % tuple(cells + [_pct(a) for a in accs])

    bfam = (base or {}).get("families", {})
    for fam, row in sorted(rep.get("families", {}).items()):
        lines.append(row_of(fam, row, bfam.get(fam)))
    lines.append(row_of("overall", rep, base))
    return lines


def stage_lines(path, now=None):
    """'  [1/7] generate data ...   12.3 s' per stage of a stage_times.tsv (a stage lasts until the next one
    starts, the last one until `now`), then the total."""
    import time

    marks = []
    try:
        with open(str(path), encoding="utf-8") as fh:
            for line in fh:
                stamp, _, name = line.rstrip("\n").partition("\t")
                try:
                    marks.append((float(stamp), name))
                except ValueError:
                    continue
    except OSError:
        return []
    if not marks:
        return []
    now = time.time() if now is None else now
    out = ["time per stage:"]
    for k, (t, name) in enumerate(marks):
        end = marks[k + 1][0] if k + 1 < len(marks) else now
        out.append("  %-66s %8s" % (name[:66], _duration(end - t)))
    out.append("  %-66s %8s" % ("total", _duration(now - marks[0][0])))
    return out


def _duration(seconds):
    seconds = max(0.0, seconds)
    if seconds < 60:
        return "%.1f s" % seconds
    whole = int(round(seconds))
    return "%dm%02ds" % (whole // 60, whole % 60)


def build_summary(run, submission=None, verify=None, title="summary"):
    run = Path(run)
    out = ["=" * 100, "%s: %s" % (title, run), "=" * 100, "artefacts:"]
    places = [("data", run / "data", "conversation.json, train.mindrecord, data_report.md/png"),
              ("base", run / "base", "the tiny stand-in base model (full-parameter pre-training)"),
              ("train", run / "train", "config.yaml, run.json, loss.jsonl, loss.png, output/checkpoint/"),
              ("adapter", run / "adapter", "adapter.ckpt + adapter_config.json"),
              ("folded", run / "folded", "folded.ckpt (W + alpha/r * B @ A)"),
              ("eval", run / "eval", "predictions, math_report.md/png, squad_report.md, params.json")]
    for name, path, what in places:
        if path.exists():
            out.append("  %-10s %-28s %s" % (name, str(path) + "/", what))
    if submission:
        sub = Path(submission)
        zip_path = sub.parent / (sub.name + ".zip")
        out.append("  %-10s %-28s %s" % ("submission", str(sub) + "/",
                                         "manifest.json, REPORT.md" + (", + " + str(zip_path) if zip_path.exists()
                                                                        else "")))
    for name in ("base", "train"):
        line = _loss_line(name, _load(run / name / "run.json"))
        if line:
            out.append(line)
    params = _load(run / "eval" / "params.json")
    if params:
        out.append("params: trainable %s of %s (ratio %.6g)" % (params.get("trainable"), params.get("total"),
                                                               params.get("ratio_exact", float("nan"))))
    rep = _load(run / "eval" / "math_report.json")
    base_rep = _load(run / "base" / "eval" / "math_report.json")
    if rep:
        out.append("math (held-out test set, %d problems%s):" % (
            rep.get("total", 0), "; 'base pp' = the base model alone" if base_rep else ""))
        out.extend(math_table(rep, base_rep))
        worked = (rep.get("answer_sources") or {}).get("marker")
        if worked is not None:
            before = ((base_rep or {}).get("answer_sources") or {}).get("marker")
            out.append("  answers in the worked (cot) format, ending in the final-answer marker: %s%d of %d" % (
                "%d -> " % before if before is not None else "", worked, rep.get("total", 0)))
        score = rep.get("score") or {}
        if score.get("by_policy"):
            out.append("  contest score %s: %s" % (score.get("formula", ""), ", ".join(
                "%s %.4f" % (k, v) for k, v in score["by_policy"].items())))
    sq = _load(run / "eval" / "squad_report.json")
    if sq:
        g = sq.get("gate") or {}
        out.append("SQuAD (%d records): EmF1 F1 %.2f, Em %.2f; official v1.1 F1 %.2f, EM %.2f; gate %s%s" % (
            sq.get("total", 0), sq["emf1"]["F1"], sq["emf1"]["Em"], sq.get("squad_v1.1", {}).get("f1", 0.0),
            sq.get("squad_v1.1", {}).get("em", 0.0), "PASS" if g.get("pass") else ("FAIL" if g else "not run"),
            " (%s)" % g["basis"] if g.get("basis") else ""))
    base_sq = _load(run / "base" / "eval" / "squad_report.json")
    if base_sq:
        out.append("SQuAD of the base model alone: EmF1 F1 %.2f, Em %.2f" % (base_sq["emf1"]["F1"], base_sq["emf1"]["Em"]))
    if verify:
        out.append("verify: %s (%d passed, %d failed, %d skipped)" % (
            "PASS" if verify.get("verified") else "FAIL", verify.get("passed", 0), verify.get("failed", 0),
            verify.get("skipped", 0)))
    out.extend(stage_lines(run / "stage_times.tsv"))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", required=True, help="run folder (RUN)")
    ap.add_argument("--submission", help="submission folder built from it")
    ap.add_argument("--verify-json", help="the output of `verify.py --json` for that submission")
    ap.add_argument("--title", default="summary")
    ap.add_argument("--tiny-note", action="store_true", help="end with the note that tiny accuracy is not 8B's")
    args = ap.parse_args()
    if not Path(args.run).is_dir():
        raise KitError("run folder not found: %s" % args.run)
    verify = None
    if args.verify_json:
        try:
            verify = json.loads(Path(args.verify_json).read_text(encoding="utf-8").strip().splitlines()[-1])
        except (OSError, ValueError, IndexError) as exc:
            raise KitError("%s: not a verify.py --json result: %s" % (args.verify_json, exc)) from None
    lines = build_summary(args.run, args.submission, verify, args.title)
    if args.tiny_note:
        lines.append("note: " + TINY_NOTE)
    lines.append("=" * 100)
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    run_main(main)
