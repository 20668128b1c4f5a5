"""The rules the cot writer (lorakit.cot_write) and the cot checker (lorakit.cot_check) both apply: the recipes
and their parameters, and how a final answer is written (exact, rounded, significant digits) from an exact value.

The checker never imports the writer: what both need lives here, once. lorakit.cot documents the recipes.
"""

import math
import re
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Context, Decimal, DivisionByZero, Inexact, InvalidOperation, Overflow
from fractions import Fraction
from typing import Optional

from .families import final_answer as _family_answer
from .io import KitError

DEFAULT_DECIMALS = 4        # answer decimals of the cot recipe for inexact results
MAX_DECIMALS = 12
POWER_STEPS_MAX = 5         # function y = Cx^N: repeated multiplication up to this N
FUNCTION_SIG_DIGITS = 5     # function with larger N: the value to this many significant digits
# Token budget, measured with the real Llama 3 tokenizer on contest_sample.jsonl plus 2,000 generated records
# per family (docs/recipes-data.md): every Chinese row (BOS + prompt + target + EOS) of these recipes fits this
# seq_length with each prompt template (vicuna, vicuna_alpaca, alpaca, plain; longest cot row 246 tokens, with
# vicuna_alpaca). English items are as long as under stock (the converter drops or truncates them by policy).
RECOMMENDED_SEQ_LENGTH = {"stock": 256, "round": 256, "cot": 256}
# (median, max) target tokens per family of the default cot recipe (D = 4), same measurement
EXPECTED_COT_TOKENS = {
    "add": (42, 44), "sub": (42, 44), "mul": (139, 170), "div": (136, 171), "sqrt": (155, 163),
    "power": (40, 126), "function": (19, 118), "equation": (93, 117), "mean": (49, 67), "area": (30, 32),
    "mass": (13, 13), "discount": (121, 155), "sales": (55, 55), "fraction": (21, 21),
}


def recommended_seq_length(recipe):
    """The seq_length a recipe's Chinese rows need (measured, see RECOMMENDED_SEQ_LENGTH).

    Each answer decimal beyond the default adds a line to / and sqrt: cot:5 rows reach 262 tokens with the
    vicuna_alpaca template, cot:8 351, cot:12 ~500; so cot:D with D > DEFAULT_DECIMALS needs 512."""
    r = parse_recipe(recipe)
    if r.kind == "cot" and r.decimals > DEFAULT_DECIMALS:
        return 512
    return RECOMMENDED_SEQ_LENGTH[r.kind]


RECIPES = ("stock", "cot", "cot:D", "round:N")

# exact arithmetic: any rounding, invalid operation or overflow raises instead of silently rounding
EXACT = Context(prec=5000, rounding=ROUND_HALF_UP, Emax=999999, Emin=-999999,
                 traps=[Inexact, InvalidOperation, DivisionByZero, Overflow])


class RewriteError(KitError):
    """A record the recipe cannot rewrite (unparsed problem, unknown family, inconsistent gold)."""


@dataclass(frozen=True)
class Recipe:
    kind: str                       # "stock" | "cot" | "round"
    decimals: Optional[int] = None  # cot: answer decimals; round: N

    @property
    def name(self):
        if self.kind == "stock":
            return "stock"
        if self.kind == "cot":
            return "cot" if self.decimals == DEFAULT_DECIMALS else f"cot:{self.decimals}"
        return f"round:{self.decimals}"


def parse_recipe(name):
    """Recipe of "stock", "cot", "cot:D" or "round:N" (0 <= N, D <= MAX_DECIMALS); KitError otherwise."""
    if isinstance(name, Recipe):
        return name
    text = str(name).strip()
    if text == "stock":
        return Recipe("stock")
    if text == "cot":
        return Recipe("cot", DEFAULT_DECIMALS)
    m = re.fullmatch(r"(cot|round):(\d+)", text)
    if m and int(m.group(2)) <= MAX_DECIMALS:
        return Recipe(m.group(1), int(m.group(2)))
    raise KitError(f"unknown recipe {text!r} (choose stock, cot, cot:D or round:N with 0 <= D, N <= {MAX_DECIMALS})")


# ----------------------------------------------------------------------------------------------- numbers

def dec(text):
    try:
        return Decimal(text)
    except (InvalidOperation, TypeError, ValueError):
        raise Bad(f"not a number: {text!r}") from None


def plain(d):
    """Shortest plain text of a Decimal: no exponent, no trailing zeros ("15177150", "50.5905", "0")."""
    s = format(d, "f")
    if "." in s:
        s = s.rstrip("0").rstrip(".")
    if s in ("-0", ""):
        s = "0"
    return s


def abs_literal(text):
    return text[1:] if text.startswith("-") else text


def decimals_of(text):
    return len(text.split(".", 1)[1]) if "." in text else 0


def round_fraction(fr, decimals):
    """Fraction -> Decimal rounded ROUND_HALF_UP (half away from zero) to exactly `decimals` places."""
    scale = 10 ** decimals
    num = abs(fr.numerator) * scale
    q, r = divmod(num, fr.denominator)
    if 2 * r >= fr.denominator:
        q += 1
    if fr < 0 and q:
        q = -q
    return Decimal(q).scaleb(-decimals)


def fixed(d, decimals):
    """Text of a Decimal (or Fraction) rounded ROUND_HALF_UP to exactly `decimals` places ("-0.00" -> "0.00")."""
    fr = d if isinstance(d, Fraction) else Fraction(d)
    s = format(round_fraction(fr, decimals), "f")
    if s.startswith("-") and set(s[1:]) <= set("0."):
        s = s[1:]
    return s


def terminates_within(fr, decimals):
    return (fr * 10 ** decimals).denominator == 1


def float_style(fr):
    """Shortest float repr of an exact value that has a short decimal form (21.24, 58.0, -1200.0)."""
    s = repr(float(fr))
    if Fraction(Decimal(s)) != fr:
        raise Bad(f"exact value {fr} has no exact float repr")
    return s


def rounded_answer(exact, gold_text, decimals):
    """The answer rule for inexact families (module doc): exact if <= D decimals, else ROUND_HALF_UP to D."""
    if terminates_within(exact, decimals):
        try:
            if Fraction(Decimal(gold_text)) == exact:
                return gold_text
        except (InvalidOperation, ValueError):
            pass
        return float_style(exact)
    return fixed(exact, decimals)


E_NOTATION = re.compile(r"[eE]")


def sig_round(d, digits):
    """str() of a Decimal rounded ROUND_HALF_UP to `digits` significant digits (gold-like E-notation)."""
    return str(Context(prec=digits, rounding=ROUND_HALF_UP, Emax=999999, Emin=-999999).plus(d))


def function_answer(value, gold):
    """The CoT answer of a function value too long for step lines (module doc): FUNCTION_SIG_DIGITS significant
    digits, never rounded above the units digit, the gold text itself when the gold is E-notation >= 1e28."""
    if E_NOTATION.search(gold) and dec(gold).adjusted() >= 0:
        return gold
    if value.adjusted() >= FUNCTION_SIG_DIGITS:
        return fixed(value, 0)
    return sig_round(value, FUNCTION_SIG_DIGITS)


def place_terms(d):
    """Place-value terms of a non-negative Decimal, highest first: 3043.01 -> [3000, 40, 3, 0.01]; 0 -> [0]."""
    sign, digits, exp = d.as_tuple()
    terms = []
    n = len(digits)
    for i, dig in enumerate(digits):
        if dig:
            terms.append(Decimal(dig).scaleb(exp + n - 1 - i))
    return terms or [Decimal(0)]


class Bad(Exception):
    """One verification failure (message names the line)."""


def gold_answer(solution, family):
    ans = _family_answer(solution, family)
    if not ans:
        raise Bad(f"gold solution has no answer: {solution!r}")
    return ans


# --- round:N



def round_answer(text, n):
    """A numeric answer text rounded to n decimals (ROUND_HALF_UP); shorter answers are returned unchanged."""
    try:
        d = Decimal(text)
    except (InvalidOperation, ValueError):
        return text
    if not d.is_finite():
        return text
    if E_NOTATION.search(text):
        if d.adjusted() >= 0:
            return text  # a rounded mantissa would round above the units digit
        q = Context(prec=n + 1, rounding=ROUND_HALF_UP, Emax=999999, Emin=-999999).plus(d)
        return format(q, f".{n}E")
    if decimals_of(text) <= n:
        return text
    return fixed(d, n)


def sign_line(a, b):
    """The sign rule of a product in 5 tokens: "负*负=正" (the steps then work on the magnitudes)."""
    na, nb = a.startswith("-"), b.startswith("-")
    return "{}*{}={}".format("负" if na else "正", "负" if nb else "正", "负" if na != nb else "正")


def sqrt_pairs(x):
    """Digit pairs of a non-negative literal: "6489.72" -> (["64", "89"], ["72"]); odd decimals padded."""
    ip, _, fp = x.partition(".")
    ip = ip.lstrip("0") or "0"
    if len(ip) % 2:
        ip = "0" + ip if ip != "0" else ip
    ipairs = [ip[i:i + 2] for i in range(0, len(ip), 2)] if ip != "0" else ["0"]
    if len(fp) % 2:
        fp += "0"
    fpairs = [fp[i:i + 2] for i in range(0, len(fp), 2)]
    # a leading pair "0X" is written as "X"
    if len(ipairs[0]) == 2 and ipairs[0][0] == "0":
        ipairs[0] = ipairs[0][1]
    return ipairs, fpairs


def exact_sqrt(fr):
    n, d = fr.numerator, fr.denominator
    rn, rd = math.isqrt(n), math.isqrt(d)
    if rn * rn == n and rd * rd == d:
        return Fraction(rn, rd)
    return None
