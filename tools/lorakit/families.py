"""The 11 Chinese problem families of the contest's train.json (+ the English items): one module for all.

classify(problem) -> family name; parse(problem) -> Parsed(family, args); solve(parsed) -> the gold
solution string, character for character; final_answer(solution, family) -> the answer text;
generate(family, rng) -> {"problem", "solution"} in the real format and number distribution.

How the real generator computed each family (established on ../shared/data/contest_sample.jsonl, see
docs/data.md): Python `decimal` in its default context (28 significant digits, ROUND_HALF_EVEN) for
+ - * / power sqrt and the function value, Python float arithmetic (shown with repr) for the linear
equation, the mean, the discount ratio and the sales figure, plain ints for area / mass / fraction.
"""

import math
import re
from dataclasses import dataclass, field
from decimal import ROUND_HALF_EVEN, Context, Decimal

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

# Python's decimal default context, pinned here so that nobody's getcontext() changes can leak in.
CTX = Context(prec=28, rounding=ROUND_HALF_EVEN)

_OPS = {"add": "+", "sub": "-", "mul": "*", "div": "/"}
_OP_FAMILY = {v: k for k, v in _OPS.items()}

_NUM = r"-?\d+(?:\.\d+)?"
_INT = r"-?\d+"
_PATTERNS = [
    ("arith", re.compile(r"计算 (%s) ([-+*/]) (%s) 等于多少？\Z" % (_NUM, _NUM))),
    ("power", re.compile(r"计算 (%s) 的 (\d+) 次方？\Z" % _NUM)),
    ("sqrt", re.compile(r"计算 (%s) 的平方根？\Z" % _NUM)),
    ("equation", re.compile(r"解方程 (%s)x \+ (%s) = 0\Z" % (_INT, _INT))),
    ("function", re.compile(r"当 x = (%s) 时，求函数 y = (%s)x\^(\d+) 的值\Z" % (_NUM, _INT))),
    ("mean", re.compile(r"求以下数据的平均值：\[(%s(?:, %s)*)\]\Z" % (_INT, _INT))),
    ("area", re.compile(r"一个长方形的长为 (\d+) 厘米，宽为 (\d+) 厘米，请计算其面积。\Z")),
    ("mass", re.compile(r"某物体的密度为 (\d+) 克/立方厘米，体积为 (\d+) 立方厘米，请计算该物体的质量。\Z")),
    ("discount", re.compile(r"商品原价为 (\d+) 元，打折后的价格为 (\d+) 元，请计算打折的折扣比例。\Z")),
    ("sales", re.compile(r"去年销售额为 (\d+) 万元，今年销售额增加了 (\d+)%，请计算今年的销售额。\Z")),
    ("fraction", re.compile(r"将分数 (\d+)/(\d+) 进行简化。\Z")),
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


def classify(problem):
    """Family name of a problem: one of FAMILIES, or "unknown" for a Chinese problem of no family."""
    p = parse(problem)
    return p.family if p is not None else UNKNOWN


# ----------------------------------------------------------------------------------------------- solving

def _dec(text):
    return Decimal(text)


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
            raise ValueError("division by zero: %s / %s" % (a, b))
        r = CTX.divide(da, db)
    return "%s %s %s = %s" % (a, op, b, r)


def _power_value(x, n):
    dx = Decimal(x)
    if dx == 0 and n == 0:
        raise ValueError("0^0 is undefined")
    return CTX.power(dx, n)


def solve(parsed):
    """The gold solution string for a Parsed problem, exactly as train.json writes it.

    Raises ValueError for english (no solver) or for arguments the real generator never produced
    (division by zero, 0^0, a = 0 in the equation, zero denominators).
    """
    fam, a = parsed.family, parsed.args
    if fam in _OPS:
        return _arith(_OPS[fam], a["a"], a["b"])
    if fam == "power":
        return "%s^%d = %s" % (a["x"], a["n"], _power_value(a["x"], a["n"]))
    if fam == "sqrt":
        dx = Decimal(a["x"])
        if dx < 0:
            raise ValueError("square root of a negative number: %s" % a["x"])
        return "√%s = %s" % (a["x"], CTX.sqrt(dx))
    if fam == "equation":
        if a["a"] == 0:
            raise ValueError("equation with a = 0")
        return "方程的解为：%r" % (-a["b"] / a["a"])
    if fam == "function":
        return "函数的值为：%s" % CTX.multiply(Decimal(a["c"]), _power_value(a["x"], a["n"]))
    if fam == "mean":
        v = a["values"]
        if not v:
            raise ValueError("mean of no values")
        return "平均值为 %r" % (sum(v) / len(v))
    if fam == "area":
        return "面积为 %d 平方厘米" % (a["length"] * a["width"])
    if fam == "mass":
        return "%d 克" % (a["density"] * a["volume"])
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
        return "最简化的形式为：%d/%d" % (n // g, d // g)
    if fam == "english":
        raise ValueError("english items have no solver (passed through)")
    raise ValueError("unknown family %r" % fam)


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


def boxed(text):
    """Content of the last \\boxed{...} (balanced braces) in text, or None."""
    start = text.rfind("\\boxed")
    while start != -1:
        i = text.find("{", start)
        if i == -1:
            return None
        depth, j = 0, i
        while j < len(text):
            ch = text[j]
            if ch == "{":
                depth += 1
            elif ch == "}":
                depth -= 1
                if depth == 0:
                    return text[i + 1:j]
            j += 1
        start = text.rfind("\\boxed", 0, start)
    return None


def final_answer(solution, family):
    """The answer text inside a solution: "-4584.53" of "-3828.45 - 756.08 = -4584.53", "58.0" of
    "平均值为 58.0", "p/q" of a fraction, the \\boxed{} content of an English solution.

    Gold solutions always have their family's form. For any other text (a model's output) the form is
    looked for first on the last line, then the last number-like token (E-notation and p/q included)
    is returned; "" when there is none. English without \\boxed{} returns the stripped text.
    """
    text = solution.strip()
    if family == "english":
        b = boxed(text)
        return b.strip() if b is not None else text
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
    return "%s%d.%02d" % (sign, v // 100, v % 100)


def _nonzero_cents(rng, lo, hi):
    while True:
        v = rng.randint(lo, hi)
        if v:
            return v


def generate(family, rng):
    """One record {"problem", "solution"} of a Chinese family, in the real wording and number ranges.

    Ranges (CONTEST.md §3 and the sample): +-*/ operands 2-decimal in (-10000, 10000) (divisor != 0);
    power base 2-decimal in (-1000, 1000) (not 0), N 0..5; sqrt 2-decimal in (0, 10000); equation a in
    [-100, 100] \\ {0}, b in [-100, 100]; function x 2-decimal in (0, 10), C 1..100, N 1..100; mean 3..10
    ints in 1..100; area 1..99; mass 1..10; discount / sales ints 1..100; fraction 1 <= a < b <= 10.
    """
    r = rng.randint
    if family in _OPS:
        op = _OPS[family]
        a = _cents(r(-999999, 999999))
        b = _cents(_nonzero_cents(rng, -999999, 999999) if op == "/" else r(-999999, 999999))
        return {"problem": "计算 %s %s %s 等于多少？" % (a, op, b), "solution": _arith(op, a, b)}
    if family == "power":
        x, n = _cents(_nonzero_cents(rng, -99999, 99999)), r(0, 5)
        return {"problem": "计算 %s 的 %d 次方？" % (x, n),
                "solution": "%s^%d = %s" % (x, n, _power_value(x, n))}
    if family == "sqrt":
        x = _cents(r(1, 999999))
        return {"problem": "计算 %s 的平方根？" % x, "solution": "√%s = %s" % (x, CTX.sqrt(Decimal(x)))}
    if family == "equation":
        a, b = _nonzero_cents(rng, -100, 100), r(-100, 100)
        return {"problem": "解方程 %dx + %d = 0" % (a, b), "solution": "方程的解为：%r" % (-b / a)}
    if family == "function":
        x, c, n = _cents(r(1, 999)), r(1, 100), r(1, 100)
        value = CTX.multiply(Decimal(c), _power_value(x, n))
        return {"problem": "当 x = %s 时，求函数 y = %dx^%d 的值" % (x, c, n), "solution": "函数的值为：%s" % value}
    if family == "mean":
        v = [r(1, 100) for _ in range(r(3, 10))]
        return {"problem": "求以下数据的平均值：[%s]" % ", ".join(map(str, v)),
                "solution": "平均值为 %r" % (sum(v) / len(v))}
    if family == "area":
        a, b = r(1, 99), r(1, 99)
        return {"problem": "一个长方形的长为 %d 厘米，宽为 %d 厘米，请计算其面积。" % (a, b),
                "solution": "面积为 %d 平方厘米" % (a * b)}
    if family == "mass":
        d, v = r(1, 10), r(1, 10)
        return {"problem": "某物体的密度为 %d 克/立方厘米，体积为 %d 立方厘米，请计算该物体的质量。" % (d, v),
                "solution": "%d 克" % (d * v)}
    if family == "discount":
        p, q = r(1, 100), r(1, 100)
        return {"problem": "商品原价为 %d 元，打折后的价格为 %d 元，请计算打折的折扣比例。" % (p, q),
                "solution": repr((p - q) / p * 100)}
    if family == "sales":
        s, p = r(1, 100), r(1, 100)
        return {"problem": "去年销售额为 %d 万元，今年销售额增加了 %d%%，请计算今年的销售额。" % (s, p),
                "solution": repr(s + s * p / 100)}
    if family == "fraction":
        n = r(1, 9)
        d = r(n + 1, 10)
        g = math.gcd(n, d)
        return {"problem": "将分数 %d/%d 进行简化。" % (n, d), "solution": "最简化的形式为：%d/%d" % (n // g, d // g)}
    if family == "english":
        raise ValueError("english items are not generated (use --english-from)")
    raise ValueError("unknown family %r (choose from %s)" % (family, ", ".join(CHINESE_FAMILIES)))
