"""Entity tag schemes (IOB2, IOBES, ...): which one a tag set uses, and the entities of a tag sequence.

Entities are read by the `seqeval` package in strict mode, so evaluation, training metrics and
predict's spans agree on what an entity is: in IOB2 an entity starts at B-X and runs through I-X
(a stray I-X starts nothing); in IOBES it is S-X alone or B-X, I-X..., E-X.
"""

from __future__ import annotations

from collections.abc import Iterable

# Tag scheme -> the prefixes it uses (besides O).
SCHEMES = {"IOB2": "BI", "IOB1": "BI", "IOBES": "BIES", "BILOU": "BILU"}


def tag_scheme(tags: Iterable[str]) -> str:
    """Return the scheme of a tag set: IOBES when it has E-/S- tags, BILOU for L-/U-, IOB1 when it has
    I- but no B- tags, else IOB2. Raise ValueError for a tag that is neither `O` nor PREFIX-TYPE."""
    prefixes, bad = set(), []
    for tag in sorted(set(map(str, tags))):
        if tag == "O":
            continue
        prefix, sep, kind = tag.partition("-")
        if not sep or not kind or prefix not in ("B", "I", "E", "S", "L", "U"):
            bad.append(tag)
        else:
            prefixes.add(prefix)
    if bad:
        raise ValueError(
            f"tag(s) {', '.join(map(repr, bad[:5]))} are not `O` or PREFIX-TYPE with a prefix B, I, E or S "
            "(IOB2 or IOBES tags such as B-PER, I-PER, E-PER, S-PER)"
        )
    if prefixes & {"L", "U"}:
        if prefixes & {"E", "S"}:
            raise ValueError("the tags mix IOBES (E-, S-) and BILOU (L-, U-) prefixes")
        return "BILOU"
    if prefixes & {"E", "S"}:
        return "IOBES"
    return "IOB1" if prefixes == {"I"} else "IOB2"


def seqeval_scheme(scheme: str):
    """Return seqeval's class for a scheme name."""
    from seqeval import scheme as schemes

    return getattr(schemes, scheme)


def entities(tags: list[str], scheme: str) -> list[tuple[str, int, int]]:
    """Return the entities of one tag sequence as (type, start, end), `end` exclusive, read strictly."""
    from seqeval.scheme import Entities

    found = Entities([list(tags)], seqeval_scheme(scheme)).entities[0]
    return [(e.tag, e.start, e.end) for e in found]


def subtoken_tags(tag: str, pieces: int, known: set[str]) -> list[str | None]:
    """Return the tags of a word's `pieces` sub-tokens when every sub-token is labelled (label_all_tokens).

    The word stays one entity: B-X -> B-X I-X...; S-X -> B-X I-X... E-X; E-X -> I-X... E-X; I-X and O
    are repeated. A tag the label set lacks (e.g. no I-X) is None: that sub-token is left unlabelled.
    """
    if pieces == 1:
        return [tag]
    prefix, _, kind = tag.partition("-")
    inside = f"I-{kind}"
    if prefix == "B":
        out = [tag] + [inside] * (pieces - 1)
    elif prefix == "S":
        out = [f"B-{kind}"] + [inside] * (pieces - 2) + [f"E-{kind}"]
    elif prefix == "E":
        out = [inside] * (pieces - 1) + [tag]
    elif prefix == "U":
        out = [f"B-{kind}"] + [inside] * (pieces - 2) + [f"L-{kind}"]
    elif prefix == "L":
        out = [inside] * (pieces - 1) + [tag]
    else:
        out = [tag] * pieces
    return [t if t in known else None for t in out]
