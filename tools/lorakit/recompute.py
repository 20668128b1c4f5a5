"""The numbers of a submission, recomputed from raw evidence: the same code writes them (package.py's recompute
phase) and checks them (lorakit.checks, which verify.py runs). Each function returns the manifest section as
package writes it; verify compares every number a submission claims with it.
"""

from pathlib import Path

from . import contest
from .io import file_fingerprint


def file_section(path, records):
    """{name, bytes, sha256, records} of an evaluation input (gold file, SQuAD records)."""
    fp = file_fingerprint(path)
    return {"name": Path(path).name, "bytes": fp["bytes"], "sha256": fp["sha256"], "records": records}


def math_section(report, gold_path, tolerance, primary_policy=None):
    """The manifest's `metrics.math` from a math_metrics.score_predictions report."""
    out = {"gold": file_section(gold_path, report["total"]), "total": report["total"], "tolerance": tolerance}
    if primary_policy is not None:
        out["primary_policy"] = primary_policy
    out["policies"] = report["policies"]
    out["families"] = {f: {"total": s["total"], "policies": s["policies"]} for f, s in report["families"].items()}
    out["integer_rounded"] = report["integer_rounded"]
    return out


def emf1(report):
    """(F1, EM) of a squad_metrics.score_squad report, as floats."""
    return float(report["emf1"]["F1"]), float(report["emf1"]["Em"])


def squad_section(report, records_path, thresholds, basis=None):
    """The manifest's `metrics.squad` from a squad_metrics.score_squad report. `thresholds`: the team's own gate
    {f1, em} (a statement; `passed` is derived under it only when it names both)."""
    f1, em = emf1(report)
    out = {"records": report["total"], "records_file": file_section(records_path, report["total"]),
           "metric": "EmF1Metric", "f1": f1, "em": em, "thresholds": thresholds}
    if "f1" in thresholds and "em" in thresholds:
        out["passed"] = contest.gate_passes(f1, em, thresholds["f1"], thresholds["em"])
    out["official"] = {"f1": float(report["squad_v1.1"]["f1"]), "em": float(report["squad_v1.1"]["exact_match"])}
    if basis:
        out["threshold_basis"] = str(basis)
    return out


def exact_params(counts):
    """lorakit.params.summarize() counts with the ratios unrounded (what claimed ratios are compared with)."""
    return dict(counts, ratio_contest=counts["trainable"] / counts["contest_denominator"],
                ratio_contest_full=counts["trainable"] / counts["contest_denominator"],
                ratio_exact=counts["trainable"] / float(counts["total"]))


def score_section(math_report, counts, policy):
    """The manifest's `metrics.score`: the contest score of `policy`'s accuracy with the weights' ratio."""
    accuracy = math_report["policies"][policy]["accuracy"]
    ratio = contest.score_ratio(counts)
    return {"value": contest.score(accuracy, ratio), "accuracy": accuracy, "ratio": ratio, "policy": policy,
            "formula": contest.SCORE_FORMULA}
