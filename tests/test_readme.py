"""The README's command synopsis lists every option of every command, and nothing that is not one."""

from __future__ import annotations

import re
from pathlib import Path

from hfllm.cli import GLOBAL_FLAGS, command

README = Path(__file__).resolve().parent.parent / "README.md"
NOT_LISTED = {"--help", *GLOBAL_FLAGS}  # said once in prose under the synopsis


def _synopsis() -> list[str]:
    """Return the synopsis lines (continuation lines joined) of the README's `## The commands`."""
    text = README.read_text(encoding="utf-8")
    block = text.split("## The commands", 1)[1].split("```", 2)[1]
    lines: list[str] = []
    for raw in block.splitlines()[1:]:
        line = raw.split("#", 1)[0].rstrip()
        if not line:
            continue
        if line.startswith(" ") and lines:
            lines[-1] += " " + line.strip()
        else:
            lines.append(line)
    return lines


def _commands(cmd, path=("hfllm",)):
    """Yield (command path, its long options) for the root and every command below it."""
    options = {o for p in cmd.params for o in getattr(p, "opts", ()) if o.startswith("--")} - NOT_LISTED
    yield path, options
    for name, sub in getattr(cmd, "commands", {}).items():
        yield from _commands(sub, (*path, name))


def _path_of(line: str, paths: set[tuple[str, ...]]) -> tuple[str, ...]:
    words = line.split()
    for n in range(len(words), 0, -1):
        if tuple(words[:n]) in paths:
            return tuple(words[:n])
    raise AssertionError(f"README synopsis line names no command: {line!r}")


def test_readme_synopsis_lists_every_option_of_every_command():
    commands = dict(_commands(command()))
    listed: dict[tuple[str, ...], set[str]] = {}
    for line in _synopsis():
        path = _path_of(line, set(commands))
        listed.setdefault(path, set()).update(re.findall(r"(?<![\w-])--[a-z][a-z-]*", line))
    groups = {p for p in commands if any(q[: len(p)] == p and q != p for q in commands)}
    for path, options in commands.items():
        if path in groups and not options and path not in listed:
            continue  # a group such as `hfllm config` is shown through its commands
        assert path in listed, f"README synopsis lacks `{' '.join(path)}`"
        assert listed[path] == options, (
            f"`{' '.join(path)}`: README lists {sorted(listed[path] - options)} that it does not take, "
            f"misses {sorted(options - listed[path])}"
        )
