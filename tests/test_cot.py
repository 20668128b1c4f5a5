"""Recipes (stock, cot, round:N) and the exact CoT verification of lorakit.cot."""

import json
import random
from collections import Counter
from pathlib import Path

import pytest

from lorakit import cot, families
from lorakit.io import KitError

SAMPLE = Path(__file__).resolve().parent / "data" / "contest_sample.jsonl"


def _sample_records():
    with open(str(SAMPLE), encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


@pytest.fixture(scope="module")
def sample():
    return [(r, families.parse(r["problem"])) for r in _sample_records()]


def _record(problem):
    p = families.parse(problem)
    assert p is not None, problem
    return {"problem": problem, "solution": families.solve(p)}, p


def _generated(n_per_family, seed=7):
    rng = random.Random(seed)
    out = []
    for fam in families.CHINESE_FAMILIES:
        for _ in range(n_per_family):
            r = families.generate(fam, rng)
            out.append((r, families.parse(r["problem"])))
    return out


# ------------------------------------------------------------------------------------------ recipes

def test_parse_recipe_names():
    assert cot.parse_recipe("stock") == cot.Recipe("stock")
    assert cot.parse_recipe("cot") == cot.Recipe("cot", cot.DEFAULT_DECIMALS)
    assert cot.parse_recipe("cot:2") == cot.Recipe("cot", 2)
    assert cot.parse_recipe("round:0") == cot.Recipe("round", 0)
    assert cot.parse_recipe(" round:3 ").name == "round:3"
    assert cot.parse_recipe("cot").name == "cot"


@pytest.mark.parametrize("bad", ["", "cot2", "COT", "round", "round:", "round:-1", "round:x", "round:13",
                                 "cot:99", "stock:1", "goat"])
def test_unknown_recipe_is_a_clear_error(bad):
    with pytest.raises(KitError, match="unknown recipe"):
        cot.parse_recipe(bad)
    r, p = _record("计算 1.00 + 2.00 等于多少？")
    with pytest.raises(KitError, match="unknown recipe"):
        cot.rewrite(bad, r, p)
    assert cot.verify(r["solution"], p, r["solution"], bad) and "unknown recipe" in cot.verify(
        r["solution"], p, r["solution"], bad)[0]


def test_stock_is_the_gold_unchanged(sample):
    for r, p in sample:
        t = cot.rewrite("stock", r, p)
        assert t == r["solution"]
        assert cot.verify(t, p, r["solution"], "stock") == []
    r, p = sample[0]
    assert cot.verify(r["solution"] + " ", p, r["solution"], "stock")


def test_english_passthrough_for_every_recipe(sample):
    english = [(r, p) for r, p in sample if p.family == "english"]
    assert len(english) == 20
    for r, p in english:
        for recipe in ("stock", "cot", "cot:2", "round:0", "round:2"):
            t = cot.rewrite(recipe, r, p)
            assert t == r["solution"]
            assert cot.verify(t, p, r["solution"], recipe) == []
            assert cot.verify(t + "x", p, r["solution"], recipe)


def test_unrecognised_problem():
    r = {"problem": "计算 一加一 等于多少？", "solution": "2"}
    assert cot.rewrite("stock", r, None) == "2"
    for recipe in ("cot", "round:2"):
        with pytest.raises(cot.RewriteError, match="not recognised"):
            cot.rewrite(recipe, r, None)
        assert cot.verify("2", None, "2", recipe) == ["problem not recognised"]


# ------------------------------------------------------------------------------------------ round:N

@pytest.mark.parametrize("recipe", ["cot", "round:2", "round:1"])
def test_recipe_targets_score_as_correct_answers(sample, recipe):
    """A recipe's own target, as a completion, must be a correct answer under the headline prediction-precision
    policy for every real record: a target the scorer counts wrong teaches the model a wrong answer (rounded
    E-notation mantissas did, once the scorer stopped letting E-notation widen the precision)."""
    from lorakit.metrics import record_id, score_predictions

    gold = [r for r, _ in sample]
    preds = [{"id": record_id(r, i), "completion": cot.rewrite(recipe, r, p)}
             for i, (r, p) in enumerate(sample, 1)]
    rep = score_predictions(gold, preds)
    got = rep["policies"]["prediction-precision"]["correct"]
    misses = [m for m in rep.get("sample_misses", [])][:3]
    assert got == len(gold), (got, misses)


@pytest.mark.parametrize("problem,n,want", [
    ("计算 5073.46 / -1586.04 等于多少？", 2, "5073.46 / -1586.04 = -3.20"),
    ("计算 5073.46 / -1586.04 等于多少？", 0, "5073.46 / -1586.04 = -3"),
    ("计算 6874.58 - -2728.62 等于多少？", 1, "6874.58 - -2728.62 = 9603.2"),
    ("计算 6874.58 - -2728.62 等于多少？", 4, "6874.58 - -2728.62 = 9603.20"),   # shorter answers stay as written
    ("计算 0.50 * 0.25 等于多少？", 2, "0.50 * 0.25 = 0.13"),                  # 0.1250: ROUND_HALF_UP
    ("计算 -0.50 * 0.25 等于多少？", 2, "-0.50 * 0.25 = -0.13"),               # half away from zero
    ("计算 0.01 * 0.01 等于多少？", 2, "0.01 * 0.01 = 0.00"),                 # no "-0.00" either
    ("计算 -0.01 * 0.01 等于多少？", 2, "-0.01 * 0.01 = 0.00"),
    ("求以下数据的平均值：[20, 12, 72, 21, 95, 39]", 2, "平均值为 43.17"),
    # E-notation with a positive exponent is left whole: a rounded mantissa rounds above the units digit
    ("当 x = 7.59 时，求函数 y = 68x^95 的值", 2, "函数的值为：2.854155448324274205322988364E+85"),
    ("当 x = 0.54 时，求函数 y = 86x^90 的值", 1, "函数的值为：7.1E-23"),
    ("一个长方形的长为 54 厘米，宽为 44 厘米，请计算其面积。", 0, "面积为 2376 平方厘米"),
    ("去年销售额为 10 万元，今年销售额增加了 12%，请计算今年的销售额。", 2, "11.2"),  # 11.200000000000001
    ("将分数 4/6 进行简化。", 0, "最简化的形式为：2/3"),
])
def test_round_recipe(problem, n, want):
    r, p = _record(problem)
    t = cot.rewrite(f"round:{n}", r, p)
    assert t == want
    assert cot.verify(t, p, r["solution"], f"round:{n}") == []


def test_round_verify_catches_wrong_rounding_and_wording():
    r, p = _record("计算 5073.46 / -1586.04 等于多少？")
    assert cot.verify("5073.46 / -1586.04 = -3.19", p, r["solution"], "round:2")
    assert cot.verify("5073.46 / -1586.04 = -3.2", p, r["solution"], "round:2")   # format: 2 decimals
    assert cot.verify("5073.46 / -1586.04 ≈ -3.20", p, r["solution"], "round:2")
    assert cot.verify("5073.46 / -1586.04 = -3.20", p, r["solution"], "round:2") == []


def test_round_every_sample_record(sample):
    for n in (0, 1, 2, 4):
        for r, p in sample:
            t = cot.rewrite(f"round:{n}", r, p)
            assert cot.verify(t, p, r["solution"], f"round:{n}") == [], (r, t)


# ------------------------------------------------------------------------------------------ cot

def test_every_chinese_sample_record_gets_a_verified_cot(sample):
    counts, passed = Counter(), Counter()
    for r, p in sample:
        if p.family == "english":
            continue
        counts[p.family] += 1
        t = cot.rewrite("cot", r, p)
        errors = cot.verify(t, p, r["solution"], "cot")
        assert errors == [], (r, t, errors)
        passed[p.family] += 1
        lines = t.split("\n")
        assert lines[-1].startswith(cot.FINAL_MARKER) and t.count(cot.FINAL_MARKER) == 1
        assert cot.final_answer_of(t) == lines[-1][len(cot.FINAL_MARKER):]
        assert all(line and line == line.strip() for line in lines)
    assert sum(passed.values()) == 976 and passed == counts
    print("cot verified on contest_sample.jsonl:", sum(passed.values()), dict(sorted(passed.items())))


@pytest.mark.parametrize("recipe", ["cot", "cot:0", "cot:2"])
def test_generated_records_of_every_family_verify(recipe):
    rows = _generated(60)
    for r, p in rows:
        try:
            t = cot.rewrite(recipe, r, p)
        except cot.RewriteError as exc:
            raise AssertionError((r, exc)) from None
        errors = cot.verify(t, p, r["solution"], recipe)
        if errors and recipe == "cot:0" and p.family in ("discount", "mean", "equation"):
            # a float gold like 57.49999999999999 for 57.5 rounds the other way at 0 decimals: reported, not hidden
            assert "differs from the gold" in errors[0]
            continue
        assert errors == [], (r, t, errors)


EXPECTED = {
    "计算 -5059.05 * -3043.01 等于多少？": [
        "负*负=正",
        "5059.05*3000=15177150", "5059.05*40=202362", "5059.05*3=15177.15", "5059.05*0.01=50.5905",
        "15177150+202362=15379512", "15379512+15177.15=15394689.15", "15394689.15+50.5905=15394739.7405",
        "答案：15394739.7405"],
    "计算 5073.46 / -1586.04 等于多少？": [
        "5073.46/-1586.04=-(507346/158604)",
        "507346-158604*3=507346-475812=31534",
        "315340-158604*1=315340-158604=156736",
        "1567360-158604*9=1567360-1427436=139924",
        "1399240-158604*8=1399240-1268832=130408",
        "1304080-158604*8=1304080-1268832=35248",
        "352480-158604*2=352480-317208=35272",
        "507346/158604=3.19882...",
        "答案：-3.1988"],
    "计算 6489.72 的平方根？": [
        "√6489.72=√64|89.72|00|00|00|00",
        "64-8*8=64-64=0", "89-160*0=89-0=89", "8972-1605*5=8972-8025=947",
        "94700-16105*5=94700-80525=14175", "1417500-161108*8=1417500-1288864=128636",
        "12863600-1611167*7=12863600-11278169=1585431",
        "158543100-16111749*9=158543100-145005741=13537359",
        "√6489.72=80.55879...", "答案：80.5588"],
    "计算 -8198.08 + 8160.12 等于多少？": ["-8198.08+8160.12=-(8198.08-8160.12)", "8198.08-8160.12=37.96",
                                    "答案：-37.96"],
    "计算 9690.26 - 8922.32 等于多少？": ["9690.26-8922.32=767.94", "答案：767.94"],
    "计算 -692.97 的 3 次方？": ["-692.97^3=-(692.97^3)", "692.97^2=692.97*692.97=480207.4209",
                           "692.97^3=480207.4209*692.97=332769336.461073", "答案：-332769336.461073"],
    "计算 819.19 的 0 次方？": ["819.19^0=1", "答案：1"],
    "解方程 -70x + 34 = 0": ["-70x=-34", "x=-34/-70=34/70", "340-70*4=340-280=60", "600-70*8=600-560=40",
                           "400-70*5=400-350=50", "500-70*7=500-490=10", "100-70*1=100-70=30",
                           "34/70=0.48571...", "答案：0.4857"],
    "解方程 40x + 17 = 0": ["40x=-17", "x=-17/40=-(17/40)", "170-40*4=170-160=10", "100-40*2=100-80=20",
                          "200-40*5=200-200=0", "17/40=0.425", "答案：-0.425"],
    "解方程 -5x + 0 = 0": ["-5x=0", "x=0/-5=0/5", "0/5=0", "答案：-0.0"],
    "计算 5.00 / 2.00 等于多少？": ["5.00/2.00=500/200", "500-200*2=500-400=100", "1000-200*5=1000-1000=0",
                               "500/200=2.5", "答案：2.5"],
    "当 x = 3.73 时，求函数 y = 95x^1 的值": ["y=95*3.73=354.35", "答案：354.35"],
    "当 x = 9.80 时，求函数 y = 75x^1 的值": ["y=75*9.80=735.00", "答案：735.00"],
    # past 5 steps: 5 significant digits, never above the units digit; the gold itself when it is E-notation
    "当 x = 7.59 时，求函数 y = 68x^95 的值": ["y=68*7.59^95", "答案：2.854155448324274205322988364E+85"],
    "当 x = 7.27 时，求函数 y = 23x^24 的值": ["y=23*7.27^24", "答案：10928327378453219681595"],
    "当 x = 0.54 时，求函数 y = 86x^90 的值": ["y=86*0.54^90", "答案：7.0784E-23"],
    "求以下数据的平均值：[20, 12, 72, 21, 95, 39]": [
        "20+12=32", "32+72=104", "104+21=125", "125+95=220", "220+39=259", "平均值=259/6", "答案：43.1667"],
    "求以下数据的平均值：[30, 9, 95, 93]": ["30+9=39", "39+95=134", "134+93=227", "平均值=227/4", "答案：56.75"],
    "一个长方形的长为 54 厘米，宽为 44 厘米，请计算其面积。": [
        "面积=54*44", "54*40=2160", "54*4=216", "2160+216=2376", "答案：2376"],
    "某物体的密度为 3 克/立方厘米，体积为 7 立方厘米，请计算该物体的质量。": ["质量=3*7=21", "答案：21"],
    "商品原价为 4 元，打折后的价格为 52 元，请计算打折的折扣比例。": [
        "4-52=-48", "-48/4*100=-(4800/4)", "4800-4*1000=4800-4000=800", "800-4*200=800-800=0", "4800/4=1200",
        "答案：-1200.0"],
    "商品原价为 71 元，打折后的价格为 63 元，请计算打折的折扣比例。": [
        "71-63=8", "8/71*100=800/71", "800-71*10=800-710=90", "90-71*1=90-71=19", "190-71*2=190-142=48",
        "480-71*6=480-426=54", "540-71*7=540-497=43", "430-71*6=430-426=4", "40-71*0=40-0=40",
        "800/71=11.26760...", "答案：11.2676"],
    "去年销售额为 10 万元，今年销售额增加了 12%，请计算今年的销售额。": [
        "1+12%=1.12", "销售额=10*1.12", "1.12*10=11.2", "答案：11.2"],         # gold 11.200000000000001
    "去年销售额为 33 万元，今年销售额增加了 85%，请计算今年的销售额。": [
        "1+85%=1.85", "销售额=33*1.85", "1.85*30=55.5", "1.85*3=5.55", "55.5+5.55=61.05", "答案：61.05"],
    "将分数 4/6 进行简化。": ["gcd(4,6)=2", "4/6=2/3", "答案：2/3"],
}


@pytest.mark.parametrize("problem", sorted(EXPECTED))
def test_cot_formats(problem):
    r, p = _record(problem)
    t = cot.rewrite("cot", r, p)
    assert t.split("\n") == EXPECTED[problem]
    assert cot.verify(t, p, r["solution"], "cot") == []


def _corruptions(target):
    """Every single-digit change of every line (digit d -> (d+1) % 10), with the line index."""
    lines = target.split("\n")
    for i, line in enumerate(lines):
        for j, ch in enumerate(line):
            if ch.isdigit():
                bad = line[:j] + str((int(ch) + 1) % 10) + line[j + 1:]
                yield i, "\n".join(lines[:i] + [bad] + lines[i + 1:])


def _one_per_family(sample, k=3):
    seen, out = Counter(), []
    for r, p in list(sample) + _generated(k, seed=11):
        if p.family != "english" and seen[p.family] < k:
            seen[p.family] += 1
            out.append((r, p))
    assert set(seen) == set(families.CHINESE_FAMILIES)
    return out


def test_every_corrupted_digit_of_every_line_is_caught(sample):
    rows = _one_per_family(sample) + [_record(p) for p in sorted(EXPECTED)]
    checked = Counter()
    for r, p in rows:
        for recipe in ("cot", "cot:1"):
            t = cot.rewrite(recipe, r, p)
            assert cot.verify(t, p, r["solution"], recipe) == []
            n_lines = len(t.split("\n"))
            lines_hit = set()
            for i, bad in _corruptions(t):
                errors = cot.verify(bad, p, r["solution"], recipe)
                assert errors, ("corruption not caught", r["problem"], bad)
                lines_hit.add(i)
                checked[p.family] += 1
            # every line that carries digits was corrupted at least once (only the × sign-rule line has none)
            assert len(lines_hit) == n_lines - (p.family == "mul"), t
    assert sum(checked.values()) > 3000
    print("corruptions caught:", sum(checked.values()), "in", len(rows), "records x 2 recipes")


def test_structural_damage_is_caught(sample):
    for r, p in _one_per_family(sample, k=2):
        t = cot.rewrite("cot", r, p)
        lines = t.split("\n")
        gold = r["solution"]
        assert cot.verify(t + "\n", p, gold, "cot")                          # trailing empty line
        assert cot.verify("\n".join(lines[:-1]), p, gold, "cot")              # no answer line
        assert cot.verify(t + "\n" + lines[-1], p, gold, "cot")               # two answer lines
        assert cot.verify(lines[-1], p, gold, "cot") or len(lines) == 1       # steps missing
        for i in range(len(lines) - 1):                                       # any one step missing
            assert cot.verify("\n".join(lines[:i] + lines[i + 1:]), p, gold, "cot"), (t, i)
        for i in range(len(lines) - 1):                                       # a step repeated
            assert cot.verify("\n".join(lines[:i + 1] + lines[i:]), p, gold, "cot"), (t, i)
        assert cot.verify(t.replace(cot.FINAL_MARKER, cot.FINAL_MARKER + " "), p, gold, "cot")


@pytest.mark.parametrize("problem,line", [
    ("计算 -5059.05 * -3043.01 等于多少？", "负*负=正"),
    ("计算 9368.36 * -9545.07 等于多少？", "正*负=负"),
    ("计算 -7106.72 * 467.39 等于多少？", "负*正=负"),
    ("计算 7106.72 * 467.39 等于多少？", "正*正=正"),
])
def test_mul_sign_rule_line(problem, line):
    r, p = _record(problem)
    t = cot.rewrite("cot", r, p)
    assert t.split("\n")[0] == line
    assert cot.verify(t, p, r["solution"], "cot") == []
    for i in (0, 2, 4):
        flipped = line[:i] + ("正" if line[i] == "负" else "负") + line[i + 1:]
        assert cot.verify(t.replace(line, flipped, 1), p, r["solution"], "cot"), flipped


def test_wrong_final_answer_is_caught(sample):
    for r, p in _one_per_family(sample, k=2):
        t = cot.rewrite("cot", r, p)
        head, ans = t.rsplit(cot.FINAL_MARKER, 1)
        for wrong in ("0", ans + "1", "-" + ans if not ans.startswith("-") else ans[1:]):
            if wrong != ans:
                assert cot.verify(head + cot.FINAL_MARKER + wrong, p, r["solution"], "cot"), (t, wrong)


def test_gold_that_disagrees_with_the_exact_value_is_reported():
    # exact families: rewrite refuses; inexact families: verify reports the mismatch at the stated precision
    r, p = _record("计算 -5059.05 * -3043.01 等于多少？")
    bad = dict(r, solution=r["solution"].replace("7405", "7406"))
    with pytest.raises(cot.RewriteError, match="differs from the exact value"):
        cot.rewrite("cot", bad, p)
    r, p = _record("计算 5073.46 / -1586.04 等于多少？")
    bad_gold = "5073.46 / -1586.04 = -3.198922223903558548334216035"
    t = cot.rewrite("cot", dict(r, solution=bad_gold), p)
    assert any("differs from the gold" in e for e in cot.verify(t, p, bad_gold, "cot"))


def test_final_answer_of():
    assert cot.final_answer_of("1+1=2\n答案：2") == "2"
    assert cot.final_answer_of("答案：-3.1988 \n") == "-3.1988"
    assert cot.final_answer_of("答案：1\n答案：2\nmore") == "2"
    assert cot.final_answer_of("no marker 42") is None
    assert cot.final_answer_of("答案：") is None
    assert cot.final_answer_of(None) is None


def test_decimals_setting_changes_the_division_length():
    r, p = _record("计算 5073.46 / -1586.04 等于多少？")
    t0, t4 = cot.rewrite("cot:0", r, p), cot.rewrite("cot", r, p)
    assert cot.final_answer_of(t0) == "-3" and cot.final_answer_of(t4) == "-3.1988"
    assert len(t0.split("\n")) + 4 == len(t4.split("\n"))
    assert cot.verify(t0, p, r["solution"], "cot") and cot.verify(t4, p, r["solution"], "cot:0")


def test_recommended_seq_length():
    assert cot.recommended_seq_length("stock") == 256
    assert cot.recommended_seq_length("round:3") == 256
    assert cot.recommended_seq_length("cot") == 256
    assert cot.recommended_seq_length("cot:2") == 256
    assert cot.recommended_seq_length("cot:5") == 512
    assert set(cot.EXPECTED_COT_TOKENS) == set(families.CHINESE_FAMILIES)
