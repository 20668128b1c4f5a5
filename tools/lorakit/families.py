"""The 11 Chinese problem families of the contest's train.json (+ the English items): one module for all.

classify(problem) -> family name; parse(problem) -> Parsed(family, args); solve(parsed) -> the gold
solution string, character for character; final_answer(solution, family) -> the answer text;
generate(family, rng) -> {"problem", "solution"} in the real format and number distribution.

How the real generator computed each family (established on tests/data/contest_sample.jsonl, see
docs/families.md): Python `decimal` in its default context (28 significant digits, ROUND_HALF_EVEN) for
+ - * / power sqrt and the function value, Python float arithmetic (shown with repr) for the linear
equation, the mean, the discount ratio and the sales figure, plain ints for area / mass / fraction.
"""

import math
import re
from dataclasses import dataclass, field
from decimal import ROUND_HALF_EVEN, Context, Decimal

from .answers import after_marker, boxed

FAMILIES = ("add", "sub", "mul", "div", "power", "sqrt", "equation", "function", "mean", "area", "mass",
            "discount", "sales", "fraction", "english")
CHINESE_FAMILIES = FAMILIES[:-1]
UNKNOWN = "unknown"

# Unique records per Chinese family in the real train.json (538,949 unique Chinese records).
# The 359,347 unique + - * / records are split evenly (the split per operator was not published).
DEFAULT_WEIGHTS = {
    "add": 89837, "sub": 89837, "mul": 89837, "div": 89836,
    "power": 39207, "sqrt": 39227, "equation": 40080, "function": 20028, "mean": 19709,
    "area": 8665, "mass": 100, "discount": 6275, "sales": 6266, "fraction": 45,
}

# Estimated records drawn per family when train.json was made (800,000 Chinese draws, duplicates kept).
# Derived from the unique counts above and each family's value space: families with a huge space have
# draws ~= unique; the small ones (area 1..100 x 1..100, mass, fraction, discount, sales) were drawn about
# 20k / 20k / 20k / 10k / 10k times and the equation takes the remainder (~241k draws for 40,080 unique;
# 40,200 problems are possible); the weights sum to 800,000.
# Generating 800,000 records with these weights reproduces the real unique counts per family within
# sampling noise (total unique ~539-540k against the real 538,949; see docs/families.md).
DRAW_WEIGHTS = {
    "add": 89837, "sub": 89837, "mul": 89837, "div": 89836,
    "power": 39870, "sqrt": 40030, "equation": 241016, "function": 20028, "mean": 19709,
    "area": 20000, "mass": 20000, "discount": 10000, "sales": 10000, "fraction": 20000,
}

# Python's decimal default context, pinned here so that nobody's getcontext() changes can leak in.
CTX = Context(prec=28, rounding=ROUND_HALF_EVEN)

_OPS = {"add": "+", "sub": "-", "mul": "*", "div": "/"}
_OP_FAMILY = {v: k for k, v in _OPS.items()}

_NUM = r"-?\d+(?:\.\d+)?"
_INT = r"-?\d+"
_PATTERNS = [
    ("arith", re.compile(rf"计算 ({_NUM}) ([-+*/]) ({_NUM}) 等于多少？\Z", re.ASCII)),
    ("power", re.compile(rf"计算 ({_NUM}) 的 (\d+) 次方？\Z", re.ASCII)),
    ("sqrt", re.compile(rf"计算 ({_NUM}) 的平方根？\Z", re.ASCII)),
    ("equation", re.compile(rf"解方程 ({_INT})x \+ ({_INT}) = 0\Z", re.ASCII)),
    ("function", re.compile(rf"当 x = ({_NUM}) 时，求函数 y = ({_INT})x\^(\d+) 的值\Z", re.ASCII)),
    ("mean", re.compile(rf"求以下数据的平均值：\[({_INT}(?:, {_INT})*)\]\Z", re.ASCII)),
    ("area", re.compile(r"一个长方形的长为 (\d+) 厘米，宽为 (\d+) 厘米，请计算其面积。\Z", re.ASCII)),
    ("mass", re.compile(r"某物体的密度为 (\d+) 克/立方厘米，体积为 (\d+) 立方厘米，请计算该物体的质量。\Z", re.ASCII)),
    ("discount", re.compile(r"商品原价为 (\d+) 元，打折后的价格为 (\d+) 元，请计算打折的折扣比例。\Z", re.ASCII)),
    ("sales", re.compile(r"去年销售额为 (\d+) 万元，今年销售额增加了 (\d+)%，请计算今年的销售额。\Z", re.ASCII)),
    ("fraction", re.compile(r"将分数 (\d+)/(\d+) 进行简化。\Z", re.ASCII)),
]
# Cheap first-character dispatch (every Chinese family starts with one of these characters).
_BY_FIRST = {}
for _name, _rx in _PATTERNS:
    _first = _rx.pattern[0]
    _BY_FIRST.setdefault(_first, []).append((_name, _rx))

_CJK = re.compile(r"[\u3400-\u9fff\uf900-\ufaff\u3000-\u303f\uff00-\uffef]")


@dataclass(frozen=True)
class Parsed:
    family: str
    args: dict = field(default_factory=dict)


def is_chinese(text):
    """True when the text holds any CJK character or full-width punctuation."""
    return _CJK.search(text) is not None


def parse(problem):
    """Parsed(family, args) for a recognised problem, Parsed("english", {}) for an English item, else None."""
    if not isinstance(problem, str):
        return None
    for name, rx in _BY_FIRST.get(problem[:1], ()):
        m = rx.match(problem)
        if m is None:
            continue
        g = m.groups()
        if name == "arith":
            return Parsed(_OP_FAMILY[g[1]], {"a": g[0], "b": g[2]})
        if name == "power":
            return Parsed("power", {"x": g[0], "n": int(g[1])})
        if name == "sqrt":
            return Parsed("sqrt", {"x": g[0]})
        if name == "equation":
            return Parsed("equation", {"a": int(g[0]), "b": int(g[1])})
        if name == "function":
            return Parsed("function", {"x": g[0], "c": g[1], "n": int(g[2])})
        if name == "mean":
            return Parsed("mean", {"values": [int(v) for v in g[0].split(", ")]})
        if name == "area":
            return Parsed("area", {"length": int(g[0]), "width": int(g[1])})
        if name == "mass":
            return Parsed("mass", {"density": int(g[0]), "volume": int(g[1])})
        if name == "discount":
            return Parsed("discount", {"original": g[0], "discounted": g[1]})
        if name == "sales":
            return Parsed("sales", {"last_year": g[0], "percent": g[1]})
        if name == "fraction":
            return Parsed("fraction", {"numerator": int(g[0]), "denominator": int(g[1])})
    if not is_chinese(problem):
        return Parsed("english", {})
    return None


# Loose signatures: a problem that has its family's key words but not the exact format is still
# classified (and then counted as "not parsed" by the audit) instead of vanishing into "unknown".
_LOOSE = [
    ("power", re.compile(r"计算.*次方")),
    ("sqrt", re.compile(r"计算.*平方根")),
    ("arith", re.compile(r"计算\s*\S+\s*([-+*/×÷])\s*\S+\s*等于多少")),
    ("equation", re.compile(r"解方程")),
    ("function", re.compile(r"求函数")),
    ("mean", re.compile(r"平均值")),
    ("area", re.compile(r"长方形.*面积")),
    ("mass", re.compile(r"密度.*质量")),
    ("discount", re.compile(r"原价.*折扣")),
    ("sales", re.compile(r"销售额")),
    ("fraction", re.compile(r"分数.*简化")),
]
_LOOSE_OPS = {"+": "add", "-": "sub", "*": "mul", "/": "div", "×": "mul", "÷": "div"}


def classify(problem):
    """Family name of a problem: one of FAMILIES, or "unknown" for a Chinese problem of no family.

    Exactly formatted problems get the family parse() gives; a Chinese problem that only carries a
    family's key words (e.g. a wording variant) is still classified by them, but parse() returns None.
    """
    p = parse(problem)
    if p is not None:
        return p.family
    if not isinstance(problem, str):
        return UNKNOWN
    for name, rx in _LOOSE:
        m = rx.search(problem)
        if m:
            return _LOOSE_OPS[m.group(1)] if name == "arith" else name
    return UNKNOWN


# ----------------------------------------------------------------------------------------------- solving

def _arith(op, a, b):
    da, db = Decimal(a), Decimal(b)
    if op == "+":
        r = CTX.add(da, db)
    elif op == "-":
        r = CTX.subtract(da, db)
    elif op == "*":
        r = CTX.multiply(da, db)
    else:
        if db == 0:
            raise ValueError(f"division by zero: {a} / {b}")
        r = CTX.divide(da, db)
    return f"{a} {op} {b} = {r}"


def _power_value(x, n):
    dx = Decimal(x)
    if dx == 0 and n == 0:
        raise ValueError("0^0 is undefined")
    return CTX.power(dx, n)


def solve(parsed):
    """The gold solution string for a Parsed problem, exactly as train.json writes it.

    Raises ValueError for english (no solver) or for arguments the real generator never produced
    (division by zero, 0^0, a = 0 in the equation, zero denominators, decimal overflow).
    """
    try:
        return _solve(parsed.family, parsed.args)
    except (ArithmeticError, OverflowError) as exc:  # decimal traps (Overflow, InvalidOperation, ...)
        raise ValueError(f"{parsed.family}: {type(exc).__name__}: {exc}") from None


def _solve(fam, a):
    if fam in _OPS:
        return _arith(_OPS[fam], a["a"], a["b"])
    if fam == "power":
        x, n = a["x"], a["n"]
        return f"{x}^{n} = {_power_value(x, n)}"
    if fam == "sqrt":
        x = a["x"]
        dx = Decimal(x)
        if dx < 0:
            raise ValueError(f"square root of a negative number: {x}")
        return f"√{x} = {CTX.sqrt(dx)}"
    if fam == "equation":
        if a["a"] == 0:
            raise ValueError("equation with a = 0")
        return f"方程的解为：{-a['b'] / a['a']!r}"
    if fam == "function":
        return f"函数的值为：{CTX.multiply(Decimal(a['c']), _power_value(a['x'], a['n']))}"
    if fam == "mean":
        v = a["values"]
        if not v:
            raise ValueError("mean of no values")
        return f"平均值为 {sum(v) / len(v)!r}"
    if fam == "area":
        return f"面积为 {a['length'] * a['width']} 平方厘米"
    if fam == "mass":
        return f"{a['density'] * a['volume']} 克"
    if fam == "discount":
        p, q = int(a["original"]), int(a["discounted"])
        if p == 0:
            raise ValueError("original price 0")
        return repr((p - q) / p * 100)
    if fam == "sales":
        s, p = int(a["last_year"]), int(a["percent"])
        return repr(s + s * p / 100)
    if fam == "fraction":
        n, d = a["numerator"], a["denominator"]
        if d == 0:
            raise ValueError("denominator 0")
        g = math.gcd(n, d)
        return f"最简化的形式为：{n // g}/{d // g}"
    if fam == "english":
        raise ValueError("english items have no solver (passed through)")
    raise ValueError(f"unknown family {fam!r}")


def render_problem(parsed):
    """The problem text of a Parsed Chinese problem (inverse of parse: parse(render_problem(p)) == p)."""
    fam, a = parsed.family, parsed.args
    if fam in _OPS:
        return f"计算 {a['a']} {_OPS[fam]} {a['b']} 等于多少？"
    if fam == "power":
        return f"计算 {a['x']} 的 {a['n']} 次方？"
    if fam == "sqrt":
        return f"计算 {a['x']} 的平方根？"
    if fam == "equation":
        return f"解方程 {a['a']}x + {a['b']} = 0"
    if fam == "function":
        return f"当 x = {a['x']} 时，求函数 y = {a['c']}x^{a['n']} 的值"
    if fam == "mean":
        return "求以下数据的平均值：[" + ", ".join(map(str, a["values"])) + "]"
    if fam == "area":
        return f"一个长方形的长为 {a['length']} 厘米，宽为 {a['width']} 厘米，请计算其面积。"
    if fam == "mass":
        return f"某物体的密度为 {a['density']} 克/立方厘米，体积为 {a['volume']} 立方厘米，请计算该物体的质量。"
    if fam == "discount":
        return f"商品原价为 {a['original']} 元，打折后的价格为 {a['discounted']} 元，请计算打折的折扣比例。"
    if fam == "sales":
        return f"去年销售额为 {a['last_year']} 万元，今年销售额增加了 {a['percent']}%，请计算今年的销售额。"
    if fam == "fraction":
        return f"将分数 {a['numerator']}/{a['denominator']} 进行简化。"
    raise ValueError(f"no problem text for family {fam!r}")


# ----------------------------------------------------------------------------------------------- answers

_ANSWER_NUM = re.compile(r"-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?(?:/\d+)?")
_PREFIX = {
    "equation": "方程的解为：",
    "function": "函数的值为：",
    "mean": "平均值为 ",
    "fraction": "最简化的形式为：",
}
_AREA_RX = re.compile(r"面积为 (\S+) 平方厘米")
_MASS_RX = re.compile(r"(\S+) 克")


def final_answer(solution, family):
    """The answer text inside a solution: "-4584.53" of "-3828.45 - 756.08 = -4584.53", "58.0" of
    "平均值为 58.0", "p/q" of a fraction, the \\boxed{} content of an English solution.

    Gold solutions always have their family's form. A text with a final-answer line (lorakit.answers'
    FINAL_MARKER "答案：", as CoT targets end) gives what follows the last marker. For any other text (a
    model's output) the family's form is looked for on the last line, then the last number-like token
    (E-notation and p/q included) is returned; "" when there is none. English without \\boxed{} returns
    the stripped text.
    """
    text = solution.strip()
    if family == "english":
        b = boxed(text)
        return b.strip() if b is not None else text
    marked = after_marker(text)
    if marked:
        return marked
    last = text.rsplit("\n", 1)[-1].strip()
    if family in _OPS or family in ("power", "sqrt"):
        if " = " in last:
            return last.rsplit(" = ", 1)[1].strip()
    elif family in _PREFIX:
        pre = _PREFIX[family]
        if last.startswith(pre):
            return last[len(pre):].strip()
    elif family == "area":
        m = _AREA_RX.search(last)
        if m:
            return m.group(1)
    elif family == "mass":
        m = _MASS_RX.fullmatch(last)
        if m:
            return m.group(1)
    elif family in ("discount", "sales"):
        if _ANSWER_NUM.fullmatch(last):
            return last
    found = _ANSWER_NUM.findall(last) or _ANSWER_NUM.findall(text)
    return found[-1] if found else ""


# ----------------------------------------------------------------------------------------------- generating

def _cents(v):
    """Integer hundredths -> the 2-decimal literal the real data writes ("-768.30", "0.05")."""
    sign = "-" if v < 0 else ""
    v = abs(v)
    return f"{sign}{v // 100}.{v % 100:02d}"


def _nonzero(rng, lo, hi):
    while True:
        v = rng.randint(lo, hi)
        if v:
            return v


def random_args(family, rng):
    """Random Parsed problem of a Chinese family, with the real number ranges (see generate)."""
    r = rng.randint
    if family in _OPS:
        b = _nonzero(rng, -999999, 999999) if family == "div" else r(-999999, 999999)
        return Parsed(family, {"a": _cents(r(-999999, 999999)), "b": _cents(b)})
    if family == "power":
        return Parsed(family, {"x": _cents(_nonzero(rng, -99999, 99999)), "n": r(0, 5)})
    if family == "sqrt":
        return Parsed(family, {"x": _cents(r(1, 999999))})
    if family == "equation":
        return Parsed(family, {"a": _nonzero(rng, -100, 100), "b": r(-100, 100)})
    if family == "function":
        return Parsed(family, {"x": _cents(r(10, 1000)), "c": str(r(1, 100)), "n": r(1, 100)})
    if family == "mean":
        return Parsed(family, {"values": [r(1, 100) for _ in range(r(3, 10))]})
    if family == "area":
        return Parsed(family, {"length": r(1, 100), "width": r(1, 100)})
    if family == "mass":
        return Parsed(family, {"density": r(1, 10), "volume": r(1, 10)})
    if family == "discount":
        return Parsed(family, {"original": str(r(1, 100)), "discounted": str(r(1, 100))})
    if family == "sales":
        return Parsed(family, {"last_year": str(r(1, 100)), "percent": str(r(1, 100))})
    if family == "fraction":
        n = r(1, 9)
        return Parsed(family, {"numerator": n, "denominator": r(n + 1, 10)})
    if family == "english":
        raise ValueError("english items are not generated (use --english-from)")
    raise ValueError(f"unknown family {family!r} (choose from {', '.join(CHINESE_FAMILIES)})")


def generate(family, rng):
    """One record {"problem", "solution"} of a Chinese family, in the real wording and number ranges.

    Ranges (CONTEST.md §3, the sample and the unique counts): +-*/ operands 2-decimal in (-10000, 10000)
    (divisor != 0); power base 2-decimal in (-1000, 1000) (not 0), N 0..5; sqrt 2-decimal in (0, 10000);
    equation a in [-100, 100] \\ {0}, b in [-100, 100]; function x 2-decimal in [0.10, 10.00], C 1..100,
    N 1..100; mean 3..10 ints in 1..100; area 1..100 (the 8,665 unique areas fit 1..100 better than 1..99);
    mass 1..10; discount / sales ints 1..100; fraction 1 <= a < b <= 10 (exactly the 45 real pairs).
    All numbers are uniform; one rng call sequence per record, so a seed fixes the whole output.
    """
    p = random_args(family, rng)
    return {"problem": render_problem(p), "solution": solve(p)}
