"""The cot / round:N target writer: rewrite(recipe, record, parsed) (recipes: lorakit.cot's doc).

Every target it writes is checked by lorakit.cot_check, which never imports this module.
"""

import math
from decimal import Decimal, localcontext
from fractions import Fraction

from .answers import FINAL_MARKER
from .cot_rules import (
    EXACT,
    POWER_STEPS_MAX,
    Bad,
    RewriteError,
    abs_literal,
    dec,
    decimals_of,
    exact_sqrt,
    fixed,
    function_answer,
    gold_answer,
    parse_recipe,
    place_terms,
    plain,
    round_answer,
    rounded_answer,
    sign_line,
    sqrt_pairs,
)


def _nat(d):
    """Plain text keeping the Decimal's own exponent ("923905.4400" for 961.20*961.20)."""
    return format(d, "f")


def _nonzero_digits(d):
    return sum(1 for x in d.as_tuple().digits if x)


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
        with localcontext(EXACT):
            if recipe.kind == "round":
                return _round_solution(solution, parsed.family, recipe.decimals)
            builder = _BUILDERS.get(parsed.family)
            if builder is None:
                raise RewriteError(f"no CoT for family {parsed.family!r}")
            gold = gold_answer(solution, parsed.family)
            lines = builder(parsed.args, gold, recipe.decimals)
            return "\n".join(lines)
    except Bad as exc:
        raise RewriteError(f"{parsed.family}: {exc}") from None
    except (ArithmeticError, ValueError, KeyError) as exc:
        raise RewriteError(f"{parsed.family}: cannot rewrite ({type(exc).__name__}: {exc})") from None


def _round_solution(solution, family, n):
    if family == "fraction":
        return solution
    ans = gold_answer(solution, family)
    i = solution.rfind(ans)
    if i < 0:
        raise Bad(f"answer {ans!r} not found in solution")
    return solution[:i] + round_answer(ans, n) + solution[i + len(ans):]


# --- cot builders: each returns the list of lines, the last one FINAL_MARKER + answer

def _answer_line(ans):
    return FINAL_MARKER + ans


def _check_exact_gold(value, gold):
    if dec(gold) != value:
        raise Bad(f"gold answer {gold} differs from the exact value {plain(value)}")


def _cot_addsub(args, gold, decimals, op):
    a, b = args["a"], args["b"]
    x, y = dec(a), dec(b)
    value = x + y if op == "+" else x - y
    yy = y if op == "+" else -y
    P, Q = abs_literal(a), abs_literal(b)
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
    K = dec(kept)
    lines, partials = [], []
    for t in place_terms(dec(split)):
        p = K * t
        partials.append(p)
        lines.append(f"{kept}*{plain(t)}={plain(p)}")
    s = partials[0]
    for p in partials[1:]:
        new = s + p
        lines.append(f"{plain(s)}+{plain(p)}={plain(new)}")
        s = new
    return lines, s


def _split_choice(P, Q):
    """(kept, split): split the operand with fewer non-zero digits (the second one on a tie)."""
    if _nonzero_digits(dec(P)) < _nonzero_digits(dec(Q)):
        return Q, P
    return P, Q


def _cot_mul(args, gold, decimals):
    a, b = args["a"], args["b"]
    P, Q = abs_literal(a), abs_literal(b)
    negative = (a.startswith("-")) != (b.startswith("-"))
    lines = [sign_line(a, b)]
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
    if dec(b) == 0:
        raise Bad("division by zero")
    s = max(decimals_of(a), decimals_of(b))
    m = int(abs(dec(a)).scaleb(s))
    n = int(abs(dec(b)).scaleb(s))
    negative = (a.startswith("-")) != (b.startswith("-"))
    lines = [f"{a}/{b}={_signed_ratio(m, n, negative)}"]
    lines += _division_block(m, n, decimals)
    exact = Fraction(m, n) * (-1 if negative else 1)
    lines.append(_answer_line(rounded_answer(exact, gold, decimals)))
    return lines


def _cot_sqrt(args, gold, decimals):
    x = args["x"]
    if x.startswith("-"):
        raise Bad("square root of a negative number")
    ipairs, fpairs = sqrt_pairs(x)
    ndec = decimals + 1
    fpairs = (fpairs + ["00"] * ndec)[:max(ndec, len(fpairs))]
    if len(fpairs) > ndec:
        raise Bad("more input decimals than answer decimals")
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
    exact = exact_sqrt(Fraction(dec(x)))
    if exact is not None:       # a perfect square: the digits are the exact root
        ans = rounded_answer(exact, gold, decimals)
    else:
        # the root lies in [p, p+1) / 10^ndec and is irrational, never on a tie: rounding the truncation
        # (one digit more than needed) half up is rounding the root itself
        ans = fixed(Fraction(p, 10 ** ndec), decimals)
    lines.append(_answer_line(ans))
    return lines


def _cot_power(args, gold, decimals):
    x, n = args["x"], args["n"]
    P = abs_literal(x)
    negative = x.startswith("-")
    lines = []
    if n == 0:
        if dec(x) == 0:
            raise Bad("0^0")
        _check_exact_gold(Decimal(1), gold)
        return [f"{x}^0=1", _answer_line(gold)]
    neg_result = negative and n % 2 == 1
    if negative:
        lines.append("{}^{}={}".format(x, n, f"-({P}^{n})" if neg_result else f"{P}^{n}"))
    base = dec(P)
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
        base = dec(x)
        lines, value, prev = [], base, x
        for k in range(2, n + 1):
            value = value * base
            lines.append(f"{x}^{k}={prev}*{x}={_nat(value)}")
            prev = _nat(value)
        y = dec(c) * value
        lines.append(f"y={c}*{prev}={_nat(y)}")
        _check_exact_gold(y, gold)
        lines.append(_answer_line(gold))
        return lines
    ans = function_answer(dec(c) * dec(x) ** n, gold)
    return [f"y={c}*{x}^{n}", _answer_line(ans)]


def _cot_equation(args, gold, decimals):
    a, b = args["a"], args["b"]
    if a == 0:
        raise Bad("equation with a = 0")
    m, n = abs(b), abs(a)
    negative = m != 0 and ((-b < 0) != (a < 0))
    lines = [f"{a}x={-b}", f"x={-b}/{a}={_signed_ratio(m, n, negative)}"]
    lines += _division_block(m, n, decimals)
    lines.append(_answer_line(rounded_answer(Fraction(-b, a), gold, decimals)))
    return lines


def _cot_mean(args, gold, decimals):
    values = args["values"]
    if len(values) < 2:
        raise Bad("mean of fewer than 2 values")
    lines, s = [], values[0]
    for v in values[1:]:
        lines.append(f"{s}+{v}={s + v}")
        s += v
    lines.append(f"平均值={s}/{len(values)}")
    lines.append(_answer_line(rounded_answer(Fraction(s, len(values)), gold, decimals)))
    return lines


def _cot_discount(args, gold, decimals):
    p, q = int(args["original"]), int(args["discounted"])
    if p == 0:
        raise Bad("original price 0")
    d = p - q
    m = abs(d) * 100
    lines = [f"{p}-{q}={d}", f"{d}/{p}*100={_signed_ratio(m, p, d < 0)}"]
    lines += _division_block(m, p, decimals)
    lines.append(_answer_line(rounded_answer(Fraction(d * 100, p), gold, decimals)))
    return lines


def _cot_sales(args, gold, decimals):
    s, p = int(args["last_year"]), int(args["percent"])
    f = plain(Decimal(100 + p).scaleb(-2))
    lines = [f"1+{p}%={f}", f"销售额={s}*{f}"]
    kept, split = _split_choice(str(s), f)
    steps, v = _mul_steps(kept, split)
    lines += steps
    lines.append(_answer_line(rounded_answer(Fraction(v), gold, decimals)))
    return lines


def _cot_fraction(args, gold, decimals):
    n, d = args["numerator"], args["denominator"]
    if d == 0:
        raise Bad("denominator 0")
    g = math.gcd(n, d)
    if gold != f"{n // g}/{d // g}":
        raise Bad(f"gold answer {gold} is not {n // g}/{d // g}")
    return [f"gcd({n},{d})={g}", f"{n}/{d}={n // g}/{d // g}", _answer_line(gold)]


_BUILDERS = {
    "add": lambda a, g, d: _cot_addsub(a, g, d, "+"),
    "sub": lambda a, g, d: _cot_addsub(a, g, d, "-"),
    "mul": _cot_mul, "div": _cot_div, "sqrt": _cot_sqrt, "power": _cot_power, "function": _cot_function,
    "equation": _cot_equation, "mean": _cot_mean, "area": _cot_area, "mass": _cot_mass,
    "discount": _cot_discount, "sales": _cot_sales, "fraction": _cot_fraction,
}
