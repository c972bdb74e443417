"""Tests for the bundled sample data and for the script that rebuilds it (tools/rebuild_samples.py)."""

from __future__ import annotations

import csv
import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from hfllm.samples import classify_path, corpus_path, samples_dir
from tools import rebuild_samples as rebuild

REPO = Path(__file__).resolve().parents[1]


def read_rows(path: Path) -> list[dict[str, str]]:
    """Return the rows of a classify.csv as dicts."""
    with path.open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


# --- the bundled files ---------------------------------------------------------------------------


def test_bundled_files_exist():
    assert samples_dir().is_dir()
    for path in (classify_path(), corpus_path(), samples_dir() / "SOURCES.md"):
        assert path.is_file(), path


def test_classify_csv_is_a_usable_classification_set():
    rows = read_rows(classify_path())
    assert rows and list(rows[0]) == ["text", "label"]
    assert len(rows) >= 2000
    assert len({row["label"] for row in rows}) >= 5
    texts = [row["text"] for row in rows]
    assert all(text.strip() for text in texts)
    assert all(row["label"].strip() for row in rows)
    assert len(set(texts)) == len(texts), "duplicate texts would leak between train and test"
    assert not any("\n" in text for text in texts)


def test_corpus_is_1_to_3_mb_of_utf8_lines():
    data = corpus_path().read_bytes()
    assert 1_000_000 <= len(data) <= 3_000_000
    lines = data.decode("utf-8").splitlines()  # Raises if the file is not UTF-8.
    assert len(lines) > 1000
    assert all(line.strip() for line in lines)
    assert len(set(lines)) == len(lines)


def test_corpus_and_classify_do_not_share_texts():
    texts = {row["text"] for row in read_rows(classify_path())}
    lines = set(corpus_path().read_text(encoding="utf-8").splitlines())
    assert not texts & lines


def test_sources_md_records_the_bundled_checksums():
    sources = (samples_dir() / "SOURCES.md").read_text(encoding="utf-8")
    for path in (classify_path(), corpus_path()):
        assert hashlib.sha256(path.read_bytes()).hexdigest() in sources, path.name


# --- rebuild.py on a hand-written fixture --------------------------------------------------------

# Packages-format stanzas in the shape `apt-cache dumpavail` prints (synopsis + Description-md5),
# followed by Translation-en stanzas holding the long descriptions, plus stanzas that already carry
# a long Description (as contrib/non-free indices and older dumps do).
FIXTURE = """\
Package: starmap
Version: 1.0-1
Architecture: amd64
Section: science
Description: plot the night sky for any date and place
Description-md5: 00000000000000000000000000000001

Package: starmap-data
Source: starmap (1.0-1)
Version: 1.0-1
Architecture: all
Section: science
Description: star catalogues for starmap
 Starmap draws the constellations, planets and deep sky objects visible
 from any place on Earth.
 .
 This package holds the star catalogues used by starmap.

Package: starmap-dbg
Source: starmap
Version: 1.0-1
Architecture: amd64
Section: debug
Description: debugging symbols for starmap
 This package contains the debugging symbols for starmap, the night sky
 plotting program used by amateur astronomers.

Package: tilebreaker
Version: 2.3-4
Architecture: amd64
Section: contrib/games
Description: break coloured tiles with a bouncing ball
 Tilebreaker is an arcade game in which a paddle keeps a ball in play
 while it breaks walls of coloured tiles.
 .
 Features:
  * forty levels
  * power-ups and a level editor
 ${Newer:Built-Using}
Homepage: https://example.org/tilebreaker

Package: tilebreaker-old
Version: 2.3-4
Architecture: all
Section: oldlibs
Description: transitional package for tilebreaker
 This is a transitional dummy package which can be safely removed once the
 upgrade to tilebreaker has finished.

Package: waveshaper
Version: 0.9-1
Architecture: amd64
Section: non-free/sound
Description: modular audio synthesizer with a patch editor
 Waveshaper is a modular software synthesizer: oscillators, filters and
 envelopes are wired together in a graphical patch editor and played from a
 MIDI keyboard.

Package: pixelpen
Version: 3.1-2
Architecture: amd64
Section: graphics
Description: raster image editor for pixel art
 Pixelpen edits small raster images one pixel at a time, with layers,
 palettes and animation frames, and exports PNG and GIF files.

Package: pixelpen-copy
Version: 3.1-2
Architecture: amd64
Section: graphics
Description: raster image editor for pixel art
 Pixelpen edits small raster images one pixel at a time, with layers,
 palettes and animation frames, and exports PNG and GIF files.

Package: quickmail
Version: 5.0-1
Architecture: amd64
Section: mail
Description: text-mode mail user agent with threading
 Quickmail reads and sends electronic mail from the terminal, shows
 conversations as threads and speaks IMAP, POP3 and SMTP.

Package: tidyshell
Version: 1.2-1
Architecture: amd64
Section: utils
Description: collection of small shell utilities
 Tidyshell bundles small command line helpers that rename files, trim
 whitespace and report disk usage in a human friendly way.

Package: starmap
Description-md5: 00000000000000000000000000000001
Description-en: plot the night sky for any date and place
 Starmap draws the constellations, planets and deep sky objects visible
 from any place on Earth at any date, and prints charts for observers.
 .
 It reads standard star catalogues.
"""


@pytest.fixture()
def fixture_dump(tmp_path: Path) -> Path:
    path = tmp_path / "Packages"
    path.write_text(FIXTURE, encoding="utf-8")
    return path


def run_rebuild(dump: Path, out: Path, capsys: pytest.CaptureFixture[str]) -> dict:
    """Return the JSON summary after running rebuild.main on ``dump`` into ``out``."""
    assert rebuild.main(["--packages", str(dump), "--out", str(out), "--corpus-bytes", "100000"]) == 0
    return json.loads(capsys.readouterr().out)


def test_rebuild_is_deterministic(fixture_dump, tmp_path, capsys):
    first = run_rebuild(fixture_dump, tmp_path / "a", capsys)
    second = run_rebuild(fixture_dump, tmp_path / "b", capsys)
    for name in ("classify.csv", "corpus.txt"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    assert first == second
    assert first["input"]["sha256"] == hashlib.sha256(fixture_dump.read_bytes()).hexdigest()


def test_rebuild_parses_descriptions_and_keeps_one_package_per_source(fixture_dump, tmp_path, capsys):
    summary = run_rebuild(fixture_dump, tmp_path, capsys)
    rows = read_rows(tmp_path / "classify.csv")
    by_label = {row["label"]: row["text"] for row in rows}

    # contrib/ and non-free/ prefixes are stripped; utils is not one of the chosen classes.
    assert sorted(by_label) == ["games", "graphics", "mail", "science", "sound"]
    assert summary["classify.csv"]["classes"] == dict.fromkeys(sorted(by_label), 1)

    # One binary per source: starmap (named like its source) wins over starmap-data; its long
    # description comes from the Translation-en stanza, joined into one paragraph.
    assert by_label["science"] == (
        "plot the night sky for any date and place. Starmap draws the constellations, planets and "
        "deep sky objects visible from any place on Earth at any date, and prints charts for "
        "observers. It reads standard star catalogues."
    )
    # " ." paragraph breaks vanish, indented list lines keep their text, ${...} lines are dropped.
    assert by_label["games"] == (
        "break coloured tiles with a bouncing ball. Tilebreaker is an arcade game in which a paddle "
        "keeps a ball in play while it breaks walls of coloured tiles. Features: * forty levels "
        "* power-ups and a level editor"
    )
    # Exact duplicates are kept once; transitional and debug packages never appear.
    texts = [row["text"] for row in rows]
    assert len(texts) == len(set(texts))
    corpus = (tmp_path / "corpus.txt").read_text(encoding="utf-8").splitlines()
    everything = " ".join(texts + corpus)
    assert "transitional" not in everything and "debugging symbols" not in everything

    # The corpus takes packages outside classify.csv, but never a sibling of a classified source.
    assert corpus == [
        "collection of small shell utilities. Tidyshell bundles small command line helpers that "
        "rename files, trim whitespace and report disk usage in a human friendly way."
    ]


def test_rebuild_respects_corpus_bytes(fixture_dump, tmp_path, capsys):
    assert (
        rebuild.main(["--packages", str(fixture_dump), "--out", str(tmp_path), "--corpus-bytes", "10"]) == 0
    )
    summary = json.loads(capsys.readouterr().out)
    assert summary["corpus.txt"]["bytes"] == 0
    assert (tmp_path / "corpus.txt").read_bytes() == b""


def test_split_description_handles_continuations():
    raw = "synopsis here\n first line\n .\n  indented line\n ${source:Synopsis}\n last"
    assert rebuild.split_description(raw) == ("synopsis here", "first line indented line last")
    assert rebuild.split_description("${misc:Pkg} tools\n body") == ("", "")


def test_rebuild_runs_as_a_module(fixture_dump, tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "tools.rebuild_samples",
            "--packages",
            str(fixture_dump),
            "--out",
            str(tmp_path),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(result.stdout)["classify.csv"]["rows"] == 5


def test_rebuild_drops_descriptions_that_are_not_utf8(tmp_path, capsys):
    broken = FIXTURE.encode("utf-8").replace(b"Quickmail reads", b"Quickmail \xff reads")
    dump = tmp_path / "Packages"
    dump.write_bytes(broken)
    summary = run_rebuild(dump, tmp_path / "out", capsys)
    assert "mail" not in summary["classify.csv"]["classes"]
    assert summary["input"]["sha256"] == hashlib.sha256(broken).hexdigest()
