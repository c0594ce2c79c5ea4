"""A reader for platform/Dockerfile and .dockerignore, so tests run what the image runs.

Only the Dockerfile syntax this project uses is understood: line continuations, comments, parser
directives, `KEY=value` lists in ENV/ARG/LABEL, JSON-form CMD and ENTRYPOINT. Anything else is
kept as raw text.
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "platform" / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"


@dataclass(frozen=True)
class Instruction:
    keyword: str  # upper case: FROM, RUN, ENV, ...
    arguments: str  # the rest of the instruction, continuations joined
    line: int  # where it starts in the file, 1-based


@dataclass
class Stage:
    base: str
    name: str
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [instruction for instruction in self.instructions if instruction.keyword == keyword]

    def args(self) -> dict[str, str]:
        """ARG names with their defaults (an ARG without one defaults to the empty string)."""
        values = {}
        for instruction in self.all("ARG"):
            name, _, default = instruction.arguments.partition("=")
            values[name.strip()] = _unquote(default)
        return values

    def env(self, before: Instruction | None = None) -> dict[str, str]:
        """The ENV this stage sets (up to an instruction, if given), `${ARG}` and `$VAR` resolved
        against ARG defaults and earlier ENV."""
        known = dict(self.args())
        values: dict[str, str] = {}
        for instruction in self.all("ENV"):
            if before is not None and instruction.line > before.line:
                break
            for key, value in key_value_pairs(instruction.arguments).items():
                resolved = _substitute(value, {**known, **values})
                values[key] = resolved
        return values

    def labels(self) -> dict[str, str]:
        labels: dict[str, str] = {}
        for instruction in self.all("LABEL"):
            labels.update(key_value_pairs(instruction.arguments))
        return labels

    def exec_form(self, keyword: str) -> list[str] | None:
        """The JSON (exec) form of CMD or ENTRYPOINT, the last one winning; None if absent."""
        found = self.all(keyword)
        if not found:
            return None
        return json.loads(found[-1].arguments)

    def copy_local_files(self, destination_root: Path, context: Path = REPO) -> list[Path]:
        """Carry out this stage's COPY instructions from the build context (not `--from` another
        stage) into destination_root, which stands for the WORKDIR; return the files written."""
        rules = ignore_rules()
        written = []
        for copy in self.all("COPY"):
            if copy.arguments.startswith("--"):
                continue
            *sources, destination = copy.arguments.split()
            for source in sources:
                origin = context / source
                files = [origin] if origin.is_file() else sorted(p for p in origin.rglob("*") if p.is_file())
                for file in files:
                    relative = file.relative_to(context).as_posix()
                    if not in_build_context(relative, rules):
                        continue
                    if origin.is_dir():
                        target = destination_root / destination / file.relative_to(origin)
                    elif destination.endswith("/"):
                        target = destination_root / destination / origin.name
                    else:
                        target = destination_root / destination
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.write_bytes(file.read_bytes())
                    written.append(target)
        return written


def instructions(text: str) -> list[Instruction]:
    result = []
    pending: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if pending and stripped.startswith("#"):
            continue  # comment lines inside a continued instruction are dropped by the builder
        if not pending:
            start = number
        if stripped.endswith("\\"):
            pending.append(stripped[:-1].strip())
            continue
        pending.append(stripped)
        keyword, _, arguments = " ".join(part for part in pending if part).partition(" ")
        result.append(Instruction(keyword.upper(), arguments.strip(), start))
        pending = []
    return result


def stages(path: Path = DOCKERFILE) -> list[Stage]:
    found: list[Stage] = []
    for instruction in instructions(path.read_text()):
        if instruction.keyword == "FROM":
            words = instruction.arguments.split()
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else ""
            found.append(Stage(base=words[0], name=name))
        elif found:
            found[-1].instructions.append(instruction)
    return found


def global_args(path: Path = DOCKERFILE) -> dict[str, str]:
    """The ARGs declared before the first FROM (usable in FROM lines), with their defaults."""
    values = {}
    for instruction in instructions(path.read_text()):
        if instruction.keyword == "FROM":
            break
        if instruction.keyword == "ARG":
            name, _, default = instruction.arguments.partition("=")
            values[name.strip()] = _unquote(default)
    return values


def key_value_pairs(arguments: str) -> dict[str, str]:
    pairs = {}
    for word in shlex.split(arguments):
        key, separator, value = word.partition("=")
        if not separator:
            raise ValueError(f"not KEY=value: {word!r} (the legacy `ENV KEY value` form is not used here)")
        pairs[key] = value
    return pairs


def command_with_assignments(shell_command: str) -> tuple[dict[str, str], list[str]]:
    """Split `A=1 B=2 program args` into the variables set for that one command and its argv."""
    words = shlex.split(shell_command)
    assignments = {}
    while words and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=.*", words[0]):
        key, _, value = words.pop(0).partition("=")
        assignments[key] = value
    return assignments, words


def _unquote(value: str) -> str:
    value = value.strip()
    return shlex.split(value)[0] if value else ""


def _substitute(value: str, known: dict[str, str]) -> str:
    def replace(match: re.Match) -> str:
        name = match.group(1) or match.group(2)
        return known.get(name, match.group(0))

    return re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$([A-Za-z_][A-Za-z0-9_]*)", replace, value)


# --- .dockerignore -----------------------------------------------------------------------------------
# The rules of Docker's pattern matcher: paths are relative to the context root and cleaned, `*` and
# `?` stay within one path segment, `**` spans any number of segments, a pattern excluding a directory
# excludes what is under it, and the last pattern that matches a path (or one of its parents) decides.


def _pattern_regex(pattern: str) -> re.Pattern:
    regex = ""
    index = 0
    while index < len(pattern):
        char = pattern[index]
        if pattern.startswith("**/", index):
            regex += "(?:.*/)?"
            index += 3
            continue
        if pattern.startswith("**", index):
            regex += ".*"
            index += 2
            continue
        regex += {"*": "[^/]*", "?": "[^/]"}.get(char, re.escape(char))
        index += 1
    return re.compile(f"^{regex}$")


def ignore_rules(path: Path = DOCKERIGNORE) -> list[tuple[bool, re.Pattern]]:
    rules = []
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        include = line.startswith("!")
        pattern = str(PurePosixPath(line.lstrip("!").strip().strip("/")))
        rules.append((include, _pattern_regex(pattern)))
    return rules


def in_build_context(relative_path: str, rules: list[tuple[bool, re.Pattern]] | None = None) -> bool:
    """Whether a file at this path (relative to the repository root) is sent to the builder."""
    rules = ignore_rules() if rules is None else rules
    path = PurePosixPath(relative_path)
    candidates = [str(path), *(str(parent) for parent in path.parents if str(parent) != ".")]
    excluded = False
    for include, regex in rules:
        if any(regex.match(candidate) for candidate in candidates):
            excluded = not include
    return not excluded
