#!/usr/bin/env python3
"""Generate contest-format math records {"problem","solution"} (the 11 Chinese families of train.json).

Deterministic: the same arguments give a byte-identical file. Family of each record is drawn with the
given weights (default: the real unique-count distribution, lorakit.families.DEFAULT_WEIGHTS); the
numbers follow the real ranges and the solutions are the real generator's exact strings.

Examples:
  gen_math.py --n 809993 --seed 0 --out .cache/gen/train.jsonl
  gen_math.py --n 2000 --seed 7 --out eval.jsonl --families mul,div --weights mul=1,div=3
  gen_math.py --n 800000 --seed 0 --out like_train.jsonl --weights draws   # ~261k duplicates, like the real file
  gen_math.py --n 10000 --seed 1 --out mix.jsonl --english-from tests/data/contest_sample.jsonl
"""

import argparse
import bisect
import itertools
import json
import random
import sys
import time
from collections import Counter

from lorakit.families import CHINESE_FAMILIES, DEFAULT_WEIGHTS, DRAW_WEIGHTS, classify, generate
from lorakit.io import KitError, atomic_open, iter_jsonl, run_main

# Real train.json: 9,993 English records (all unique), against 538,949 unique Chinese ones out of 800,000
# Chinese draws, so English weighs 9993 in both presets.
ENGLISH_WEIGHT = 9993
PRESETS = {"unique": DEFAULT_WEIGHTS, "draws": DRAW_WEIGHTS}
CHUNK = 8192


def parse_weights(text, allowed):
    """"[PRESET,]add=1,mul=2.5" -> ("unique" or the preset, {"add": 1.0, "mul": 2.5}); KitError on bad
    syntax, names or values."""
    out = {}
    preset = "unique"
    for i, item in enumerate(filter(None, (s.strip() for s in text.split(",")))):
        if i == 0 and item in PRESETS:
            preset = item
            continue
        name, sep, value = item.partition("=")
        name = name.strip()
        if not sep:
            raise KitError(f"--weights: {item!r} is not NAME=WEIGHT")
        if name not in allowed:
            raise KitError("--weights: unknown family {!r} (choose from {})".format(name, ", ".join(allowed)))
        try:
            w = float(value)
        except ValueError:
            raise KitError(f"--weights: {name}: weight {value!r} is not a number") from None
        if not w >= 0 or w == float("inf"):
            raise KitError(f"--weights: {name}: weight must be a finite number >= 0")
        out[name] = w
    return preset, out


def load_english(path):
    """The English records (classify == "english") of a JSONL file, in file order."""
    bad = []
    rows = [{"problem": o["problem"], "solution": o["solution"]}
            for _, o in iter_jsonl(path, required=("problem", "solution"), bad=bad)
            if classify(o["problem"]) == "english"]
    if bad:
        more = f" (and {len(bad) - 1} more bad lines)" if len(bad) > 1 else ""
        raise KitError(f"{bad[0]}{more}")
    if not rows:
        raise KitError(f"{path}: no English records in it")
    return rows


def build_weights(families_arg, weights_arg, english):
    allowed = list(CHINESE_FAMILIES) + (["english"] if english else [])
    if families_arg:
        fams = [f.strip() for f in families_arg.split(",") if f.strip()]
        for f in fams:
            if f not in allowed:
                hint = " (needs --english-from)" if f == "english" else ""
                raise KitError("--families: unknown family {!r}{} (choose from {})".format(f, hint, ", ".join(allowed)))
    else:
        fams = allowed
    preset, overrides = parse_weights(weights_arg or "", allowed)
    base = dict(PRESETS[preset], english=ENGLISH_WEIGHT)
    weights = {f: float(base[f]) for f in fams}
    for name, w in overrides.items():
        if name not in weights:
            raise KitError(f"--weights: {name} is not among --families")
        weights[name] = w
    weights = {f: w for f, w in weights.items() if w > 0}
    if not weights:
        raise KitError("all family weights are 0")
    return weights


def generate_records(n, seed, weights, english_rows=None):
    """Yield n records; one random.Random(seed) drives the family draw and the numbers."""
    rng = random.Random(seed)
    names = list(weights)
    cum = list(itertools.accumulate(weights[f] for f in names))
    total = cum[-1]
    eng_iter = None
    if english_rows:
        pool = list(english_rows)
        random.Random(seed ^ 0x5EED).shuffle(pool)
        eng_iter = itertools.cycle(pool)
    rand, pick = rng.random, bisect.bisect_right
    last = len(names) - 1
    for _ in range(n):
        fam = names[min(pick(cum, rand() * total), last)]
        if fam == "english":
            yield fam, next(eng_iter)
        else:
            yield fam, generate(fam, rng)


class _NoBar:
    def update(self, n):
        pass

    def close(self):
        pass


def _progress(total, disable):
    """tqdm bar on stderr; a silent stand-in when disabled or tqdm is not installed."""
    if disable:
        return _NoBar()
    try:
        from tqdm import tqdm
    except ImportError:
        return _NoBar()
    return tqdm(total=total, unit="rec", unit_scale=True, file=sys.stderr, mininterval=0.5, desc="gen_math")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__.split("\n\n", 1)[1])
    ap.add_argument("--n", type=int, required=True, help="number of records")
    ap.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    ap.add_argument("--out", required=True, help="output JSONL (written atomically)")
    ap.add_argument("--families", help="comma list of families to draw from (default: all 14 Chinese)")
    ap.add_argument("--weights", metavar="[PRESET,]NAME=W,...",
                    help="family weights: preset 'unique' (default: real unique counts per family) or 'draws' "
                    "(estimated real draws, reproduces train.json's duplicates), then NAME=W overrides")
    ap.add_argument("--english-from", metavar="FILE",
                    help=f"mix in the English records of this JSONL (weight {ENGLISH_WEIGHT} unless --weights "
                    "english=W)")
    ap.add_argument("--json", action="store_true", help="print one JSON summary object on stdout")
    ap.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = ap.parse_args(argv)
    if args.n < 0:
        raise KitError("--n must be >= 0")

    english_rows = load_english(args.english_from) if args.english_from else None
    weights = build_weights(args.families, args.weights, english_rows is not None)

    t0 = time.perf_counter()
    counts = Counter()
    bar = _progress(args.n, disable=args.no_progress or args.n < 100000)
    dumps = json.dumps
    with atomic_open(args.out) as fh:
        buf = []
        for fam, rec in generate_records(args.n, args.seed, weights, english_rows):
            counts[fam] += 1
            buf.append(dumps(rec, ensure_ascii=False))
            if len(buf) >= CHUNK:
                fh.write("\n".join(buf) + "\n")
                bar.update(len(buf))
                buf = []
        if buf:
            fh.write("\n".join(buf) + "\n")
            bar.update(len(buf))
    bar.close()
    secs = time.perf_counter() - t0
    summary = {"out": args.out, "records": args.n, "seed": args.seed, "seconds": round(secs, 3),
               "families": {f: counts[f] for f in weights}}
    if args.json:
        print(json.dumps(summary, ensure_ascii=False))
    else:
        print(f"gen_math: {args.n} records -> {args.out} in {secs:.1f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    run_main(main)
