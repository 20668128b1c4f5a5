"""Target rewrites (recipes) for the math data: stock, cot, round:N. (Being written; see issue 3.)"""

# The one final-answer line every CoT target ends with; the scorer prefers the number after it.
FINAL_MARKER = "答案："
