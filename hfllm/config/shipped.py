"""The ready configs shipped inside the package (hfllm/configs/, the repo's configs/): list, find, copy.

Each one starts with a comment line that shows the command that runs it, then says what it does.
Paths inside a config are read from the working directory, so `copy` rewrites the ones that point
at files shipped with hfllm (the bundled samples, the DeepSpeed JSON) to where they really are.
"""

from __future__ import annotations

import difflib
import os
import re
from dataclasses import dataclass
from pathlib import Path

from hfllm.errors import ConfigError
from hfllm.fsutil import atomic_write_text

CONFIGS_DIR = Path(__file__).resolve().parent.parent / "configs"
# How the configs spell the package's own files: relative to the repository root.
SAMPLES_PREFIX = "hfllm/samples/"
COMPANION = re.compile(r"configs/(deepspeed/[\w.-]+\.json)")


@dataclass(frozen=True)
class Recipe:
    """One shipped config: its name (`pretrain/tiny`), file, and the first sentence of what it does."""

    name: str
    path: Path
    summary: str


def recipes() -> list[Recipe]:
    """Return every shipped config, sorted by name."""
    found = []
    for path in sorted(CONFIGS_DIR.glob("*/*.yaml")):
        name = f"{path.parent.name}/{path.stem}"
        found.append(Recipe(name, path, _summary(path.read_text(encoding="utf-8"))))
    return found


def _summary(text: str, width: int = 100) -> str:
    """Return the first sentence of the comment block under the command line, cut to `width` characters."""
    words = []
    for line in text.splitlines()[1:]:
        if not line.startswith("#"):
            break
        words.append(line.lstrip("# ").strip())
    prose = " ".join(w for w in words if w)
    end = re.search(r"(?<!e\.g)(?<!i\.e)\.(\s|$)", prose)
    sentence = prose[: end.start() + 1] if end else prose
    if len(sentence) <= width:
        return sentence
    return sentence[: width - 3].rsplit(" ", 1)[0].rstrip(",;:(") + "..."


def find(name: str) -> Recipe:
    """Return the shipped config called `name` (`pretrain/tiny`, with or without `.yaml`)."""
    wanted = name.removesuffix(".yaml").removeprefix("configs/")
    known = recipes()
    for recipe in known:
        if recipe.name == wanted:
            return recipe
    names = [r.name for r in known]
    close = difflib.get_close_matches(wanted, names, n=1, cutoff=0.6)
    hint = f"did you mean `{close[0]}`?" if close else "`hfllm recipes` lists them"
    raise ConfigError(f"no shipped config called {name!r}", hint)


def default_destination(recipe: Recipe) -> Path:
    """Return the file name `copy` writes when no destination is given: `pretrain-tiny.yaml`."""
    return Path(recipe.name.replace("/", "-") + ".yaml")


def copy(name: str, dest: str | None = None, force: bool = False) -> list[Path]:
    """Write the shipped config `name` to `dest` (and the files it names beside it); return what was written.

    `dest` is a file, or a dir (existing, or written with a trailing /). The copy runs from the working
    directory: the command line in its first comment names `dest`, sample files point into the
    installed package, and a DeepSpeed JSON is copied next to it.
    """
    recipe = find(name)
    if dest is None:
        dest = default_destination(recipe)
    elif dest.endswith(("/", os.sep)) or Path(dest).is_dir():
        dest = Path(dest) / default_destination(recipe)
    else:
        dest = Path(dest)
    text = recipe.path.read_text(encoding="utf-8")
    lines = text.splitlines(keepends=True)
    lines[0] = lines[0].replace(f"configs/{recipe.name}.yaml", str(dest))
    text = "".join(lines).replace(SAMPLES_PREFIX, str(CONFIGS_DIR.parent / "samples") + os.sep)
    companions = {}
    for match in COMPANION.finditer(text):
        target = dest.parent / Path(match.group(1)).name
        companions[target] = (CONFIGS_DIR / match.group(1)).read_text(encoding="utf-8")
        text = text.replace(match.group(0), str(target))
    if dest.exists() and not force:
        raise ConfigError(
            f"{dest} already exists", "pass --force to overwrite it, or give another destination"
        )
    for path, content in companions.items():  # shared by several recipes: the same file is kept
        if path.exists() and path.read_text(encoding="utf-8") != content and not force:
            raise ConfigError(
                f"{path} already exists and differs from hfllm's", "pass --force to overwrite it"
            )
    written = [dest, *companions]
    for path, content in {dest: text, **companions}.items():
        atomic_write_text(path, content)
    return written
