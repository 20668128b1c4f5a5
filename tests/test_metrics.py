"""lorakit.metrics: answer extraction, the three policies, EmF1 (against MindFormers itself), SQuAD v1.1."""

import random
from fractions import Fraction

import pytest

from lorakit.io import KitError
from lorakit.metrics import (
    emf1_score,
    extract_answer,
    find_numbers,
    judge,
    parse_number,
    score_predictions,
    squad_f1,
    squad_normalize,
    squad_v11_score,
)


def ans(completion, prompt=None):
    ex = extract_answer(completion, prompt)
    return None if ex.number is None else ex.number.value


@pytest.mark.parametrize("text,value", [
    ("-3828.45 - 756.08 = -4584.53", Fraction("-4584.53")),
    ("6874.58 - -2728.62 = 9603.20", Fraction("9603.2")),
    ("√6489.72 = 80.55879840216089022496722440", Fraction("80.55879840216089022496722440")),
    ("977.17^2 = 954861.2089", Fraction("954861.2089")),
    ("方程的解为：-0.6470588235294118", Fraction("-0.6470588235294118")),
    ("函数的值为：5.942981829662329751098737153E+73", Fraction("5.942981829662329751098737153") * 10 ** 73),
    ("平均值为 58.0", Fraction(58)),
    ("面积为 1260 平方厘米", Fraction(1260)),
    ("30 克", Fraction(30)),
    ("今年的销售额为 22.56 万元", Fraction("22.56")),
    ("最简化的形式为：3/4", Fraction(3, 4)),
    ("1e-5", Fraction(1, 100000)),
    ("总计 1,234,567.5 元", Fraction("1234567.5")),
    ("答案是 －１２.５", Fraction("-12.5")),          # full-width minus and digits
    ("x = \u22127.25", Fraction("-7.25")),            # U+2212 minus sign
    ("5-3", Fraction(3)),                             # operator, not sign
    ("so the answer is $\\boxed{\\dfrac{1}{36}}$.", Fraction(1, 36)),
    ("thus $\\boxed{-\\frac{5}{3}}$", Fraction(-5, 3)),
    ("\\boxed{180^\\circ}", Fraction(180)),
    ("\\boxed{10{,}000}", Fraction(10000)),
    ("第一步 12 * 3 = 36\n第二步 36 + 4 = 40\n答案：40", Fraction(40)),
    ("答案：-4584.53\n多余的 99", Fraction("-4584.53")),   # the marker wins over the last number
    ("-3828.45 - 756.08 =", None),                    # nothing after the last "=": no answer
    ("", None),
    ("没有数字", None),
])
def test_extract_answer(text, value):
    assert ans(text) == value


def test_prompt_numbers_never_used():
    prompt = "计算 -3828.45 - 756.08 等于多少？"
    assert ans("", prompt) is None
    assert ans(prompt, prompt) is None                 # completion = echoed prompt only
    assert ans(prompt + " -4584.53", prompt) == Fraction("-4584.53")
    ex = extract_answer(prompt + "-4584.53", prompt)
    assert ex.echo_removed and ex.number.value == Fraction("-4584.53")
    # the problem restated inside the completion (not only as a prefix) is never mined for numbers
    problem = "计算 -3828.45 - 756.08 等于多少？"
    wrapped = "USER: " + problem + " ASSISTANT:"
    assert extract_answer("好的，" + problem, wrapped, problem=problem).number is None
    assert extract_answer(problem + " -3828.45 - 756.08 = -4584.53", wrapped, problem=problem).number.value == \
        Fraction("-4584.53")


def test_decimals_written():
    assert find_numbers("2.85E+85")[0].decimals == 0  # written out in full it is an integer: no wider than units
    assert find_numbers("0e5")[0].decimals == 0
    assert find_numbers("1.5e-5")[0].decimals == 6
    assert find_numbers("9603.20")[0].decimals == 2
    assert find_numbers("3/4")[0].decimals is None


@pytest.mark.parametrize("text,numeric", [
    ("-4584.53", True), ("1260 平方厘米", True), ("\\dfrac{1}{36}", True), ("180^\\circ", True),
    ("\\sqrt{3}", False), ("\\left( -\\frac{5}{3}, \\frac{16}{3}, \\frac{25}{3} \\right)", False), ("x+1", False),
])
def test_parse_number_whole_answer(text, numeric):
    assert (parse_number(text) is not None) == numeric


def verdict(pred_text, gold_text, tol=1e-4):
    return judge(extract_answer(pred_text), parse_number(gold_text), gold_text, tol)


def test_policies():
    v = verdict("3.2", "3.198822223903558548334216035")
    assert not v["exact"] and v["prediction-precision"] and v["tolerance"] is False
    v = verdict("3.1988", "3.198822223903558548334216035")
    assert v["prediction-precision"] and v["tolerance"] and not v["exact"]
    v = verdict("3.1989", "3.198822223903558548334216035")
    assert not v["prediction-precision"] and v["tolerance"]
    v = verdict("9603.2", "9603.20")
    assert v["exact"] and v["prediction-precision"] and v["tolerance"]
    v = verdict("21.24", "21.240000000000002")
    assert not v["exact"] and v["prediction-precision"]
    # E-notation never widens the precision beyond the units of the value written out in full
    v = verdict("2.85E+85", "2.851234E+85")
    assert not v["prediction-precision"] and not v["exact"]
    assert verdict("2.851234E+85", "2.851234E+85")["exact"]
    assert not verdict("0e5", "12345.67")["prediction-precision"] and not verdict("0e1000", "3.5")["tolerance"]
    # a tie rounds either way
    assert verdict("0.12", "0.125")["prediction-precision"] and verdict("0.13", "0.125")["prediction-precision"]
    # integer answers to non-integer golds pass prediction-precision but are flagged
    v = verdict("3", "3.198822223903558548334216035")
    assert v["prediction-precision"] and v["integer_rounded"]
    v = verdict("4", "3.5000001")
    assert v["prediction-precision"] and v["integer_rounded"] and not verdict("4", "3.4999")["prediction-precision"]
    assert not verdict("3", "3.0")["integer_rounded"]          # gold is an integer: nothing gamed
    v = verdict("1.3629E+18", "1362919702540233528.242112492")      # 5 significant digits are not the answer
    assert not v["prediction-precision"] and not v["exact"]
    v = verdict("1.3629195E+3", "1362.9195024")                      # = 1362.9195: 4 decimals written
    assert v["prediction-precision"] and not v["integer_rounded"]
    # tolerance is relative, absolute at zero
    assert verdict("100.009", "100", 1e-4)["tolerance"] and not verdict("100.02", "100", 1e-4)["tolerance"]
    assert verdict("0.00001", "0", 1e-4)["tolerance"] and not verdict("0.001", "0", 1e-4)["tolerance"]
    # fractions compare by value
    assert verdict("最简化的形式为：6/8", "3/4")["exact"]
    # non-numeric gold: normalised string equality for every policy
    v = verdict("\\boxed{\\sqrt{3}}", "\\sqrt{3}")
    assert all(v[p] for p in ("exact", "prediction-precision", "tolerance"))
    assert not verdict("\\boxed{\\sqrt{2}}", "\\sqrt{3}")["tolerance"]
    assert not verdict("nothing", "-4584.53")["tolerance"]


def _rows():
    gold = [{"problem": "计算 1.00 + 2.00 等于多少？", "solution": "1.00 + 2.00 = 3.00"},
            {"problem": "解方程 4x + -2 = 0", "solution": "方程的解为：0.5"},
            {"problem": "计算 5.00 / 3.00 等于多少？", "solution": "5.00 / 3.00 = 1.666666666666666666666666667"}]
    pred = [{"id": "1", "completion": "3"}, {"id": "2", "completion": "x = 0.7"}, {"id": "3", "completion": "2"}]
    return gold, pred


def test_score_predictions_report():
    gold, pred = _rows()
    rep = score_predictions(gold, pred, tolerance=1e-4, ratio=0.5)
    assert rep["total"] == 3 and rep["matched_by"].startswith("gold line order")
    assert rep["policies"]["exact"] == {"accuracy": pytest.approx(1 / 3), "correct": 1}
    assert rep["policies"]["prediction-precision"]["correct"] == 2
    assert rep["integer_rounded"] == 1
    assert rep["prediction_precision_without_integer_rounding"]["correct"] == 1
    assert set(rep["families"]) == {"add", "equation", "div"}
    assert rep["families"]["div"]["policies"]["prediction-precision"]["correct"] == 1
    assert rep["score"]["by_policy"]["exact"] == pytest.approx(0.5 * 0.3 + 0.7 / 3)


def test_score_predictions_ids_and_errors():
    gold, pred = _rows()
    gold_ids = [dict(g, id="q%d" % i) for i, g in enumerate(gold)]
    pred_ids = [dict(p, id="q%d" % i) for i, p in enumerate(pred)]
    rep = score_predictions(gold_ids, list(reversed(pred_ids)))
    assert rep["matched_by"] == "id" and rep["policies"]["exact"]["correct"] == 1
    with pytest.raises(KitError, match="duplicate id 'q1'"):
        score_predictions(gold_ids, pred_ids + [pred_ids[1]])
    with pytest.raises(KitError, match="1 of 3 gold ids have no prediction"):
        score_predictions(gold_ids, pred_ids[:2])
    with pytest.raises(KitError, match="id 'zz' is not in"):
        score_predictions(gold_ids, pred_ids + [{"id": "zz", "completion": "1"}])
    with pytest.raises(KitError, match="duplicate id"):
        score_predictions(gold_ids + [gold_ids[0]], pred_ids)
    rep = score_predictions(gold_ids, pred_ids[:2], allow_missing=True)
    assert rep["missing_predictions"] == 1 and rep["answer_sources"]["missing"] == 1
    # predictions without ids are matched by position
    rep = score_predictions(gold, [{"completion": p["completion"]} for p in pred])
    assert rep["policies"]["exact"]["correct"] == 1


# ---------------------------------------------------------------------------------------------- EmF1 vs MindFormers

EMF1_STRINGS = [
    "", " ", "\n", "郑州市", "郑州市。", "郑州", "河南的省会是郑州市", "Denver Broncos", "the Denver Broncos!",
    "denver broncos", "Santa Clara, California", "Levi's Stadium in the San Francisco Bay Area at Santa Clara",
    "1,000 yards", "2016", "February 7, 2016", "a-b_c*d^e/f\\g~h`i+j=k", "中文，标点。测试：是否？正确！",
    "“引号”；‘单’《书名》……省略·顿、「角」（括号）－～『双角』", "…", "Mixed 中文 and English 混合 text",
    "first line\nsecond line", "  leading and trailing  ", "\n\nanswer after blank lines\nmore",
    "UPPER lower MiXeD", "tab\tseparated\twords", "numbers 3.14 and -2.5e3", "emoji 🙂 ok", "重复 重复 重复",
    "北京大学的学生在清华大学学习", "the the the", "Saint Bernadette Soubirous", "a Marian place of prayer",
    "Beyoncé Giselle Knowles-Carter", "(1981)", "late 1990s", "Destiny's Child", "C++ and C#", "x = y + 1",
]


def _mf_emf1():
    from mindformers.core.metric import EmF1Metric

    return EmF1Metric()


def test_emf1_matches_mindformers(capsys):
    m = _mf_emf1()
    rng = random.Random(7)
    pool = list("abc xyz郑州市河南省，。：？！-:_*^/\\~`+=“”；’《》…·、「」（）－～『』\n\tDE. ,'1234") + ["the ", "学生", "Broncos"]
    pairs = [(p, lab) for p in EMF1_STRINGS for lab in EMF1_STRINGS[::3]]
    for _ in range(300):
        pairs.append(("".join(rng.choice(pool) for _ in range(rng.randint(0, 25))),
                      "".join(rng.choice(pool) for _ in range(rng.randint(0, 25)))))
    for pred, label in pairs:
        theirs, _ = m.evaluate_pairs([pred.strip().split("\n")[0]], [label])
        ours = emf1_score([pred], [label])
        assert abs(ours["F1"] - theirs["F1"]) <= 1e-9, (pred, label, ours, theirs)
        assert abs(ours["Em"] - theirs["Em"]) <= 1e-9, (pred, label, ours, theirs)
    # the aggregate, through update() + eval() exactly as the MindFormers eval loop calls them
    m.clear()
    for pred, label in pairs:
        m.update([pred], [label])
    theirs = m.eval()
    ours = emf1_score([p for p, _ in pairs], [lab for _, lab in pairs])
    capsys.readouterr()
    assert abs(ours["F1"] - theirs["F1"]) <= 1e-9 and abs(ours["Em"] - theirs["Em"]) <= 1e-9
    assert 0 < ours["F1"] < 100 and 0 < ours["Em"] < 100


def test_emf1_known_values():
    assert emf1_score(["郑州市。"], ["郑州市"]) == {"F1": 100.0, "Em": 100.0}
    r = emf1_score(["郑州"], ["郑州市"])
    assert r["Em"] == 0 and r["F1"] == pytest.approx(100 * 2 * (1 * 2 / 3) / (1 + 2 / 3))
    assert emf1_score(["", "y\nx"], ["a", "x"]) == {"F1": 0.0, "Em": 0.0}   # first line of stripped prediction
    assert emf1_score(["Denver Broncos\nand more"], ["denver broncos"])["Em"] == 100.0


def test_squad_v11_official():
    assert squad_normalize("The  Denver, Broncos!") == "denver broncos"
    assert squad_f1("the cat sat", "a cat sat on the mat") == pytest.approx(2 * 1 * 0.5 / 1.5)
    assert squad_f1("", "x") == 0.0
    r = squad_v11_score(["Denver Broncos", "1990s", "nothing"],
                        [["Denver Broncos", "the Broncos"], ["late 1990s"], ["x"]])
    assert r["exact_match"] == pytest.approx(100 / 3)
    assert r["f1"] == pytest.approx(100 * (1 + 2 * 1 * 0.5 / 1.5 + 0) / 3)
