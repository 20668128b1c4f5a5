"""The records tools hand each other, once: how an input row is identified, and typed views of the JSON records
a run leaves (convert_dataset's data report, predict's record, finetune's run.json) and of one LoRA spec.

Each record reads the JSON a tool wrote (`from_json`, tolerant: a missing or mistyped field reads as None, since
verify reads them from hostile submissions) and gives it back unchanged (`to_json`); the fields other tools rely
on are properties, so a field name and its type rule exist in one place. Where the files live: lorakit.layout.
"""

import collections

from .io import read_json


def record_id(row, ordinal):
    """A record's id: its own `id` field, else its 1-based ordinal in the file (the rule predict.py uses)."""
    rid = row.get("id")
    if rid is None or rid == "":
        return str(ordinal)
    return str(rid)


def _str(obj, key):
    value = obj.get(key)
    return value if isinstance(value, str) and value else None


def _text(key):
    """A field that reads as a non-empty string, else None."""
    return property(lambda self: _str(self.data, key))


def _positive_int(value):
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


class JsonRecord:
    """A JSON object a tool wrote, kept whole; subclasses name the fields other tools read."""

    def __init__(self, data=None):
        self.data = dict(data) if isinstance(data, dict) else {}

    @classmethod
    def from_json(cls, obj):
        return cls(obj)

    @classmethod
    def read(cls, path, reader=read_json):
        """The record of a file (reader: lorakit.io.read_json, or a size-capped strict reader for submissions)."""
        return cls(reader(path))

    def to_json(self):
        return dict(self.data)

    def get(self, key, default=None):
        return self.data.get(key, default)


class DataReport(JsonRecord):
    """convert_dataset.py's data_report.json: the prompt template and tokenizer the rows were made with, the
    recipe, and the answer-token budget predict.py uses."""

    template = _text("template")
    recipe = _text("recipe")

    @property
    def tokenizer_sha256(self):
        tok = self.data.get("tokenizer")
        return _str(tok, "sha256") if isinstance(tok, dict) else None

    @property
    def answer_token_budget(self):
        """max_new_tokens for predict.py: a top-level `max_new_tokens` (the longest answer among the rows that
        fit), else the longest training answer (`tokens.answer_tokens.all.max`, which counts the EOS), else None."""
        top = _positive_int(self.data.get("max_new_tokens"))
        if top:
            return top
        node = self.data.get("tokens")
        for key in ("answer_tokens", "all"):
            node = node.get(key) if isinstance(node, dict) else None
        return _positive_int(node.get("max")) if isinstance(node, dict) else None


class PredictRecord(JsonRecord):
    """predict.py's <out>.run.json: what a prediction file was made with (config, template, tokenizer, decoding)."""

    template = _text("template")
    tokenizer = _text("tokenizer")
    tokenizer_sha256 = _text("tokenizer_sha256")
    config = _text("config")

    @property
    def overrides(self):
        return [str(o) for o in self.data.get("overrides") or []]

    @property
    def adapter(self):
        return self.data.get("adapter")

    @property
    def no_pet(self):
        return bool(self.data.get("no_pet", False))


class RunRecord(JsonRecord):
    """finetune.py's run.json: status, the profile, the data and patches a run trained with, library versions."""

    @property
    def status(self):
        return self.data.get("status")

    @property
    def finished(self):
        return self.status in (None, "finished")

    @property
    def profile(self):
        return str(self.data.get("profile") or self.data.get("config") or "")

    @property
    def trained_patches(self):
        """[(name, sha256)] of the MindFormers patches applied in training, or None when not recorded."""
        rec = self.data.get("patches")
        listed = rec.get("patches") if isinstance(rec, dict) else None
        if not listed:
            return None
        return [(t.get("name"), t.get("sha256")) for t in listed if isinstance(t, dict)]

    @property
    def data_section(self):
        data = self.data.get("data")
        return data if isinstance(data, dict) else {}

    @property
    def data_files(self):
        """The training data files recorded, as a list of dicts (older records keep `data_files`)."""
        raw = self.data_section.get("files") or self.data.get("data_files") or []
        if isinstance(raw, dict):
            raw = [dict(v, path=k) if isinstance(v, dict) else {"path": k, "sha256": v} for k, v in raw.items()]
        return [f for f in raw if isinstance(f, dict)] if isinstance(raw, list) else []

    @property
    def versions(self):
        trained = self.data.get("versions") or self.data.get("environment")
        return trained if isinstance(trained, dict) else None


def tokenizer_mismatch(data_report, predict_record):
    """Why training data and predictions do not come from the same tokenizer file (sha256 in their records), or
    None when they do or either record does not say."""
    data_tok, pred_tok = data_report.tokenizer_sha256, predict_record.tokenizer_sha256
    if data_tok and pred_tok and data_tok != pred_tok:
        return ("training data tokenized with tokenizer sha256 %s..., predictions made with %s...: not the same "
                "tokenizer" % (data_tok[:12], pred_tok[:12]))
    return None


class LoraSpec:
    """One LoRA configuration, whatever file spells it: a yaml pet_config and adapter_config.json say lora_rank /
    lora_alpha / lora_dropout, a submission's manifest says rank / alpha / dropout. Values are kept as written
    (verify compares them as found in hostile files); the conversions to each spelling live here only."""

    FIELDS = ("pet_type", "rank", "alpha", "dropout", "target_modules")

    def __init__(self, rank, alpha, dropout=None, target_modules=None, pet_type="lora", exclude_layers=None):
        self.pet_type, self.rank, self.alpha, self.dropout = pet_type, rank, alpha, dropout
        self.target_modules, self.exclude_layers = target_modules, exclude_layers

    @classmethod
    def from_pet_config(cls, cfg):
        """A yaml pet_config or an adapter_config.json (both use MindFormers' key names)."""
        if not isinstance(cfg, dict):
            from .io import KitError

            raise KitError("LoRA config is not a mapping")
        return cls(cfg.get("lora_rank"), cfg.get("lora_alpha"), cfg.get("lora_dropout"), cfg.get("target_modules"),
                   str(cfg.get("pet_type", "lora")).lower(), cfg.get("exclude_layers"))

    @classmethod
    def from_manifest(cls, lora):
        return cls(lora.get("rank"), lora.get("alpha"), lora.get("dropout"), lora.get("target_modules"),
                   lora.get("pet_type", "lora"))

    def view(self):
        """The comparable fields (pet_type, rank, alpha, dropout, target_modules)."""
        return collections.OrderedDict((k, getattr(self, k)) for k in self.FIELDS)

    @property
    def scaling(self):
        return float(self.alpha) / self.rank

    def to_manifest(self):
        """The manifest's `lora` section."""
        return {"pet_type": "lora", "rank": int(self.rank), "alpha": self.alpha,
                "dropout": self.dropout if self.dropout is not None else 0.0, "target_modules": self.target_modules}

    def to_pet_config(self, base=None):
        """A pet_config: `base` (another pet_config's other keys, e.g. freeze rules) with this spec's LoRA keys."""
        pet = dict(base or {})
        pet.update({"pet_type": "lora", "lora_rank": self.rank, "lora_alpha": self.alpha,
                    "target_modules": self.target_modules})
        if self.dropout is not None:
            pet["lora_dropout"] = self.dropout
        return pet

    def adapter_fields(self):
        """adapter_config.json's LoRA keys, in its order."""
        return collections.OrderedDict([
            ("pet_type", "lora"), ("lora_rank", self.rank), ("lora_alpha", self.alpha), ("scaling", self.scaling),
            ("lora_dropout", self.dropout), ("target_modules", self.target_modules),
            ("exclude_layers", self.exclude_layers)])
