"""The final-answer conventions every producer and reader of answers shares: the marker line CoT targets end
with, the LaTeX `\\boxed{}` of English solutions, and where the answer text of each sits.

lorakit.families (gold answers), lorakit.cot_* (targets) and lorakit.math_metrics (the scorer) all read answers
through this module, so the rule "the text after the last 答案：" exists once.
"""

# The one final-answer line every CoT target ends with; the scorer prefers the number after it.
FINAL_MARKER = "答案："


def after_marker(text, marker=FINAL_MARKER):
    """The text after the last `marker` of `text` (leading white space skipped, to the end of that line,
    stripped), or None when `text` is not a string or has no marker. May be "" (a marker with nothing after)."""
    if not isinstance(text, str) or not marker:
        return None
    i = text.rfind(marker)
    if i < 0:
        return None
    return text[i + len(marker):].strip().split("\n", 1)[0].strip()


def final_answer_of(target):
    """The answer text after the last FINAL_MARKER of a target, or None (no marker, or nothing after it)."""
    return after_marker(target) or None


def boxed(text):
    """Content of the last \\boxed{...} (balanced braces, the brace right after \\boxed), or None."""
    start = text.rfind("\\boxed")
    while start >= 0:
        i = start + len("\\boxed")
        while i < len(text) and text[i] == " ":
            i += 1
        if i < len(text) and text[i] == "{":
            depth, j = 0, i
            while j < len(text):
                if text[j] == "{":
                    depth += 1
                elif text[j] == "}":
                    depth -= 1
                    if depth == 0:
                        return text[i + 1: j]
                j += 1
        start = text.rfind("\\boxed", 0, start)
    return None
