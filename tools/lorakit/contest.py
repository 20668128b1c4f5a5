"""The contest's rules, once. Every tool and library module that scores, counts, gates or judges takes them from
here: the score and its weights, the trainable ratio (denominator, rounding, printed form), the math policy the
score uses, the SQuAD gate and its thresholds, and what a judge applies by default.

Sources: /work/shared/docs/CONTEST.md (sections 4 and 5) and docs/eval.md (why prediction-precision is the
contest's policy). Nothing here imports the rest of the kit.
"""

import math

# ---------------------------------------------------------------- the score

RATIO_WEIGHT = 0.3
ACCURACY_WEIGHT = 0.7
SCORE_FORMULA = "(1 - ratio) * 0.3 + accuracy * 0.7"


def score(accuracy, ratio):
    """The contest's score: (1 - ratio) * 0.3 + accuracy * 0.7 (accuracy and ratio as fractions)."""
    return (1.0 - float(ratio)) * RATIO_WEIGHT + float(accuracy) * ACCURACY_WEIGHT


# ---------------------------------------------------------------- the trainable ratio

# The contest divided by this (the base model size, rounded); the exact base total is 8,030,261,248.
CONTEST_DENOMINATOR = 8.03e9
CONTEST_DENOMINATOR_TEXT = "8.03e9"  # as messages name it
LLAMA3_8B_TOTAL = 8030261248  # exact base total of Llama3-8B (CONTEST.md section 5)
# The leaderboard printed ratios to 6 significant digits (0.000424393, 0.00679028): ratio_contest is stored so.
LEADERBOARD_FORMAT = "%.6g"
# ratio_contest_full and ratio_exact keep 12 significant digits; reports and messages print ratios with 9.
STORED_FORMAT = "%.12g"
PRINTED_FORMAT = "%.9g"
# Claimed ratios must equal the weights' to this relative tolerance (or be the leaderboard's rounding).
RATIO_REL_TOL = 1e-6


def ratio_contest(trainable):
    """trainable / 8.03e9 as the leaderboard printed it (6 significant digits)."""
    return float(LEADERBOARD_FORMAT % (trainable / CONTEST_DENOMINATOR))


def ratio_contest_full(trainable):
    """trainable / 8.03e9, unrounded but for STORED_FORMAT."""
    return float(STORED_FORMAT % (trainable / CONTEST_DENOMINATOR))


def ratio_exact(trainable, total):
    """trainable / total (the model's own base total), or None without a total."""
    return float(STORED_FORMAT % (trainable / total)) if total else None


def ratio_text(ratio):
    """How the kit prints a ratio (reports, messages, REPORT.md)."""
    return PRINTED_FORMAT % ratio


def score_ratio(params):
    """The ratio the contest score uses: trainable / 8.03e9 for Llama3-8B itself, else the exact
    trainable / total (8.03e9 means nothing for the tiny CPU model). `params` is count_params' JSON."""
    if int(params["total"]) == LLAMA3_8B_TOTAL:
        return float(params["ratio_contest"])
    return float(params["ratio_exact"])


def _finite_number(x):
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def ratio_matches(claimed, exact):
    """A claimed ratio equals the exact quotient to RATIO_REL_TOL relative, or is its leaderboard rounding."""
    if not (_finite_number(claimed) and _finite_number(exact)):
        return False
    if claimed == exact or abs(claimed - exact) <= RATIO_REL_TOL * max(abs(claimed), abs(exact)):
        return True
    return claimed == float(LEADERBOARD_FORMAT % exact)


# ---------------------------------------------------------------- the math policy

# The math policy the score is computed with (docs/eval.md argues it is the contest's rule); score_math reports
# it as the headline, package scores with it, verify judges with it unless the judge names another.
HEADLINE_POLICY = "prediction-precision"
JUDGE_POLICY = HEADLINE_POLICY

# ---------------------------------------------------------------- the SQuAD gate

SQUAD_BASE_F1, SQUAD_BASE_EM = 59.8702, 44.1703        # base Llama3-8B, stock eval (CONTEST.md section 4)
SQUAD_GATE_F1, SQUAD_GATE_EM = 53.8832, 39.7533        # 90 % of the base, as the contest states them
SQUAD_FRACTION = 0.9
# The SQuAD gate a judge applies unless told otherwise (verify --squad-thresholds, make verify SQUAD_THRESHOLDS=):
# the contest's 90 % of base Llama3-8B. Thresholds written in a submission are never used for the verdict.
JUDGE_SQUAD_THRESHOLDS = (SQUAD_GATE_F1, SQUAD_GATE_EM)


def gate_passes(f1, em, f1_min, em_min):
    """The SQuAD gate: EmF1 F1 and EM both reach their thresholds."""
    return bool(f1 >= f1_min and em >= em_min)
