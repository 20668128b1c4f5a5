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
    `2.85E+85` would be a wrong answer (lorakit.math_metrics).
Every CoT step line is written compactly (no spaces: Llama 3 spends one token on a space before a number).

verify() never trusts rewrite(): it re-parses every line with its family's grammar, recomputes each step
exactly (int / Decimal with traps on inexact results / Fraction), checks that each step continues the
previous one and uses the problem's own operands, and checks that the answer equals the exact value and the
gold at the stated precision.
"""

# The recipes' interface: the writer and the checker live in separate modules (the checker never imports the
# writer), the rules both apply in lorakit.cot_rules, the answer marker in lorakit.answers.
from .answers import FINAL_MARKER, final_answer_of  # noqa: F401
from .cot_check import verify  # noqa: F401
from .cot_rules import (  # noqa: F401
    DEFAULT_DECIMALS,
    EXPECTED_COT_TOKENS,
    FUNCTION_SIG_DIGITS,
    MAX_DECIMALS,
    POWER_STEPS_MAX,
    RECIPES,
    RECOMMENDED_SEQ_LENGTH,
    Recipe,
    RewriteError,
    parse_recipe,
    recommended_seq_length,
    round_answer,
)
from .cot_write import rewrite  # noqa: F401
