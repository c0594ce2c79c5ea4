"""platform/compose.yaml as Docker Compose would see it: variables interpolated from the env file.

No Compose runs here, so interpolation is done the way the Compose specification describes it for
the forms this file uses: `${VAR}`, `${VAR:-default}`, `${VAR-default}`, `${VAR:?error}`,
`${VAR?error}` and `$$` for a literal dollar sign.
"""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from tests.platform.dockerfile import REPO

COMPOSE_FILE = REPO / "platform" / "compose.yaml"
ENV_EXAMPLE = REPO / "platform" / "compose.env.example"
APP_IMAGE = "platform-app:local"

_REFERENCE = re.compile(r"\$\$|\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<operator>:?[-?])(?P<argument>[^}]*))?\}")


class MissingVariableError(KeyError):
    pass


def env_file(path: Path = ENV_EXAMPLE) -> dict[str, str]:
    values = {}
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, separator, value = line.partition("=")
        if not separator:
            raise ValueError(f"{path}: not KEY=value: {raw!r}")
        values[key.strip()] = value.strip()
    return values


def referenced_variables(text: str) -> set[str]:
    return {match.group("name") for match in _REFERENCE.finditer(text) if match.group("name")}


def interpolate(text: str, variables: dict[str, str]) -> str:
    def replace(match: re.Match) -> str:
        if match.group(0) == "$$":
            return "$"
        name, operator, argument = match.group("name", "operator", "argument")
        value = variables.get(name)
        unset_or_empty = value is None or (value == "" and operator and operator.startswith(":"))
        if operator in {"-", ":-"}:
            return argument if unset_or_empty else value
        if operator in {"?", ":?"}:
            if unset_or_empty:
                raise MissingVariableError(f"{name}: {argument}")
            return value
        return value or ""

    return _REFERENCE.sub(replace, text)


def load(variables: dict[str, str] | None = None) -> dict:
    """The compose model after interpolation (by default with the example env file)."""
    text = COMPOSE_FILE.read_text()
    return yaml.safe_load(interpolate(text, env_file() if variables is None else variables))


def raw() -> dict:
    """The compose model before interpolation: values as written in the file."""
    return yaml.safe_load(COMPOSE_FILE.read_text())


def app_services(model: dict) -> dict[str, dict]:
    """Every service that runs the platform's image."""
    return {name: service for name, service in model["services"].items() if service.get("image") == APP_IMAGE}


def web_services(model: dict) -> dict[str, dict]:
    """The platform's services that serve HTTP: the app containers that run the image's own command."""
    return {name: service for name, service in app_services(model).items() if "command" not in service}
