"""The target checker: verify(target, parsed, gold_solution, recipe) re-parses every line of a cot target with
its family's grammar and recomputes it exactly (never trusting lorakit.cot_write, which it does not import).
"""

import math
import re
from decimal import Decimal, localcontext
from fractions import Fraction

from .answers import FINAL_MARKER
from .cot_rules import (
    E_NOTATION,
    EXACT,
    FUNCTION_SIG_DIGITS,
    POWER_STEPS_MAX,
    Bad,
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
    sig_round,
    sign_line,
    sqrt_pairs,
)
from .io import KitError

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
        with localcontext(EXACT):
            if recipe.kind == "round":
                _verify_round(target, parsed.family, gold_solution, recipe.decimals)
            else:
                _verify_cot(target, parsed, gold_solution, recipe.decimals)
    except Bad as exc:
        return [f"{parsed.family}: {exc}"]
    except (ArithmeticError, ValueError, KeyError, TypeError) as exc:
        return [f"{parsed.family}: cannot verify ({type(exc).__name__}: {exc})"]
    return []


def _verify_round(target, family, gold_solution, n):
    if family == "fraction":
        if target != gold_solution:
            raise Bad("fraction targets are the gold solution unchanged")
        return
    gold = gold_answer(gold_solution, family)
    i = gold_solution.rfind(gold)
    head, tail = gold_solution[:i], gold_solution[i + len(gold):]
    if not (target.startswith(head) and target.endswith(tail)) or len(target) < len(head) + len(tail):
        raise Bad("the wording around the answer differs from the gold solution")
    ans = target[len(head):len(target) - len(tail)] if tail else target[len(head):]
    if ans != round_answer(gold, n):
        raise Bad(f"answer {ans!r} is not the gold {gold} rounded to {n} decimals ({round_answer(gold, n)})")
    g, a = Fraction(dec(gold)), Fraction(dec(ans))
    if E_NOTATION.search(gold):
        ulp = Fraction(10) ** (dec(ans).adjusted() - n)
    else:
        ulp = Fraction(1, 10 ** n) if decimals_of(gold) > n else Fraction(0)
    if abs(a - g) * 2 > ulp:
        raise Bad(f"answer {ans} is more than half a unit of the last place from the gold {gold}")


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
            raise Bad(f"missing {what} line after line {self.i}")
        m = self.peek(rx, prefix)
        if m is None:
            raise Bad(f"line {self.i + 1} {self.lines[self.i]!r} is not a {what} line")
        self.i += 1
        return m

    def fail(self, msg):
        """Bad naming the line just taken."""
        return Bad(f"line {self.i} {self.lines[self.i - 1]!r}: {msg}")

    def done(self):
        if self.i != len(self.lines):
            raise Bad(f"unexpected line {self.i + 1} {self.lines[self.i]!r}")


_U = r"(\d+(?:\.\d+)?)"      # unsigned number
_I = r"(\d+)"                # unsigned integer


def _verify_cot(target, parsed, gold_solution, decimals):
    lines = target.split("\n")
    if target.count(FINAL_MARKER) != 1 or not lines[-1].startswith(FINAL_MARKER):
        raise Bad(f"the target must end with exactly one line {FINAL_MARKER}<answer>")
    ans = lines[-1][len(FINAL_MARKER):]
    if not ans or ans != ans.strip():
        raise Bad(f"empty or padded answer {ans!r}")
    checker = _CHECKERS.get(parsed.family)
    if checker is None:
        raise Bad("no CoT for this family")
    gold = gold_answer(gold_solution, parsed.family)
    cur = _Cursor(lines[:-1])
    checker(cur, parsed.args, ans, gold, decimals)
    cur.done()


def _expect_exact(ans, value, gold):
    if ans != gold:
        raise Bad(f"answer {ans!r} is not the gold answer {gold!r}")
    if dec(ans) != value:
        raise Bad(f"answer {ans} is not the value {plain(value)} the steps computed")


def _expect_rounded(ans, exact, gold, decimals):
    want = rounded_answer(exact, gold, decimals)
    if ans != want:
        raise Bad(f"answer {ans!r} is not the exact value at {decimals} decimals ({want})")
    a = Fraction(dec(ans))
    if abs(a - exact) * 2 * 10 ** decimals > 1:
        raise Bad(f"answer {ans} is not within half a unit of the exact value")
    if fixed(Fraction(dec(gold)), decimals) != fixed(a, decimals):
        raise Bad(f"answer {ans} differs from the gold {gold} at {decimals} decimals")


def _chk_addsub(cur, args, ans, gold, decimals, op):
    a, b = args["a"], args["b"]
    x, y = dec(a), dec(b)
    rx = r"(-\()?" + _U + r"([+-])" + _U + r"(\))?"
    m = cur.peek(rx, prefix=a + op + b + "=")
    if m is not None:
        cur.take(rx, "restatement", prefix=a + op + b + "=")
        if bool(m.group(1)) != bool(m.group(5)):
            raise cur.fail("unbalanced parentheses")
        sign, P, op2, Q = (-1 if m.group(1) else 1), m.group(2), m.group(3), m.group(4)
    else:
        if a.startswith("-") or b.startswith("-"):
            raise Bad("a restatement with non-negative operands must come first")
        sign, P, op2, Q = 1, a, op, b
    dp, dq = dec(P), dec(Q)
    if sorted([dp, dq]) != sorted([abs(x), abs(y)]):
        raise Bad(f"restated operands {P}, {Q} are not |{a}|, |{b}|")
    target_value = x + y if op == "+" else x - y
    if sign * (dp + dq if op2 == "+" else dp - dq) != target_value:
        raise Bad(f"restatement does not equal {a} {op} {b}")
    c = cur.take(_U, "calculation", prefix=P + op2 + Q + "=")
    S = dec(c.group(1))
    if S != (dp + dq if op2 == "+" else dp - dq):
        raise cur.fail("wrong result")
    _expect_exact(ans, sign * S, gold)


def _chk_mul_steps(cur, P, Q):
    """The partial products K*t and running sums of _mul_steps; returns the product."""
    partials = []
    rx = _U + r"\*" + _U + "=" + _U
    while cur.peek(rx):
        m = cur.take(rx, "partial product")
        K, t, p = m.group(1), dec(m.group(2)), dec(m.group(3))
        partials.append((K, t, p))
        if K != partials[0][0]:
            raise cur.fail(f"partial products must keep the same factor {partials[0][0]}")
        if dec(K) * t != p:
            raise cur.fail("wrong partial product")
    if not partials:
        raise Bad("missing partial products")
    K = dec(partials[0][0])
    if K == dec(P):
        T = dec(Q)
    elif K == dec(Q):
        T = dec(P)
    else:
        raise Bad(f"kept factor {partials[0][0]} is neither {P} nor {Q}")
    terms = [t for _, t, _ in partials]
    if terms != place_terms(T):
        raise Bad("terms {} are not the place values of {}".format(", ".join(plain(t) for t in terms), plain(T)))
    s = partials[0][2]
    for _, _, p in partials[1:]:
        m = cur.take(_U + r"\+" + _U + "=" + _U, "running sum")
        if dec(m.group(1)) != s or dec(m.group(2)) != p:
            raise cur.fail("must add the next partial product to the running sum")
        if dec(m.group(3)) != s + p:
            raise cur.fail("wrong sum")
        s = s + p
    if s != K * T:
        raise Bad("the partial products do not add up to the product")
    return s


def _chk_mul(cur, args, ans, gold, decimals):
    a, b = args["a"], args["b"]
    negative = a.startswith("-") != b.startswith("-")
    P, Q = abs_literal(a), abs_literal(b)
    m = cur.take("([正负])\\*([正负])=([正负])", "sign rule")
    want = sign_line(a, b)
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
        raise Bad("division by zero")
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
    s = max(decimals_of(a), decimals_of(b))
    m, n = int(abs(dec(a)).scaleb(s)), int(abs(dec(b)).scaleb(s))
    _chk_ratio(cur, m, n, negative, "scaling", a + "/" + b + "=")
    _chk_division_block(cur, m, n, decimals)
    _expect_rounded(ans, Fraction(m, n) * (-1 if negative else 1), gold, decimals)


def _chk_sqrt(cur, args, ans, gold, decimals):
    x = args["x"]
    ndec = decimals + 1
    ipairs, fpairs = sqrt_pairs(x)
    fpairs = (fpairs + ["00"] * ndec)[:max(ndec, len(fpairs))]
    h = cur.take(r"(\d+(?:\|\d+)*)\.(\d+(?:\|\d+)*)", "digit pairs", prefix="√" + x + "=√")
    if h.group(1).split("|") != ipairs or h.group(2).split("|") != fpairs:
        raise cur.fail("digit pairs of {} with {} decimals are {}.{}".format(x, ndec, "|".join(ipairs), "|".join(fpairs)))
    if len(fpairs) != ndec:
        raise Bad("more input decimals than answer decimals")
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
    X = Fraction(dec(x))
    if p * p > X * 10 ** (2 * ndec) or (p + 1) ** 2 <= X * 10 ** (2 * ndec):
        raise Bad("root digits are not the truncated square root")
    exact = exact_sqrt(X)
    if exact is not None:
        _expect_rounded(ans, exact, gold, decimals)
    else:
        want = fixed(Fraction(p, 10 ** ndec), decimals)
        if ans != want:
            raise Bad(f"answer {ans!r} is not the root rounded to {decimals} decimals ({want})")
        if fixed(Fraction(dec(gold)), decimals) != ans:
            raise Bad(f"answer {ans} differs from the gold {gold} at {decimals} decimals")


def _chk_power_chain(cur, base_text, n, first_k=2):
    """Lines B^k=prev*B=value for k = 2..n; returns the last value (base for n == 1)."""
    base = dec(base_text)
    value = base
    for k in range(first_k, n + 1):
        m = cur.take(_U + r"\*" + _U + "=" + _U, f"power {k}", prefix=f"{base_text}^{k}=")
        if m.group(2) != base_text:
            raise cur.fail(f"must multiply by {base_text}")
        if dec(m.group(1)) != value:
            raise cur.fail(f"must multiply the previous power {plain(value)}")
        if dec(m.group(3)) != value * base:
            raise cur.fail("wrong product")
        value = value * base
    return value


def _chk_power(cur, args, ans, gold, decimals):
    x, n = args["x"], args["n"]
    if n == 0:
        cur.take("", "x^0=1", prefix=f"{x}^0=1")
        _expect_exact(ans, Decimal(1), gold)
        return
    P = abs_literal(x)
    neg_result = x.startswith("-") and n % 2 == 1
    if x.startswith("-"):
        m = cur.take(r"(-\()?([^()]*)(\))?", "sign", prefix=f"{x}^{n}=")
        if m.group(2) != f"{P}^{n}":
            raise cur.fail(f"must restate {P}^{n}")
        if bool(m.group(1)) != bool(m.group(3)) or bool(m.group(1)) != neg_result:
            raise cur.fail("wrong sign (a negative base to an {} power)".format("odd" if n % 2 else "even"))
    if n == 1:
        cur.take("", "x^1=x", prefix=f"{P}^1={P}")
        value = dec(P)
    else:
        value = _chk_power_chain(cur, P, n)
    _expect_exact(ans, -value if neg_result else value, gold)


def _chk_function(cur, args, ans, gold, decimals):
    x, c, n = args["x"], args["c"], args["n"]
    if n <= POWER_STEPS_MAX:
        value = _chk_power_chain(cur, x, n)
        m = cur.take(_U + "=" + _U, "y=C*x^N", prefix=f"y={c}*")
        if dec(m.group(1)) != value:
            raise cur.fail(f"must multiply x^{n} = {plain(value)}")
        if dec(m.group(2)) != dec(c) * value:
            raise cur.fail("wrong product")
        _expect_exact(ans, dec(m.group(2)), gold)
        return
    cur.take("", "y=C*x^N", prefix=f"y={c}*{x}^{n}")
    value = dec(c) * dec(x) ** n
    want = function_answer(value, gold)
    if ans != want:
        raise Bad(f"answer {ans!r} is not the value to {FUNCTION_SIG_DIGITS} significant digits or the units "
                   f"({want})")
    # the real generator rounded x**N to 28 digits before the product, so the gold agrees with the exact value
    # at FUNCTION_SIG_DIGITS significant digits, not at all 28
    if sig_round(dec(gold), FUNCTION_SIG_DIGITS) != sig_round(value, FUNCTION_SIG_DIGITS):
        raise Bad(f"answer {ans} differs from the gold {gold} at {FUNCTION_SIG_DIGITS} significant digits")


def _chk_equation(cur, args, ans, gold, decimals):
    a, b = args["a"], args["b"]
    if a == 0:
        raise Bad("a = 0")
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
        raise Bad("original price 0")
    d = p - q
    cur.take("", "difference", prefix=f"{p}-{q}={d}")
    _chk_ratio(cur, abs(d) * 100, p, d < 0, "ratio", f"{d}/{p}*100=")
    _chk_division_block(cur, abs(d) * 100, p, decimals)
    _expect_rounded(ans, Fraction(d * 100, p), gold, decimals)


def _chk_sales(cur, args, ans, gold, decimals):
    s, p = int(args["last_year"]), int(args["percent"])
    f = plain(Decimal(100 + p).scaleb(-2))
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
        raise Bad(f"answer {ans!r} is not the gold {gold!r}")


_CHECKERS = {
    "add": lambda c, a, ans, g, d: _chk_addsub(c, a, ans, g, d, "+"),
    "sub": lambda c, a, ans, g, d: _chk_addsub(c, a, ans, g, d, "-"),
    "mul": _chk_mul, "div": _chk_div, "sqrt": _chk_sqrt, "power": _chk_power, "function": _chk_function,
    "equation": _chk_equation, "mean": _chk_mean, "area": _chk_area, "mass": _chk_mass,
    "discount": _chk_discount, "sales": _chk_sales, "fraction": _chk_fraction,
}
