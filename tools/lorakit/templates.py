"""Prompt templates: the one place where training rows and inference prompts are made.

A template turns a problem into a prompt text and an answer into an answer text; a training row is
`[BOS] + ids(prompt) + ids(answer) + [EOS]`, labels -100 over BOS and the prompt, pad id / -100 after.
Inference feeds exactly `[BOS] + ids(prompt)` (encode_prompt), so train and inference cannot drift.

Templates
- `vicuna` (default): the wrapper the contest's `research/llama3/llama_preprocess.py --dataset_type qa`
  adds (FastChat vicuna_v1.1): `SYSTEM USER: {problem} ASSISTANT: {solution}` + EOS. The prompt ends at
  `ASSISTANT:`; the answer text is `" " + solution`. That is where the stock script's mask ends: it masks
  `len(tokens("... ASSISTANT: ")) - 1` text tokens (the `- 3` in its code), i.e. everything through the
  `:` token, and the next token (`" "`, `" -"` or `" 方程"`: the space joins the answer's first
  pre-token) is the first target. Because `:` followed by a space always closes a Llama 3 pre-token,
  ids(prompt) + ids(answer) equals the stock script's ids of the whole text, row for row. An inference
  prompt ending in `"ASSISTANT: "` (with the space) would NOT be the training context.
- `vicuna_alpaca`: the contest baseline as shipped: the alpaca prompt inside the Vicuna user turn.
- `alpaca`: the contest's alpaca prompt (CONTEST.md §4) alone; the answer follows on the next line.
- `plain`: the bare problem, a newline, the answer.
- `squad`: the contest's SQuAD eval prompt (problem = {"context", "question"}); the answer follows a space.
- `chat`: the tokenizer's own chat template (an imported model's tokenizer_config.json, e.g. SmolLM2's ChatML with
  its default system prompt): one user turn holding the problem, then the generation prompt; the answer is the
  assistant's text and the turn's end token is EOS. The Jinja source is rendered once per tokenizer in a sandbox
  with marker strings, and cut into fixed parts (special tokens inserted by id, never parsed from the problem)
  around the problem. The rendered text must start with the BOS token, which the kit's rows already carry.
"""

import itertools

import numpy as np

from .io import KitError

IGNORE = -100

VICUNA_SYSTEM = ("A chat between a curious user and an artificial intelligence assistant. "
                 "The assistant gives helpful, detailed, and polite answers to the user's questions.")
ALPACA = ("Below is an instruction that describes a task. Write a response that appropriately completes the "
          "request.\n\n### Instruction:\n{problem}\n\n### Response:")
SQUAD = "Read the passage and answer the question below.\n\n### Instruction:\n{context}\n\n### Input:\n{question}\n\n### Response:"


def _vicuna_body(problem):
    return " USER: " + problem + " ASSISTANT:"


def _squad_fields(problem):
    if isinstance(problem, dict):
        try:
            return problem["context"], problem["question"]
        except KeyError as exc:
            raise KitError("squad template needs 'context' and 'question', missing %s" % exc) from None
    if isinstance(problem, (tuple, list)) and len(problem) == 2:
        return problem[0], problem[1]
    raise KitError("squad template needs a {'context', 'question'} mapping, got %r" % type(problem).__name__)


class Template:
    """head (constant text, tokenised once) + body(problem) = prompt; joiner + answer = answer text."""

    def __init__(self, name, head, body, joiner, doc):
        self.name, self.head, self.body, self.joiner, self.doc = name, head, body, joiner, doc

    def prompt_text(self, problem):
        return self.head + self.body(problem)

    def answer_text(self, answer):
        return self.joiner + answer


_TEMPLATES = [
    Template("vicuna", VICUNA_SYSTEM, _vicuna_body, " ",
             "stock llama_preprocess.py Vicuna wrapper: SYSTEM USER: {problem} ASSISTANT: {answer}"),
    Template("vicuna_alpaca", VICUNA_SYSTEM, lambda p: _vicuna_body(ALPACA.format(problem=p)), " ",
             "contest baseline: alpaca prompt inside the Vicuna user turn"),
    Template("alpaca", "", lambda p: ALPACA.format(problem=p) + "\n", "",
             "contest alpaca prompt, answer on the next line"),
    Template("plain", "", lambda p: p + "\n", "", "problem, newline, answer"),
    Template("squad", "", lambda p: SQUAD.format(context=_squad_fields(p)[0], question=_squad_fields(p)[1]), " ",
             "contest SQuAD eval prompt (context + question)"),
]
_BY_NAME = {t.name: t for t in _TEMPLATES}
CHAT = "chat"
TEMPLATES = tuple(t.name for t in _TEMPLATES) + (CHAT,)
DEFAULT_TEMPLATE = "vicuna"


def get_template(name, tok=None):
    """The template called `name`; `chat` is built from `tok`'s own chat template."""
    if name == CHAT:
        if tok is None:
            raise KitError("template 'chat' is the tokenizer's own chat template: it needs the tokenizer")
        return chat_template(tok)
    try:
        return _BY_NAME[name]
    except KeyError:
        raise KitError("unknown template %r (known: %s)" % (name, ", ".join(TEMPLATES))) from None


def render_prompt(template, problem, tok=None):
    """The prompt text the model sees (after BOS) before it must produce the answer."""
    return get_template(template, tok).prompt_text(problem)


def render_example(template, problem, answer, tok=None):
    """prompt text, answer text (their concatenation is the row's text between BOS and EOS)."""
    t = get_template(template, tok)
    return t.prompt_text(problem), t.answer_text(answer)


_PROBLEM_MARK, _ANSWER_MARK = "\u2063KIT-PROBLEM\u2063", "\u2063KIT-ANSWER\u2063"


def _render_chat(source, messages, add_generation_prompt, bos, eos):
    """Render a Hugging Face-style Jinja chat template in jinja2's sandbox (a template is untrusted input)."""
    try:
        import jinja2
        from jinja2.sandbox import ImmutableSandboxedEnvironment
    except ImportError:
        raise KitError("the chat template needs jinja2: run `make setup`") from None

    def raise_exception(message):
        raise KitError("chat template: %s" % message)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    env.globals["raise_exception"] = raise_exception
    try:
        return env.from_string(source).render(messages=messages, add_generation_prompt=add_generation_prompt,
                                              bos_token=bos, eos_token=eos)
    except jinja2.TemplateError as exc:
        raise KitError("chat template: %s" % exc) from None


def _split_specials(text, names):
    """[("text", s) | ("special", name)] of `text`, special token names matched longest first."""
    import re

    pattern = re.compile("|".join(re.escape(n) for n in sorted(names, key=len, reverse=True)))
    parts, pos = [], 0
    for m in pattern.finditer(text):
        if m.start() > pos:
            parts.append(("text", text[pos:m.start()]))
        parts.append(("special", m.group(0)))
        pos = m.end()
    if pos < len(text):
        parts.append(("text", text[pos:]))
    return parts


class ChatTemplate(Template):
    """`chat`: the tokenizer's chat template around one user turn (see the module doc)."""

    def __init__(self, tok):
        source = getattr(tok, "chat_template", None)
        if not source:
            raise KitError("tokenizer %s has no chat template (template 'chat' needs an imported model's "
                           "tokenizer, make base-model)" % getattr(tok, "path", "?"))
        names = [n for n in tok.special_tokens]
        bos, eos = tok.decode([tok.bos_id]), tok.decode([tok.eos_id])
        user = {"role": "user", "content": _PROBLEM_MARK}
        prompt = _render_chat(source, [user], True, bos, eos)
        full = _render_chat(source, [user, {"role": "assistant", "content": _ANSWER_MARK}], False, bos, eos)
        if prompt.count(_PROBLEM_MARK) != 1:
            raise KitError("chat template: the user message appears %d times in the prompt"
                           % prompt.count(_PROBLEM_MARK))
        if not prompt.startswith(bos):
            raise KitError("chat template: the prompt does not start with the BOS token %r (the kit's rows do)" % bos)
        rest = full[len(prompt):] if full.startswith(prompt) else ""
        if _ANSWER_MARK not in rest or not rest.split(_ANSWER_MARK, 1)[1].startswith(eos):
            raise KitError("chat template: the assistant turn is not the generation prompt + answer + EOS %r" % eos)
        joiner = rest.split(_ANSWER_MARK, 1)[0]
        if _split_specials(joiner, names) != ([("text", joiner)] if joiner else []):
            raise KitError("chat template: special tokens between the generation prompt and the answer")
        head, tail = prompt[len(bos):].split(_PROBLEM_MARK)
        self.head_parts, self.tail_parts = _split_specials(head, names), _split_specials(tail, names)
        self.source = source
        Template.__init__(self, CHAT, head, lambda p: p + tail, joiner,
                          "the tokenizer's own chat template (one user turn, then the generation prompt)")

    def encode_prompt_ids(self, tok, problem):
        return tok.encode_with_specials(self.head_parts + [("text", problem)] + self.tail_parts)


def chat_template(tok):
    """The `chat` template of `tok`, built once per tokenizer object."""
    cache = tok.__dict__.setdefault("_kit_chat_template", [])
    if not cache:
        cache.append(ChatTemplate(tok))
    return cache[0]


_PROBES = ("计算 1 + 2 等于多少？", "x", "1", " 1", "\n", "  ", "-3", "A", "")


def _head_ids(tok, t):
    """ids(head), cached per tokenizer; used only if ids(head + body) == ids(head) + ids(body) for probe bodies.

    The body of a template starts with fixed text (" USER: " for vicuna), so the pre-tokenizer split at
    the head's end does not depend on the problem; the probes check that for this tokenizer.
    """
    cache = tok.__dict__.setdefault("_kit_head_ids", {})
    if t.name not in cache:
        head = tok.encode(t.head) if t.head else []
        ok = all(tok.encode(t.head + t.body(s)) == head + tok.encode(t.body(s)) for s in _PROBES) if t.head else True
        cache[t.name] = head if ok else None
    return cache[t.name]


def encode_prompts(tok, template, problems):
    """ids(prompt) for many problems (no BOS), in tiktoken's thread pool."""
    t = get_template(template, tok)
    if isinstance(t, ChatTemplate):
        return [t.encode_prompt_ids(tok, p) for p in problems]
    head = _head_ids(tok, t)
    if head is None:
        return tok.encode_batch([t.prompt_text(p) for p in problems])
    return [head + ids for ids in tok.encode_batch([t.body(p) for p in problems])]


def encode_answers(tok, template, answers):
    t = get_template(template, tok)
    return tok.encode_batch([t.answer_text(a) for a in answers])


def encode_prompt(tok, template, problem):
    """The token ids the model sees before it must answer: BOS + prompt, exactly as in training rows."""
    return [tok.bos_id] + encode_prompts(tok, template, [problem])[0]


OK, OVERLONG, TRUNCATED, NO_TARGET = "ok", "overlong", "truncated", "no_target"
_STATUS = (OK, TRUNCATED, OVERLONG, NO_TARGET)


def pack_rows(tok, prompts, answers, seq_length, truncate=False):
    """Rows of seq_length+1 tokens from token lists (vectorised over a batch).

    Returns (status, n_tokens, input_ids, labels): status[i] is one of ok | truncated (tail cut,
    truncate=True) | overlong (dropped, truncate=False) | no_target (prompt alone fills the row: dropped
    even with truncate, it would teach nothing); n_tokens[i] = 1 + len(prompt) + len(answer) + 1;
    input_ids / labels are int32 (k, seq_length+1) for the k kept rows (ok + truncated), in order.
    """
    width = seq_length + 1
    b = len(prompts)
    n_p = np.fromiter((len(p) for p in prompts), np.int64, count=b) + 1
    n_a = np.fromiter((len(a) for a in answers), np.int64, count=b) + 1
    total = n_p + n_a
    code = np.zeros(b, np.int8)  # index into _STATUS
    over = total > width
    if truncate:
        code[over] = 1
        code[over & (n_p >= width)] = 3
    else:
        code[over] = 2
    keep = code <= 1
    idx = np.flatnonzero(keep)
    k = idx.size
    ids = np.full((k, width), tok.pad_id, np.int32)
    labels = np.full((k, width), IGNORE, np.int32)
    if k:
        bos, eos = [tok.bos_id], [tok.eos_id]
        pieces = []
        for i in idx.tolist():
            if code[i]:
                pieces.append((bos + prompts[i] + answers[i])[:width])
            else:
                pieces.extend((bos, prompts[i], answers[i], eos))
        lens = np.minimum(total[idx], width)
        flat = np.fromiter(itertools.chain.from_iterable(pieces), np.int32, count=int(lens.sum()))
        cols = np.arange(width)
        filled = cols[None, :] < lens[:, None]
        ids[filled] = flat
        target = filled & (cols[None, :] >= n_p[idx][:, None])
        labels[target] = ids[target]
    status = [_STATUS[c] for c in code.tolist()]
    return status, total, ids, labels


def encode_example(tok, template, problem, answer, seq_length, truncate=False):
    """(input_ids, labels) int32 arrays of length seq_length+1, or None when over-long (or no target left).

    Masking as stock Vicuna mode: BOS and the prompt -100; the answer text and <|end_of_text|> are
    targets; padding is tok.pad_id with label -100. truncate=True cuts the tail instead of dropping.
    """
    prompt_ids = encode_prompts(tok, template, [problem])[0]
    answer_ids = encode_answers(tok, template, [answer])[0]
    status, _, ids, labels = pack_rows(tok, [prompt_ids], [answer_ids], seq_length, truncate)
    if status[0] not in (OK, TRUNCATED):
        return None
    return ids[0], labels[0]
