"""Rebuild the bundled sample data (``classify.csv`` and ``corpus.txt``) from Debian package metadata.

The input is one or more files in Debian's Packages format (RFC 822-style stanzas), such as the output
of ``apt-cache dumpavail``. Since Debian moved long descriptions out of the Packages indices, a stanza
there usually carries only the one-line synopsis plus ``Description-md5``; the long text lives in the
``Translation-en`` indices (stanzas of ``Package``, ``Description-md5`` and ``Description-en``). Both
kinds of stanza may be mixed in the input: long descriptions are joined in through ``Description-md5``.

Usage::

    python -m tools.rebuild_samples --packages dump.txt [--packages Translation-en] --out DIR
    python -m tools.rebuild_samples --from-apt --save-input dump.txt --out DIR

``--from-apt`` reads what the local APT knows (run ``apt-get -o Acquire::Languages=en update`` first so
that the Translation-en indices are on disk). Only the standard library is used, so the script runs
without the package's dependencies installed. The output depends only on the input bytes and the
options: rows are chosen and ordered by a seeded SHA-256 rank of the package name, never by dict or
set order (input order only decides which stanza wins when a package name appears twice).
A JSON summary (counts, sizes, SHA-256 of input and outputs) is printed on stdout.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
import re
import subprocess
import sys
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

SEED = "hfllm-samples-v1"

# Sections with clearly distinct topics and enough distinct source packages. Programming-language
# sections (python, perl, rust, golang, ...) are left out on purpose: their descriptions are formulaic
# ("This package contains the Rust foo crate") and would make the task trivial, while libs, misc,
# metapackages, utils and similar carry generic text that no classifier can separate.
CLASSES = ("database", "electronics", "games", "graphics", "hamradio", "mail", "math", "science", "sound")
MAX_PER_CLASS = 800
# Synopsis-only or near-empty descriptions carry no signal for either task.
MIN_WORDS = 12
# Descriptions whose long text opens with the same words are treated as one family (see family_key).
FAMILY_WORDS = 20
DEFAULT_CORPUS_BYTES = 2_000_000

APT_ENV = {"LC_ALL": "C.UTF-8", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
APT_HELPER = "/usr/lib/apt/apt-helper"

_DEBUG_SUFFIXES = ("-dbg", "-dbgsym")
_PLACEHOLDER = re.compile(r"\b(transitional|dummy)\b[^.]{0,40}\bpackage\b", re.IGNORECASE)
_WHITESPACE = re.compile(r"\s+")
# Bytes that are not UTF-8 decode to lone surrogates under errors="surrogateescape".
_UNDECODABLE = re.compile("[\udc80-\udcff]")


@dataclass(frozen=True)
class Package:
    """One binary package: its name, source package, section (archive area stripped) and description."""

    name: str
    source: str
    section: str
    synopsis: str
    body: str

    @property
    def text(self) -> str:
        """Return the whole description as one paragraph: synopsis, then the long description."""
        if not self.body:
            return self.synopsis
        joiner = " " if self.synopsis.endswith((".", "!", "?", ":", ";")) else ". "
        return self.synopsis + joiner + self.body

    @property
    def family_key(self) -> str:
        """Return a key shared by near-duplicate descriptions (same opening of the long description).

        Packages of one upstream project split into several sources (``0ad``/``0ad-data``, the
        ``gap-*`` and ``mopidy-*`` plugins) reuse one long description under different synopses;
        keeping one of them stops a train/test split from seeing the same paragraph twice.
        """
        words = self.body.lower().split()
        if len(words) < FAMILY_WORDS:
            return self.text.lower()
        return " ".join(words[:FAMILY_WORDS])


def iter_stanzas(text: str) -> Iterator[dict[str, str]]:
    """Yield each stanza as a dict of lower-cased field name -> raw value (continuations kept)."""
    fields: dict[str, str] = {}
    last: str | None = None
    for line in text.splitlines():
        if not line.strip():
            if fields:
                yield fields
            fields, last = {}, None
        elif line[0] in " \t":
            # Continuation line: keep it verbatim (with its leading space) for the field's parser.
            if last is not None:
                fields[last] += "\n" + line
        elif ":" in line:
            name, _, value = line.partition(":")
            last = name.strip().lower()
            fields[last] = value.strip()
    if fields:
        yield fields


def split_description(raw: str) -> tuple[str, str]:
    """Return (synopsis, long description) of a raw Description field, each as one line of text.

    Continuation lines lose their one leading space, " ." lines (paragraph breaks) become spaces and
    lines holding unexpanded ``${...}`` substitution variables are dropped; a synopsis holding one
    makes the whole description unusable, returned as ("", "").
    """
    synopsis, *body = raw.split("\n")
    if "${" in synopsis:
        return "", ""
    kept = []
    for line in body:
        line = line[1:] if line[:1] in (" ", "\t") else line
        if line.strip() == "." or "${" in line:
            continue
        kept.append(line)
    return collapse(synopsis), collapse(" ".join(kept))


def collapse(text: str) -> str:
    """Return text with every run of whitespace turned into one space and the ends stripped."""
    return _WHITESPACE.sub(" ", text).strip()


def has_long_description(raw: str) -> bool:
    """Return True when a raw Description value has body lines after its synopsis."""
    return "\n" in raw


def source_name(fields: dict[str, str]) -> str:
    """Return the source package name (the ``Source`` field without a version, else ``Package``)."""
    source = fields.get("source", "").split("(")[0].strip()
    return source or fields["package"]


def plain_section(section: str) -> str:
    """Return the section without its archive area prefix (``contrib/`` or ``non-free/``)."""
    return section.rsplit("/", 1)[-1] if section else "unknown"


def parse_packages(text: str) -> tuple[list[Package], dict[str, int]]:
    """Return the binary packages in a Packages-format dump and counts of what was read.

    Stanzas carrying ``Description-en`` but no ``Version`` are Translation-en records; they supply
    the long description of any package whose own Description is only a synopsis. When a package
    name appears twice (several archives), the first stanza wins, i.e. the order of the input.
    """
    binaries: list[dict[str, str]] = []
    translations: dict[str, str] = {}
    stanzas = 0
    for fields in iter_stanzas(text):
        stanzas += 1
        if "package" not in fields:
            continue
        if "version" not in fields and "description-en" in fields and "description-md5" in fields:
            translations.setdefault(fields["description-md5"], fields["description-en"])
        elif "version" in fields:
            binaries.append(fields)

    packages: list[Package] = []
    seen: set[str] = set()
    merged = 0
    for fields in binaries:
        name = fields["package"]
        if name in seen:
            continue
        seen.add(name)
        raw = fields.get("description") or fields.get("description-en", "")
        if not has_long_description(raw) and fields.get("description-md5") in translations:
            raw = translations[fields["description-md5"]]
            merged += 1
        synopsis, body = split_description(raw)
        if _UNDECODABLE.search(synopsis + body):  # Not valid UTF-8: skip rather than guess.
            synopsis, body = "", ""
        section = plain_section(fields.get("section", ""))
        packages.append(Package(name, source_name(fields), section, synopsis, body))
    counts = {
        "stanzas": stanzas,
        "packages": len(packages),
        "translations": len(translations),
        "long_descriptions_merged": merged,
    }
    return packages, counts


def drop_reason(pkg: Package) -> str | None:
    """Return why a package's description is not kept at all, or None when it is usable."""
    if pkg.name.endswith(_DEBUG_SUFFIXES):
        return "debug symbols"  # Their text is boilerplate about symbols, not about the program.
    if pkg.name.endswith("-doc"):
        return "documentation package"  # Echoes its parent's description.
    if _PLACEHOLDER.search(pkg.text):
        return "transitional or dummy"  # Upgrade stubs say nothing about a topic.
    if len(pkg.text.split()) < MIN_WORDS:
        return f"under {MIN_WORDS} words"
    return None


def is_usable(pkg: Package) -> bool:
    """Return True for packages whose description is real, specific prose worth keeping."""
    return drop_reason(pkg) is None


def drop_counts(packages: Iterable[Package]) -> dict[str, int]:
    """Return how many packages each drop reason removed, plus how many were kept (sorted keys)."""
    counts: dict[str, int] = {}
    for pkg in packages:
        reason = drop_reason(pkg) or "usable"
        counts[reason] = counts.get(reason, 0) + 1
    return dict(sorted(counts.items()))


def rank(seed: str, purpose: str, key: str) -> str:
    """Return a stable pseudo-random sort key for ``key`` (seeded, independent of input order)."""
    return hashlib.sha256(f"{seed}\0{purpose}\0{key}".encode()).hexdigest()


def one_per_source(packages: Iterable[Package]) -> list[Package]:
    """Return one representative binary per source package, sorted by source name.

    The binary named like its source wins, else the shortest name (then alphabetical): that is
    usually the main program, whose description is the least derivative.
    """
    best: dict[str, Package] = {}
    for pkg in packages:
        current = best.get(pkg.source)
        if current is None or _preference(pkg) < _preference(current):
            best[pkg.source] = pkg
    return [best[source] for source in sorted(best)]


def _preference(pkg: Package) -> tuple[bool, int, str]:
    """Return the sort key used to choose a source's representative (smaller is better)."""
    return (pkg.name != pkg.source, len(pkg.name), pkg.name)


def unique_texts(
    packages: Iterable[Package], seed: str, purpose: str, exclude: Iterable[str] = ()
) -> list[Package]:
    """Return packages in seeded rank order, keeping the first of each text and of each family.

    Texts or family keys listed in ``exclude`` are dropped altogether.
    """
    ordered = sorted(packages, key=lambda p: rank(seed, purpose, p.name))
    seen: set[str] = set(exclude)
    kept = []
    for pkg in ordered:
        if pkg.text not in seen and pkg.family_key not in seen:
            seen.update((pkg.text, pkg.family_key))
            kept.append(pkg)
    return kept


def select_classify(
    packages: Sequence[Package], classes: Sequence[str], max_per_class: int, seed: str
) -> list[Package]:
    """Return the classification rows: one per source and per family, capped per class, shuffled."""
    wanted = set(classes)
    candidates = [p for p in packages if p.section in wanted and is_usable(p)]
    ranked = unique_texts(one_per_source(candidates), seed, "classify")
    per_class: dict[str, int] = {}
    chosen = []
    for pkg in ranked:  # Rank order, so the cap keeps a seeded random subset of each class.
        if per_class.get(pkg.section, 0) < max_per_class:
            per_class[pkg.section] = per_class.get(pkg.section, 0) + 1
            chosen.append(pkg)
    # Interleave the classes with a second, independent seeded order.
    return sorted(chosen, key=lambda p: rank(seed, "order", p.name))


def select_corpus(
    packages: Sequence[Package], used: Sequence[Package], max_bytes: int, seed: str
) -> list[str]:
    """Return corpus documents (one text each) totalling at most ``max_bytes`` with newlines.

    Every binary of a source package used for classification is excluded, not just the chosen one,
    and so is any text of the same family (see ``Package.family_key``): sibling binaries share most
    of their description, which would leak classification text into pretraining.
    """
    used_sources = {p.source for p in used}
    used_keys = sorted({p.text for p in used} | {p.family_key for p in used})
    candidates = [p for p in packages if p.source not in used_sources and is_usable(p)]
    documents = []
    total = 0
    for pkg in unique_texts(one_per_source(candidates), seed, "corpus", exclude=used_keys):
        size = len(pkg.text.encode("utf-8")) + 1
        if total + size > max_bytes:
            break
        documents.append(pkg.text)
        total += size
    return documents


def classify_csv(rows: Sequence[Package]) -> bytes:
    """Return the UTF-8 bytes of classify.csv (header ``text,label``, ``\\n`` line ends)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["text", "label"])
    for pkg in rows:
        writer.writerow([pkg.text, pkg.section])
    return buffer.getvalue().encode("utf-8")


def corpus_txt(documents: Sequence[str]) -> bytes:
    """Return the UTF-8 bytes of corpus.txt: one document per line."""
    return "".join(doc + "\n" for doc in documents).encode("utf-8")


def file_info(data: bytes) -> dict[str, object]:
    """Return the size and SHA-256 of some bytes, for the summary."""
    return {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def read_from_apt() -> list[tuple[str, bytes]]:
    """Return (name, bytes) of ``apt-cache dumpavail`` and of each local Translation-en index."""
    parts = [("apt-cache dumpavail", _run(["apt-cache", "dumpavail"]))]
    listing = _run(
        [
            "apt-get",
            "-o",
            "Acquire::Languages=en",
            "indextargets",
            "--format",
            "$(FILENAME)",
            "Created-By: Translations",
            "Language: en",
        ]
    )
    paths = sorted(p for p in listing.decode().split() if Path(p).exists())
    if not paths:
        raise SystemExit(
            "no Translation-en indices on disk (descriptions would be synopses only); "
            "run `apt-get -o Acquire::Languages=en update` first"
        )
    # apt-helper decompresses whatever format APT kept the index in (lz4, zstd, gz, ...).
    parts += [(Path(p).name, _run([APT_HELPER, "cat-file", p])) for p in paths]
    return parts


def _run(command: list[str]) -> bytes:
    """Return the stdout of an APT command, failing loudly if it fails."""
    return subprocess.run(command, check=True, capture_output=True, env=APT_ENV).stdout


def join_inputs(parts: Sequence[tuple[str, bytes]]) -> bytes:
    """Return several dumps as one, with a blank line between them so no two stanzas merge."""
    return b"\n".join(data for _, data in parts)


def build(
    parts: Sequence[tuple[str, bytes]],
    out: Path,
    corpus_bytes: int = DEFAULT_CORPUS_BYTES,
    classes: Sequence[str] = CLASSES,
    max_per_class: int = MAX_PER_CLASS,
    seed: str = SEED,
) -> dict[str, object]:
    """Return the summary after writing classify.csv and corpus.txt for the input ``parts`` into ``out``.

    ``parts`` are (name, bytes) of the dumps read, in order; they are parsed as one joined dump.
    """
    data = join_inputs(parts)
    packages, counts = parse_packages(data.decode("utf-8", errors="surrogateescape"))
    rows = select_classify(packages, classes, max_per_class, seed)
    documents = select_corpus(packages, rows, corpus_bytes, seed)
    csv_bytes, corpus_bytes_out = classify_csv(rows), corpus_txt(documents)
    out.mkdir(parents=True, exist_ok=True)
    (out / "classify.csv").write_bytes(csv_bytes)
    (out / "corpus.txt").write_bytes(corpus_bytes_out)
    per_class: dict[str, int] = {}
    for pkg in rows:
        per_class[pkg.section] = per_class.get(pkg.section, 0) + 1
    return {
        "input": {**file_info(data), "parts": [{"name": name, **file_info(part)} for name, part in parts]},
        "parsed": counts,
        "filtered": drop_counts(packages),
        "seed": seed,
        "classify.csv": {
            **file_info(csv_bytes),
            "rows": len(rows),
            "classes": dict(sorted(per_class.items())),
        },
        "corpus.txt": {
            **file_info(corpus_bytes_out),
            "documents": len(documents),
            "target_bytes": corpus_bytes,
        },
    }


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Return the parsed command line."""
    parser = argparse.ArgumentParser(
        prog="python -m tools.rebuild_samples", description=__doc__.split("\n")[0]
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--packages",
        type=Path,
        action="append",
        metavar="FILE",
        help="Packages-format dump (repeatable, e.g. dumpavail output then Translation-en)",
    )
    source.add_argument(
        "--from-apt",
        action="store_true",
        help="read `apt-cache dumpavail` and the local Translation-en indices",
    )
    parser.add_argument("--out", type=Path, required=True, help="directory for classify.csv and corpus.txt")
    parser.add_argument(
        "--corpus-bytes",
        type=int,
        default=DEFAULT_CORPUS_BYTES,
        metavar="N",
        help=f"upper bound on corpus.txt size (default {DEFAULT_CORPUS_BYTES})",
    )
    parser.add_argument("--max-per-class", type=int, default=MAX_PER_CLASS, metavar="N")
    parser.add_argument("--seed", default=SEED)
    parser.add_argument(
        "--save-input",
        type=Path,
        metavar="FILE",
        help="also write the exact input dump used (for --from-apt: to rebuild later)",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Return the exit status after rebuilding the samples and printing the JSON summary."""
    args = parse_args(argv)
    parts = read_from_apt() if args.from_apt else [(p.name, p.read_bytes()) for p in args.packages]
    if args.save_input:
        args.save_input.write_bytes(join_inputs(parts))
    summary = build(parts, args.out, args.corpus_bytes, CLASSES, args.max_per_class, args.seed)
    json.dump(summary, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
