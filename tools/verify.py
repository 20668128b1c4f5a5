#!/usr/bin/env python3
"""Verify a contest submission (folder or zip) by re-deriving every number it claims.

Checks, one line each (PASS / FAIL and why; SKIP when not asked for), in this order (lorakit.checks.CHECKS):
%s

The submission is hostile input. Nothing from it is executed, imported or unpickled: JSON strictly (no duplicate
keys, NaN, Infinity, overflowing or 40+-digit numbers, bounded nesting), YAML with a safe loader after its events
were checked (nesting, alias bombs), checkpoints through the bounded protobuf reader of lorakit.ckpt_io, regexes
with a time limit; every file read has a size cap; names are printed escaped. Exit 0 only when every check passes.

  verify.py submission/demo                       # folder (uses the gold copy packaged in eval/)
  verify.py submission/demo.zip --gold test.jsonl --squad-records squad_eval.jsonl --json
"""

import argparse
import json
import math
import signal
import sys
from pathlib import Path

from lorakit import checks, contest
from lorakit import manifest as mf
from lorakit.io import atomic_open, run_main, show
from lorakit.math_metrics import DEFAULT_TOLERANCE, POLICIES, check_tolerance

__doc__ = __doc__ % checks.describe()


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
    D = checks.Options.DEFAULTS
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("submission", help="submission folder (submission/<team>) or its zip")
    ap.add_argument("--gold", help="math gold test file (JSONL problem, solution[, id]); default: the packaged copy")
    ap.add_argument("--squad-records", help="SQuAD eval records (JSONL from squad.py prepare); default: packaged copy")
    ap.add_argument("--squad-thresholds", nargs=2, type=_finite_float, metavar=("F1", "EM"),
                    help="the judge's SQuAD gate (default: the contest's %s %s; thresholds written in the submission "
                         "are never used)" % contest.JUDGE_SQUAD_THRESHOLDS)
    ap.add_argument("--tolerance", type=_finite_float,
                    help="relative tolerance of the `tolerance` policy, in [0, 1) (default %g)" % DEFAULT_TOLERANCE)
    ap.add_argument("--policy", choices=POLICIES,
                    help="math policy the score is judged with (default: the contest's, %s)" % contest.JUDGE_POLICY)
    ap.add_argument("--rerun", action="store_true", help="re-run inference with the submitted adapter and compare")
    ap.add_argument("--test", help="problems file for --rerun (default: the gold file)")
    ap.add_argument("--rerun-limit", type=int, help="--rerun only the first N test records (0: all)")
    ap.add_argument("--base-checkpoint", help="base model checkpoint for --rerun (default: the base packaged with a "
                                              "random-init run)")
    ap.add_argument("--tokenizer", help="tokenizer.model for --rerun (default: `tiny` when the run used it)")
    ap.add_argument("--rerun-agreement", type=_finite_float,
                    help="--rerun: share of completions that must be identical (default %g)" % D["rerun_agreement"])
    ap.add_argument("--rerun-tolerance", type=int,
                    help="--rerun: records by which the re-run's correct count may differ (default %d)"
                         % D["rerun_tolerance"])
    ap.add_argument("--schema", help="manifest schema (default: the kit's submission/schema/manifest.schema.json)")
    ap.add_argument("--max-members", type=int, help="most files allowed (default %d)" % D["max_members"])
    ap.add_argument("--max-member-bytes", type=int, help="largest file allowed (default %d)" % D["max_member_bytes"])
    ap.add_argument("--max-total-bytes", type=int, help="largest total allowed (default %d)" % D["max_total_bytes"])
    ap.add_argument("--max-json-bytes", type=int,
                    help="largest JSON/JSONL/text file (the manifest: %d, a YAML: %d bytes)"
                         % (mf.MAX_MANIFEST_BYTES, mf.MAX_YAML_BYTES))
    ap.add_argument("--json", action="store_true", help="print one JSON object on stdout instead of lines")
    ap.add_argument("--json-out", metavar="FILE", help="also write the JSON object to FILE (the lines still print)")
    ap.set_defaults(**D)
    args = ap.parse_args(argv)
    if args.tolerance is not None:
        check_tolerance(args.tolerance, "--tolerance")

    # SIGTERM / SIGHUP (a judge's timeout, a closed terminal) unwind like Ctrl-C so the extraction folder is
    # removed; after a SIGKILL the next run sweeps it (lorakit.io.pid_tempdir)
    handlers = {}
    for sig in (signal.SIGTERM, signal.SIGHUP):
        try:
            handlers[sig] = signal.signal(sig, _on_signal)
        except (ValueError, OSError):  # not the main thread
            pass
    try:
        results = checks.verify_submission(args.submission, checks.Options.from_namespace(args),
                                           echo=None if args.json else lambda line: print(line, flush=True))
    except _Terminated as exc:
        print("verify: stopped by signal %d; temporary files removed" % exc.args[0], file=sys.stderr)
        return 128 + exc.args[0]
    finally:
        for sig, old in handlers.items():
            signal.signal(sig, old)
    summary, doc = checks.summary(show(Path(args.submission).name), results)
    if args.json_out:
        with atomic_open(args.json_out) as fh:
            fh.write(json.dumps(doc, ensure_ascii=False) + "\n")
    if args.json:
        print(json.dumps(doc, ensure_ascii=False))
    else:
        print(summary)
    sys.stdout.flush()
    return 0 if doc["verified"] else 1


if __name__ == "__main__":
    run_main(main)
