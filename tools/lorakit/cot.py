"""Target rewrites (recipes) for the math data: stock, cot, round:N; and their exact verification.

    recipe = parse_recipe("cot")                       # "stock", "cot", "cot:D", "round:N"
    target = rewrite(recipe, record, parsed)           # the training target of one record
    errors = verify(target, parsed, record["solution"], recipe)   # [] = every step and the answer check out

Recipes (docs/recipes-data.md has the formats, examples and token counts):
  stock    the gold solution unchanged.
  round:N  the gold solution with its final number rounded to N decimals (ROUND_HALF_UP), wording kept;
           answers that already have <= N decimals are left as written, E-notation with a negative
           exponent keeps E-notation with the mantissa rounded to N decimals, E-notation with a positive
           exponent is left as written (rounding its mantissa would round above the units digit, which the
           scorers count wrong), p/q fractions are left alone.
  cot      step-by-step targets (Goat-style), one step per line, ending in ONE line `答案：<R>`.
  cot:D    the same with D answer decimals instead of DEFAULT_DECIMALS.
English items are passed through unchanged by every recipe.

The final answer R of a CoT target:
  * exact families (+ - * power area mass fraction, function for N <= POWER_STEPS_MAX): the gold answer
    text itself, character for character;
  * the others (/ sqrt mean equation discount sales): if the exact value has at most D decimals, that exact
    value (the gold text when it equals it, else its shortest float repr, e.g. 21.24 for the gold's
    21.240000000000002); otherwise the exact value rounded ROUND_HALF_UP to exactly D decimals;
  * function with N > POWER_STEPS_MAX: the value rounded ROUND_HALF_UP to FUNCTION_SIG_DIGITS significant
    digits, written as Python's str(Decimal) (E-notation for tiny values, like the gold), but never coarser
    than the units digit: from 10**FUNCTION_SIG_DIGITS on, the value rounded to a whole number, written out;
    and the gold text itself when the gold is in E-notation with a positive exponent (>= 1e28). The scorers
    judge E-notation at the precision of the number written out in full, so a rounded mantissa such as
    `2.85E+85` would be a wrong answer (lorakit.metrics).
Every CoT step line is written compactly (no spaces: Llama 3 spends one token on a space before a number).

verify() never trusts rewrite(): it re-parses every line with its family's grammar, recomputes each step
exactly (int / Decimal with traps on inexact results / Fraction), checks that each step continues the
previous one and uses the problem's own operands, and checks that the answer equals the exact value and the
gold at the stated precision.
"""

import math
import re
from dataclasses import dataclass
from decimal import (
    ROUND_HALF_UP,
    Context,
    Decimal,
    DivisionByZero,
    Inexact,
    InvalidOperation,
    Overflow,
    localcontext,
)
from fractions import Fraction
from typing import Optional

from .families import final_answer as _family_answer
from .io import KitError

# The one final-answer line every CoT target ends with; the scorer prefers the number after it.
FINAL_MARKER = "答案："

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
_EXACT = Context(prec=5000, rounding=ROUND_HALF_UP, Emax=999999, Emin=-999999,
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


def final_answer_of(target):
    """The answer text after the last FINAL_MARKER of `target` (to the end of that line), or None."""
    if not isinstance(target, str):
        return None
    i = target.rfind(FINAL_MARKER)
    if i < 0:
        return None
    ans = target[i + len(FINAL_MARKER):].split("\n", 1)[0].strip()
    return ans or None


# ----------------------------------------------------------------------------------------------- numbers

def _dec(text):
    try:
        return Decimal(text)
    except (InvalidOperation, TypeError, ValueError):
        raise _Bad(f"not a number: {text!r}") from None


def _plain(d):
    """Shortest plain text of a Decimal: no exponent, no trailing zeros ("15177150", "50.5905", "0")."""
    s = format(d, "f")
    if "." in s:
        s = s.rstrip("0").rstrip(".")
    if s in ("-0", ""):
        s = "0"
    return s


def _nat(d):
    """Plain text keeping the Decimal's own exponent ("923905.4400" for 961.20*961.20)."""
    return format(d, "f")


def _abs_literal(text):
    return text[1:] if text.startswith("-") else text


def _decimals_of(text):
    return len(text.split(".", 1)[1]) if "." in text else 0


def _round_fraction(fr, decimals):
    """Fraction -> Decimal rounded ROUND_HALF_UP (half away from zero) to exactly `decimals` places."""
    scale = 10 ** decimals
    num = abs(fr.numerator) * scale
    q, r = divmod(num, fr.denominator)
    if 2 * r >= fr.denominator:
        q += 1
    if fr < 0 and q:
        q = -q
    return Decimal(q).scaleb(-decimals)


def _fixed(d, decimals):
    """Text of a Decimal (or Fraction) rounded ROUND_HALF_UP to exactly `decimals` places ("-0.00" -> "0.00")."""
    fr = d if isinstance(d, Fraction) else Fraction(d)
    s = format(_round_fraction(fr, decimals), "f")
    if s.startswith("-") and set(s[1:]) <= set("0."):
        s = s[1:]
    return s


def _terminates_within(fr, decimals):
    return (fr * 10 ** decimals).denominator == 1


def _float_style(fr):
    """Shortest float repr of an exact value that has a short decimal form (21.24, 58.0, -1200.0)."""
    s = repr(float(fr))
    if Fraction(Decimal(s)) != fr:
        raise _Bad(f"exact value {fr} has no exact float repr")
    return s


def _rounded_answer(exact, gold_text, decimals):
    """The answer rule for inexact families (module doc): exact if <= D decimals, else ROUND_HALF_UP to D."""
    if _terminates_within(exact, decimals):
        try:
            if Fraction(Decimal(gold_text)) == exact:
                return gold_text
        except (InvalidOperation, ValueError):
            pass
        return _float_style(exact)
    return _fixed(exact, decimals)


_E_NOTATION = re.compile(r"[eE]")


def _sig_round(d, digits):
    """str() of a Decimal rounded ROUND_HALF_UP to `digits` significant digits (gold-like E-notation)."""
    return str(Context(prec=digits, rounding=ROUND_HALF_UP, Emax=999999, Emin=-999999).plus(d))


def _function_answer(value, gold):
    """The CoT answer of a function value too long for step lines (module doc): FUNCTION_SIG_DIGITS significant
    digits, never rounded above the units digit, the gold text itself when the gold is E-notation >= 1e28."""
    if _E_NOTATION.search(gold) and _dec(gold).adjusted() >= 0:
        return gold
    if value.adjusted() >= FUNCTION_SIG_DIGITS:
        return _fixed(value, 0)
    return _sig_round(value, FUNCTION_SIG_DIGITS)


def _place_terms(d):
    """Place-value terms of a non-negative Decimal, highest first: 3043.01 -> [3000, 40, 3, 0.01]; 0 -> [0]."""
    sign, digits, exp = d.as_tuple()
    terms = []
    n = len(digits)
    for i, dig in enumerate(digits):
        if dig:
            terms.append(Decimal(dig).scaleb(exp + n - 1 - i))
    return terms or [Decimal(0)]


def _nonzero_digits(d):
    return sum(1 for x in d.as_tuple().digits if x)


class _Bad(Exception):
    """One verification failure (message names the line)."""


# ----------------------------------------------------------------------------------------------- recipes

def rewrite(recipe, record, parsed):
    """The training target of `record` ({"problem","solution"}) under `recipe` (name or Recipe).

    `parsed` is families.parse(record["problem"]). Raises RewriteError when the record cannot be rewritten
    (unparsed Chinese problem, a gold answer that disagrees with the exact value, ...).
    """
    recipe = parse_recipe(recipe)
    solution = record["solution"]
    if recipe.kind == "stock" or (parsed is not None and parsed.family == "english"):
        return solution
    if parsed is None:
        raise RewriteError(f"problem not recognised, cannot apply recipe {recipe.name}")
    try:
        with localcontext(_EXACT):
            if recipe.kind == "round":
                return _round_solution(solution, parsed.family, recipe.decimals)
            builder = _BUILDERS.get(parsed.family)
            if builder is None:
                raise RewriteError(f"no CoT for family {parsed.family!r}")
            gold = _gold_answer(solution, parsed.family)
            lines = builder(parsed.args, gold, recipe.decimals)
            return "\n".join(lines)
    except _Bad as exc:
        raise RewriteError(f"{parsed.family}: {exc}") from None
    except (ArithmeticError, ValueError, KeyError) as exc:
        raise RewriteError(f"{parsed.family}: cannot rewrite ({type(exc).__name__}: {exc})") from None


def _gold_answer(solution, family):
    ans = _family_answer(solution, family)
    if not ans:
        raise _Bad(f"gold solution has no answer: {solution!r}")
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
    if _E_NOTATION.search(text):
        if d.adjusted() >= 0:
            return text  # a rounded mantissa would round above the units digit
        q = Context(prec=n + 1, rounding=ROUND_HALF_UP, Emax=999999, Emin=-999999).plus(d)
        return format(q, f".{n}E")
    if _decimals_of(text) <= n:
        return text
    return _fixed(d, n)


def _round_solution(solution, family, n):
    if family == "fraction":
        return solution
    ans = _gold_answer(solution, family)
    i = solution.rfind(ans)
    if i < 0:
        raise _Bad(f"answer {ans!r} not found in solution")
    return solution[:i] + round_answer(ans, n) + solution[i + len(ans):]


# --- cot builders: each returns the list of lines, the last one FINAL_MARKER + answer

def _answer_line(ans):
    return FINAL_MARKER + ans


def _check_exact_gold(value, gold):
    if _dec(gold) != value:
        raise _Bad(f"gold answer {gold} differs from the exact value {_plain(value)}")


def _cot_addsub(args, gold, decimals, op):
    a, b = args["a"], args["b"]
    x, y = _dec(a), _dec(b)
    value = x + y if op == "+" else x - y
    yy = y if op == "+" else -y
    P, Q = _abs_literal(a), _abs_literal(b)
    lines = []
    if x >= 0 and yy >= 0:
        sign, expr = "", f"{P}+{Q}"
    elif x < 0 and yy < 0:
        sign, expr = "-", f"{P}+{Q}"
    else:
        big, small = (P, Q) if abs(x) >= abs(y) else (Q, P)
        sign = "-" if value < 0 else ""
        expr = f"{big}-{small}"
    magnitude = abs(value)
    if not (sign == "" and expr == f"{a}{op}{b}"):
        lines.append("{}{}{}={}".format(a, op, b, f"-({expr})" if sign else expr))
    lines.append(f"{expr}={_nat(magnitude)}")
    _check_exact_gold(value, gold)
    lines.append(_answer_line(gold))
    return lines


def _mul_steps(kept, split):
    """Lines K*t=p for the place-value terms t of `split`, then the running sums; returns (lines, product)."""
    K = _dec(kept)
    lines, partials = [], []
    for t in _place_terms(_dec(split)):
        p = K * t
        partials.append(p)
        lines.append(f"{kept}*{_plain(t)}={_plain(p)}")
    s = partials[0]
    for p in partials[1:]:
        new = s + p
        lines.append(f"{_plain(s)}+{_plain(p)}={_plain(new)}")
        s = new
    return lines, s


def _split_choice(P, Q):
    """(kept, split): split the operand with fewer non-zero digits (the second one on a tie)."""
    if _nonzero_digits(_dec(P)) < _nonzero_digits(_dec(Q)):
        return Q, P
    return P, Q


def _sign_line(a, b):
    """The sign rule of a product in 5 tokens: "负*负=正" (the steps then work on the magnitudes)."""
    na, nb = a.startswith("-"), b.startswith("-")
    return "{}*{}={}".format("负" if na else "正", "负" if nb else "正", "负" if na != nb else "正")


def _cot_mul(args, gold, decimals):
    a, b = args["a"], args["b"]
    P, Q = _abs_literal(a), _abs_literal(b)
    negative = (a.startswith("-")) != (b.startswith("-"))
    lines = [_sign_line(a, b)]
    kept, split = _split_choice(P, Q)
    steps, product = _mul_steps(kept, split)
    lines += steps
    _check_exact_gold(-product if negative else product, gold)
    lines.append(_answer_line(gold))
    return lines


def _cot_area(args, gold, decimals):
    L, W = str(args["length"]), str(args["width"])
    lines = [f"面积={L}*{W}"]
    kept, split = _split_choice(L, W)
    steps, product = _mul_steps(kept, split)
    lines += steps
    _check_exact_gold(product, gold)
    lines.append(_answer_line(gold))
    return lines


def _cot_mass(args, gold, decimals):
    d, v = args["density"], args["volume"]
    _check_exact_gold(Decimal(d * v), gold)
    return [f"质量={d}*{v}={d * v}", _answer_line(gold)]


def _division_block(m, n, decimals):
    """Goat-style repeated subtraction for m / n (ints, n > 0), then the quotient line.

    Integer part: subtract the largest place-value multiple n*t (t = leading digit of the quotient times
    its place value) until the remainder is below n. Decimals: remainder*10 - n*d, one digit d per line,
    until decimals+1 digits (the extra digit decides the rounding) or a zero remainder. Last line
    `m/n=Q` with Q the integer part and the digits found, followed by "..." when the remainder is not 0.
    """
    lines = []
    r, q_int = m, 0
    while r >= n:
        qq = r // n
        t = int(str(qq)[0]) * 10 ** (len(str(qq)) - 1)
        p = n * t
        lines.append(f"{r}-{n}*{t}={r}-{p}={r - p}")
        r -= p
        q_int += t
    digits = ""
    while r and len(digits) < decimals + 1:
        c = r * 10
        d = c // n
        p = n * d
        lines.append(f"{c}-{n}*{d}={c}-{p}={c - p}")
        r = c - p
        digits += str(d)
    lines.append("{}/{}={}{}{}".format(m, n, q_int, "." + digits if digits else "", "..." if r else ""))
    return lines


def _signed_ratio(m, n, negative):
    return f"-({m}/{n})" if negative else f"{m}/{n}"


def _cot_div(args, gold, decimals):
    a, b = args["a"], args["b"]
    if _dec(b) == 0:
        raise _Bad("division by zero")
    s = max(_decimals_of(a), _decimals_of(b))
    m = int(abs(_dec(a)).scaleb(s))
    n = int(abs(_dec(b)).scaleb(s))
    negative = (a.startswith("-")) != (b.startswith("-"))
    lines = [f"{a}/{b}={_signed_ratio(m, n, negative)}"]
    lines += _division_block(m, n, decimals)
    exact = Fraction(m, n) * (-1 if negative else 1)
    lines.append(_answer_line(_rounded_answer(exact, gold, decimals)))
    return lines


def _sqrt_pairs(x):
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


def _cot_sqrt(args, gold, decimals):
    x = args["x"]
    if x.startswith("-"):
        raise _Bad("square root of a negative number")
    ipairs, fpairs = _sqrt_pairs(x)
    ndec = decimals + 1
    fpairs = (fpairs + ["00"] * ndec)[:max(ndec, len(fpairs))]
    if len(fpairs) > ndec:
        raise _Bad("more input decimals than answer decimals")
    header = "√{}=√{}.{}".format(x, "|".join(ipairs), "|".join(fpairs))
    lines = [header]
    p, r = 0, 0
    for pair in ipairs + fpairs:
        c = r * 100 + int(pair)
        d = 9
        while (20 * p + d) * d > c:
            d -= 1
        t = 20 * p + d
        lines.append(f"{c}-{t}*{d}={c}-{t * d}={c - t * d}")
        r = c - t * d
        p = p * 10 + d
    root = format(Decimal(p).scaleb(-ndec), "f")
    lines.append("√{}={}{}".format(x, root, "..." if r else ""))
    exact = _exact_sqrt(Fraction(_dec(x)))
    if exact is not None:       # a perfect square: the digits are the exact root
        ans = _rounded_answer(exact, gold, decimals)
    else:
        # the root lies in [p, p+1) / 10^ndec and is irrational, never on a tie: rounding the truncation
        # (one digit more than needed) half up is rounding the root itself
        ans = _fixed(Fraction(p, 10 ** ndec), decimals)
    lines.append(_answer_line(ans))
    return lines


def _exact_sqrt(fr):
    n, d = fr.numerator, fr.denominator
    rn, rd = math.isqrt(n), math.isqrt(d)
    if rn * rn == n and rd * rd == d:
        return Fraction(rn, rd)
    return None


def _cot_power(args, gold, decimals):
    x, n = args["x"], args["n"]
    P = _abs_literal(x)
    negative = x.startswith("-")
    lines = []
    if n == 0:
        if _dec(x) == 0:
            raise _Bad("0^0")
        _check_exact_gold(Decimal(1), gold)
        return [f"{x}^0=1", _answer_line(gold)]
    neg_result = negative and n % 2 == 1
    if negative:
        lines.append("{}^{}={}".format(x, n, f"-({P}^{n})" if neg_result else f"{P}^{n}"))
    base = _dec(P)
    if n == 1:
        lines.append(f"{P}^1={P}")
        value = base
    else:
        value, prev = base, P
        for k in range(2, n + 1):
            value = value * base
            lines.append(f"{P}^{k}={prev}*{P}={_nat(value)}")
            prev = _nat(value)
    _check_exact_gold(-value if neg_result else value, gold)
    lines.append(_answer_line(gold))
    return lines


def _cot_function(args, gold, decimals):
    x, c, n = args["x"], args["c"], args["n"]
    if n <= POWER_STEPS_MAX:
        base = _dec(x)
        lines, value, prev = [], base, x
        for k in range(2, n + 1):
            value = value * base
            lines.append(f"{x}^{k}={prev}*{x}={_nat(value)}")
            prev = _nat(value)
        y = _dec(c) * value
        lines.append(f"y={c}*{prev}={_nat(y)}")
        _check_exact_gold(y, gold)
        lines.append(_answer_line(gold))
        return lines
    ans = _function_answer(_dec(c) * _dec(x) ** n, gold)
    return [f"y={c}*{x}^{n}", _answer_line(ans)]


def _cot_equation(args, gold, decimals):
    a, b = args["a"], args["b"]
    if a == 0:
        raise _Bad("equation with a = 0")
    m, n = abs(b), abs(a)
    negative = m != 0 and ((-b < 0) != (a < 0))
    lines = [f"{a}x={-b}", f"x={-b}/{a}={_signed_ratio(m, n, negative)}"]
    lines += _division_block(m, n, decimals)
    lines.append(_answer_line(_rounded_answer(Fraction(-b, a), gold, decimals)))
    return lines


def _cot_mean(args, gold, decimals):
    values = args["values"]
    if len(values) < 2:
        raise _Bad("mean of fewer than 2 values")
    lines, s = [], values[0]
    for v in values[1:]:
        lines.append(f"{s}+{v}={s + v}")
        s += v
    lines.append(f"平均值={s}/{len(values)}")
    lines.append(_answer_line(_rounded_answer(Fraction(s, len(values)), gold, decimals)))
    return lines


def _cot_discount(args, gold, decimals):
    p, q = int(args["original"]), int(args["discounted"])
    if p == 0:
        raise _Bad("original price 0")
    d = p - q
    m = abs(d) * 100
    lines = [f"{p}-{q}={d}", f"{d}/{p}*100={_signed_ratio(m, p, d < 0)}"]
    lines += _division_block(m, p, decimals)
    lines.append(_answer_line(_rounded_answer(Fraction(d * 100, p), gold, decimals)))
    return lines


def _cot_sales(args, gold, decimals):
    s, p = int(args["last_year"]), int(args["percent"])
    f = _plain(Decimal(100 + p).scaleb(-2))
    lines = [f"1+{p}%={f}", f"销售额={s}*{f}"]
    kept, split = _split_choice(str(s), f)
    steps, v = _mul_steps(kept, split)
    lines += steps
    lines.append(_answer_line(_rounded_answer(Fraction(v), gold, decimals)))
    return lines


def _cot_fraction(args, gold, decimals):
    n, d = args["numerator"], args["denominator"]
    if d == 0:
        raise _Bad("denominator 0")
    g = math.gcd(n, d)
    if gold != f"{n // g}/{d // g}":
        raise _Bad(f"gold answer {gold} is not {n // g}/{d // g}")
    return [f"gcd({n},{d})={g}", f"{n}/{d}={n // g}/{d // g}", _answer_line(gold)]


_BUILDERS = {
    "add": lambda a, g, d: _cot_addsub(a, g, d, "+"),
    "sub": lambda a, g, d: _cot_addsub(a, g, d, "-"),
    "mul": _cot_mul, "div": _cot_div, "sqrt": _cot_sqrt, "power": _cot_power, "function": _cot_function,
    "equation": _cot_equation, "mean": _cot_mean, "area": _cot_area, "mass": _cot_mass,
    "discount": _cot_discount, "sales": _cot_sales, "fraction": _cot_fraction,
}


# ----------------------------------------------------------------------------------------------- verify

def verify(target, parsed, gold_solution, recipe):
    """Problems of `target` as the `recipe` target of a record (parsed problem, gold solution); [] = OK.

    stock / english: the target must be the gold solution. round:N: the gold solution with only its answer
    rounded, and that answer within half a unit of the N-th decimal of the gold. cot: every line is parsed
    with the family's grammar and recomputed exactly (each partial product, running sum, subtraction, root
    digit, ...), chained to the previous line and to the problem's operands; the answer line must be the last
    line and equal the exact value and the gold at the stated precision.
    """
    try:
        recipe = parse_recipe(recipe)
    except KitError as exc:
        return [str(exc)]
    if not isinstance(target, str):
        return ["target is not a string"]
    if recipe.kind == "stock" or (parsed is not None and parsed.family == "english"):
        return [] if target == gold_solution else ["target differs from the gold solution"]
    if parsed is None:
        return ["problem not recognised"]
    try:
        with localcontext(_EXACT):
            if recipe.kind == "round":
                _verify_round(target, parsed.family, gold_solution, recipe.decimals)
            else:
                _verify_cot(target, parsed, gold_solution, recipe.decimals)
    except _Bad as exc:
        return [f"{parsed.family}: {exc}"]
    except (ArithmeticError, ValueError, KeyError, TypeError) as exc:
        return [f"{parsed.family}: cannot verify ({type(exc).__name__}: {exc})"]
    return []


def _verify_round(target, family, gold_solution, n):
    if family == "fraction":
        if target != gold_solution:
            raise _Bad("fraction targets are the gold solution unchanged")
        return
    gold = _gold_answer(gold_solution, family)
    i = gold_solution.rfind(gold)
    head, tail = gold_solution[:i], gold_solution[i + len(gold):]
    if not (target.startswith(head) and target.endswith(tail)) or len(target) < len(head) + len(tail):
        raise _Bad("the wording around the answer differs from the gold solution")
    ans = target[len(head):len(target) - len(tail)] if tail else target[len(head):]
    if ans != round_answer(gold, n):
        raise _Bad(f"answer {ans!r} is not the gold {gold} rounded to {n} decimals ({round_answer(gold, n)})")
    g, a = Fraction(_dec(gold)), Fraction(_dec(ans))
    if _E_NOTATION.search(gold):
        ulp = Fraction(10) ** (_dec(ans).adjusted() - n)
    else:
        ulp = Fraction(1, 10 ** n) if _decimals_of(gold) > n else Fraction(0)
    if abs(a - g) * 2 > ulp:
        raise _Bad(f"answer {ans} is more than half a unit of the last place from the gold {gold}")


_RX_CACHE = {}


def _compiled(rx):
    c = _RX_CACHE.get(rx)
    if c is None:
        c = _RX_CACHE[rx] = re.compile(rx)
    return c


class _Cursor:
    def __init__(self, lines):
        self.lines = lines
        self.i = 0

    def peek(self, rx, prefix=""):
        """Match of the current line: it starts with the literal `prefix` and the rest fullmatches `rx`."""
        if self.i < len(self.lines):
            line = self.lines[self.i]
            if line.startswith(prefix):
                return _compiled(rx).fullmatch(line, len(prefix))
        return None

    def take(self, rx, what, prefix=""):
        if self.i >= len(self.lines):
            raise _Bad(f"missing {what} line after line {self.i}")
        m = self.peek(rx, prefix)
        if m is None:
            raise _Bad(f"line {self.i + 1} {self.lines[self.i]!r} is not a {what} line")
        self.i += 1
        return m

    def fail(self, msg):
        """_Bad naming the line just taken."""
        return _Bad(f"line {self.i} {self.lines[self.i - 1]!r}: {msg}")

    def done(self):
        if self.i != len(self.lines):
            raise _Bad(f"unexpected line {self.i + 1} {self.lines[self.i]!r}")


_U = r"(\d+(?:\.\d+)?)"      # unsigned number
_S = r"(-?\d+(?:\.\d+)?)"    # signed number
_I = r"(\d+)"                # unsigned integer
_SI = r"(-?\d+)"             # signed integer


def _verify_cot(target, parsed, gold_solution, decimals):
    lines = target.split("\n")
    if target.count(FINAL_MARKER) != 1 or not lines[-1].startswith(FINAL_MARKER):
        raise _Bad(f"the target must end with exactly one line {FINAL_MARKER}<answer>")
    ans = lines[-1][len(FINAL_MARKER):]
    if not ans or ans != ans.strip():
        raise _Bad(f"empty or padded answer {ans!r}")
    checker = _CHECKERS.get(parsed.family)
    if checker is None:
        raise _Bad("no CoT for this family")
    gold = _gold_answer(gold_solution, parsed.family)
    cur = _Cursor(lines[:-1])
    checker(cur, parsed.args, ans, gold, decimals)
    cur.done()


def _expect_exact(ans, value, gold):
    if ans != gold:
        raise _Bad(f"answer {ans!r} is not the gold answer {gold!r}")
    if _dec(ans) != value:
        raise _Bad(f"answer {ans} is not the value {_plain(value)} the steps computed")


def _expect_rounded(ans, exact, gold, decimals):
    want = _rounded_answer(exact, gold, decimals)
    if ans != want:
        raise _Bad(f"answer {ans!r} is not the exact value at {decimals} decimals ({want})")
    a = Fraction(_dec(ans))
    if abs(a - exact) * 2 * 10 ** decimals > 1:
        raise _Bad(f"answer {ans} is not within half a unit of the exact value")
    if _fixed(Fraction(_dec(gold)), decimals) != _fixed(a, decimals):
        raise _Bad(f"answer {ans} differs from the gold {gold} at {decimals} decimals")


def _chk_addsub(cur, args, ans, gold, decimals, op):
    a, b = args["a"], args["b"]
    x, y = _dec(a), _dec(b)
    rx = r"(-\()?" + _U + r"([+-])" + _U + r"(\))?"
    m = cur.peek(rx, prefix=a + op + b + "=")
    if m is not None:
        cur.take(rx, "restatement", prefix=a + op + b + "=")
        if bool(m.group(1)) != bool(m.group(5)):
            raise cur.fail("unbalanced parentheses")
        sign, P, op2, Q = (-1 if m.group(1) else 1), m.group(2), m.group(3), m.group(4)
    else:
        if a.startswith("-") or b.startswith("-"):
            raise _Bad("a restatement with non-negative operands must come first")
        sign, P, op2, Q = 1, a, op, b
    dp, dq = _dec(P), _dec(Q)
    if sorted([dp, dq]) != sorted([abs(x), abs(y)]):
        raise _Bad(f"restated operands {P}, {Q} are not |{a}|, |{b}|")
    target_value = x + y if op == "+" else x - y
    if sign * (dp + dq if op2 == "+" else dp - dq) != target_value:
        raise _Bad(f"restatement does not equal {a} {op} {b}")
    c = cur.take(_U, "calculation", prefix=P + op2 + Q + "=")
    S = _dec(c.group(1))
    if S != (dp + dq if op2 == "+" else dp - dq):
        raise cur.fail("wrong result")
    _expect_exact(ans, sign * S, gold)


def _chk_mul_steps(cur, P, Q):
    """The partial products K*t and running sums of _mul_steps; returns the product."""
    partials = []
    rx = _U + r"\*" + _U + "=" + _U
    while cur.peek(rx):
        m = cur.take(rx, "partial product")
        K, t, p = m.group(1), _dec(m.group(2)), _dec(m.group(3))
        partials.append((K, t, p))
        if K != partials[0][0]:
            raise cur.fail(f"partial products must keep the same factor {partials[0][0]}")
        if _dec(K) * t != p:
            raise cur.fail("wrong partial product")
    if not partials:
        raise _Bad("missing partial products")
    K = _dec(partials[0][0])
    if K == _dec(P):
        T = _dec(Q)
    elif K == _dec(Q):
        T = _dec(P)
    else:
        raise _Bad(f"kept factor {partials[0][0]} is neither {P} nor {Q}")
    terms = [t for _, t, _ in partials]
    if terms != _place_terms(T):
        raise _Bad("terms {} are not the place values of {}".format(", ".join(_plain(t) for t in terms), _plain(T)))
    s = partials[0][2]
    for _, _, p in partials[1:]:
        m = cur.take(_U + r"\+" + _U + "=" + _U, "running sum")
        if _dec(m.group(1)) != s or _dec(m.group(2)) != p:
            raise cur.fail("must add the next partial product to the running sum")
        if _dec(m.group(3)) != s + p:
            raise cur.fail("wrong sum")
        s = s + p
    if s != K * T:
        raise _Bad("the partial products do not add up to the product")
    return s


def _chk_mul(cur, args, ans, gold, decimals):
    a, b = args["a"], args["b"]
    negative = a.startswith("-") != b.startswith("-")
    P, Q = _abs_literal(a), _abs_literal(b)
    m = cur.take("([正负])\\*([正负])=([正负])", "sign rule")
    want = _sign_line(a, b)
    if m.group(0) != want:
        raise cur.fail(f"the signs of {a} and {b} give {want}")
    product = _chk_mul_steps(cur, P, Q)
    _expect_exact(ans, -product if negative else product, gold)


def _chk_area(cur, args, ans, gold, decimals):
    L, W = str(args["length"]), str(args["width"])
    cur.take("", "area formula", prefix=f"面积={L}*{W}")
    _expect_exact(ans, _chk_mul_steps(cur, L, W), gold)


def _chk_mass(cur, args, ans, gold, decimals):
    m = cur.take(r"质量=" + _I + r"\*" + _I + "=" + _I, "mass")
    if (int(m.group(1)), int(m.group(2))) != (args["density"], args["volume"]):
        raise cur.fail("operands are not the density and the volume")
    if int(m.group(1)) * int(m.group(2)) != int(m.group(3)):
        raise cur.fail("wrong product")
    _expect_exact(ans, Decimal(int(m.group(3))), gold)


_STEP = _I + "-" + _I + r"\*" + _I + "=" + _I + "-" + _I + "=" + _I


def _chk_subtract_step(cur, m, n_expected, r_expected, t_expected):
    r, n, t, r2, p, rest = (int(g) for g in m.groups())
    if n != n_expected:
        raise cur.fail(f"divisor is not {n_expected}")
    if r != r_expected or r2 != r:
        raise cur.fail(f"must start from {r_expected}")
    if t != t_expected:
        raise cur.fail(f"quotient part should be {t_expected}")
    if p != n * t:
        raise cur.fail("wrong product")
    if rest != r - p or rest < 0:
        raise cur.fail("wrong difference")
    return rest


def _chk_ratio(cur, m, n, negative, what, prefix):
    """A line prefix + "m/n" or prefix + "-(m/n)" with exactly these m, n and sign."""
    h = cur.take(r"(-\()?" + _I + "/" + _I + r"(\))?", what, prefix=prefix)
    if bool(h.group(1)) != bool(h.group(4)) or bool(h.group(1)) != negative:
        raise cur.fail("wrong sign")
    if (h.group(2), h.group(3)) != (str(m), str(n)):
        raise cur.fail(f"must be {m}/{n}")


def _chk_division_block(cur, m, n, decimals):
    """The lines of _division_block(m, n, decimals), each recomputed; returns the final remainder."""
    if n <= 0:
        raise _Bad("division by zero")
    rem, q_int = m, 0
    while rem >= n:
        step = cur.take(_STEP, "integer-part subtraction")
        qq = rem // n
        t = int(str(qq)[0]) * 10 ** (len(str(qq)) - 1)
        rem = _chk_subtract_step(cur, step, n, rem, t)
        q_int += t
    digits = ""
    while rem and len(digits) < decimals + 1:
        step = cur.take(_STEP, "decimal-digit subtraction")
        c = rem * 10
        rem = _chk_subtract_step(cur, step, n, c, c // n)
        digits += str(c // n)
    want = "{}{}{}".format(q_int, "." + digits if digits else "", "..." if rem else "")
    asm = cur.take(r"[0-9.]+", "quotient", prefix=f"{m}/{n}=")
    if asm.group(0) != want:
        raise cur.fail(f"quotient must read {want}")
    return rem


def _chk_div(cur, args, ans, gold, decimals):
    a, b = args["a"], args["b"]
    negative = a.startswith("-") != b.startswith("-")
    s = max(_decimals_of(a), _decimals_of(b))
    m, n = int(abs(_dec(a)).scaleb(s)), int(abs(_dec(b)).scaleb(s))
    _chk_ratio(cur, m, n, negative, "scaling", a + "/" + b + "=")
    _chk_division_block(cur, m, n, decimals)
    _expect_rounded(ans, Fraction(m, n) * (-1 if negative else 1), gold, decimals)


def _chk_sqrt(cur, args, ans, gold, decimals):
    x = args["x"]
    ndec = decimals + 1
    ipairs, fpairs = _sqrt_pairs(x)
    fpairs = (fpairs + ["00"] * ndec)[:max(ndec, len(fpairs))]
    h = cur.take(r"(\d+(?:\|\d+)*)\.(\d+(?:\|\d+)*)", "digit pairs", prefix="√" + x + "=√")
    if h.group(1).split("|") != ipairs or h.group(2).split("|") != fpairs:
        raise cur.fail("digit pairs of {} with {} decimals are {}.{}".format(x, ndec, "|".join(ipairs), "|".join(fpairs)))
    if len(fpairs) != ndec:
        raise _Bad("more input decimals than answer decimals")
    p, r = 0, 0
    for pair in ipairs + fpairs:
        step = cur.take(_STEP, "root digit")
        c, t, d, c2, prod, rest = (int(g) for g in step.groups())
        if c != r * 100 + int(pair) or c2 != c:
            raise cur.fail(f"must start from {r * 100 + int(pair)} (remainder * 100 + next pair)")
        if d > 9 or t != 20 * p + d:
            raise cur.fail(f"trial divisor must be 20 * {p} + digit")
        if prod != t * d or rest != c - prod or rest < 0:
            raise cur.fail("wrong product or difference")
        if (20 * p + d + 1) * (d + 1) <= c:
            raise cur.fail(f"digit {d} is not the largest possible")
        p, r = p * 10 + d, rest
    root = format(Decimal(p).scaleb(-ndec), "f") + ("..." if r else "")
    asm = cur.take(r"[0-9.]+", "root", prefix="√" + x + "=")
    if asm.group(0) != root:
        raise cur.fail(f"root line must read {root}")
    X = Fraction(_dec(x))
    if p * p > X * 10 ** (2 * ndec) or (p + 1) ** 2 <= X * 10 ** (2 * ndec):
        raise _Bad("root digits are not the truncated square root")
    exact = _exact_sqrt(X)
    if exact is not None:
        _expect_rounded(ans, exact, gold, decimals)
    else:
        want = _fixed(Fraction(p, 10 ** ndec), decimals)
        if ans != want:
            raise _Bad(f"answer {ans!r} is not the root rounded to {decimals} decimals ({want})")
        if _fixed(Fraction(_dec(gold)), decimals) != ans:
            raise _Bad(f"answer {ans} differs from the gold {gold} at {decimals} decimals")


def _chk_power_chain(cur, base_text, n, first_k=2):
    """Lines B^k=prev*B=value for k = 2..n; returns the last value (base for n == 1)."""
    base = _dec(base_text)
    value = base
    for k in range(first_k, n + 1):
        m = cur.take(_U + r"\*" + _U + "=" + _U, f"power {k}", prefix=f"{base_text}^{k}=")
        if m.group(2) != base_text:
            raise cur.fail(f"must multiply by {base_text}")
        if _dec(m.group(1)) != value:
            raise cur.fail(f"must multiply the previous power {_plain(value)}")
        if _dec(m.group(3)) != value * base:
            raise cur.fail("wrong product")
        value = value * base
    return value


def _chk_power(cur, args, ans, gold, decimals):
    x, n = args["x"], args["n"]
    if n == 0:
        cur.take("", "x^0=1", prefix=f"{x}^0=1")
        _expect_exact(ans, Decimal(1), gold)
        return
    P = _abs_literal(x)
    neg_result = x.startswith("-") and n % 2 == 1
    if x.startswith("-"):
        m = cur.take(r"(-\()?([^()]*)(\))?", "sign", prefix=f"{x}^{n}=")
        if m.group(2) != f"{P}^{n}":
            raise cur.fail(f"must restate {P}^{n}")
        if bool(m.group(1)) != bool(m.group(3)) or bool(m.group(1)) != neg_result:
            raise cur.fail("wrong sign (a negative base to an {} power)".format("odd" if n % 2 else "even"))
    if n == 1:
        cur.take("", "x^1=x", prefix=f"{P}^1={P}")
        value = _dec(P)
    else:
        value = _chk_power_chain(cur, P, n)
    _expect_exact(ans, -value if neg_result else value, gold)


def _chk_function(cur, args, ans, gold, decimals):
    x, c, n = args["x"], args["c"], args["n"]
    if n <= POWER_STEPS_MAX:
        value = _chk_power_chain(cur, x, n)
        m = cur.take(_U + "=" + _U, "y=C*x^N", prefix=f"y={c}*")
        if _dec(m.group(1)) != value:
            raise cur.fail(f"must multiply x^{n} = {_plain(value)}")
        if _dec(m.group(2)) != _dec(c) * value:
            raise cur.fail("wrong product")
        _expect_exact(ans, _dec(m.group(2)), gold)
        return
    cur.take("", "y=C*x^N", prefix=f"y={c}*{x}^{n}")
    value = _dec(c) * _dec(x) ** n
    want = _function_answer(value, gold)
    if ans != want:
        raise _Bad(f"answer {ans!r} is not the value to {FUNCTION_SIG_DIGITS} significant digits or the units "
                   f"({want})")
    # the real generator rounded x**N to 28 digits before the product, so the gold agrees with the exact value
    # at FUNCTION_SIG_DIGITS significant digits, not at all 28
    if _sig_round(_dec(gold), FUNCTION_SIG_DIGITS) != _sig_round(value, FUNCTION_SIG_DIGITS):
        raise _Bad(f"answer {ans} differs from the gold {gold} at {FUNCTION_SIG_DIGITS} significant digits")


def _chk_equation(cur, args, ans, gold, decimals):
    a, b = args["a"], args["b"]
    if a == 0:
        raise _Bad("a = 0")
    cur.take("", "ax=-b", prefix=f"{a}x={-b}")
    m, n = abs(b), abs(a)
    _chk_ratio(cur, m, n, m != 0 and ((-b < 0) != (a < 0)), "x=-b/a", f"x={-b}/{a}=")
    _chk_division_block(cur, m, n, decimals)
    _expect_rounded(ans, Fraction(-b, a), gold, decimals)


def _chk_mean(cur, args, ans, gold, decimals):
    values = args["values"]
    s = values[0]
    for v in values[1:]:
        m = cur.take(_I + r"\+" + _I + "=" + _I, "running sum")
        if (int(m.group(1)), int(m.group(2))) != (s, v):
            raise cur.fail(f"must add {v} to the running sum {s}")
        if int(m.group(3)) != s + v:
            raise cur.fail("wrong sum")
        s += v
    m = cur.take("平均值=" + _I + "/" + _I, "sum/count")
    if (int(m.group(1)), int(m.group(2))) != (s, len(values)):
        raise cur.fail(f"must be {s}/{len(values)}")
    _expect_rounded(ans, Fraction(s, len(values)), gold, decimals)


def _chk_discount(cur, args, ans, gold, decimals):
    p, q = int(args["original"]), int(args["discounted"])
    if p == 0:
        raise _Bad("original price 0")
    d = p - q
    cur.take("", "difference", prefix=f"{p}-{q}={d}")
    _chk_ratio(cur, abs(d) * 100, p, d < 0, "ratio", f"{d}/{p}*100=")
    _chk_division_block(cur, abs(d) * 100, p, decimals)
    _expect_rounded(ans, Fraction(d * 100, p), gold, decimals)


def _chk_sales(cur, args, ans, gold, decimals):
    s, p = int(args["last_year"]), int(args["percent"])
    f = _plain(Decimal(100 + p).scaleb(-2))
    cur.take("", "growth factor", prefix=f"1+{p}%={f}")
    cur.take("", "sales formula", prefix=f"销售额={s}*{f}")
    v = _chk_mul_steps(cur, str(s), f)
    _expect_rounded(ans, Fraction(v), gold, decimals)


def _chk_fraction(cur, args, ans, gold, decimals):
    n, d = args["numerator"], args["denominator"]
    m = cur.take(r"gcd\(" + _I + "," + _I + r"\)=" + _I, "gcd")
    g = math.gcd(n, d)
    if (int(m.group(1)), int(m.group(2)), int(m.group(3))) != (n, d, g):
        raise cur.fail(f"must be gcd({n},{d})={g}")
    m = cur.take(_I + "/" + _I + "=" + _I + "/" + _I, "reduction")
    if tuple(int(v) for v in m.groups()) != (n, d, n // g, d // g):
        raise cur.fail(f"must be {n}/{d}={n // g}/{d // g}")
    if ans != gold or ans != f"{n // g}/{d // g}":
        raise _Bad(f"answer {ans!r} is not the gold {gold!r}")


_CHECKERS = {
    "add": lambda c, a, ans, g, d: _chk_addsub(c, a, ans, g, d, "+"),
    "sub": lambda c, a, ans, g, d: _chk_addsub(c, a, ans, g, d, "-"),
    "mul": _chk_mul, "div": _chk_div, "sqrt": _chk_sqrt, "power": _chk_power, "function": _chk_function,
    "equation": _chk_equation, "mean": _chk_mean, "area": _chk_area, "mass": _chk_mass,
    "discount": _chk_discount, "sales": _chk_sales, "fraction": _chk_fraction,
}
