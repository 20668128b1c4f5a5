"""The records tools hand each other, once: ids of input rows and (below) the typed records of a run."""


def record_id(row, ordinal):
    """A record's id: its own `id` field, else its 1-based ordinal in the file (the rule predict.py uses)."""
    rid = row.get("id")
    if rid is None or rid == "":
        return str(ordinal)
    return str(rid)
