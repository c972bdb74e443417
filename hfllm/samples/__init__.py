"""Bundled sample data: a small English corpus and a labelled text-classification set.

Both files are built from Debian package descriptions by ``tools/rebuild_samples.py (in the repository, not the package)``; see
``SOURCES.md`` next to them for their origin, licence and checksums.
"""

from __future__ import annotations

from pathlib import Path


def samples_dir() -> Path:
    """Return the directory that holds the bundled sample files."""
    # Package data is installed next to this module (setuptools package-data), also in wheels.
    return Path(__file__).resolve().parent


def corpus_path() -> Path:
    """Return the path of ``corpus.txt`` (one English document per line, for masked-LM pretraining)."""
    return samples_dir() / "corpus.txt"


def classify_path() -> Path:
    """Return the path of ``classify.csv`` (columns ``text,label``, for sequence classification)."""
    return samples_dir() / "classify.csv"


__all__ = ["classify_path", "corpus_path", "samples_dir"]
