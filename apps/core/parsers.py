"""Request body parsers that refuse, as a 400, what would otherwise end in a 500 further in.

- Nesting deeper than JSON_MAX_DEPTH: Python's parser recurses per level, so a small body of
  `[[[[...` exhausts the interpreter's stack (RecursionError, a 500) long before any size limit.
- Text no database column can hold: NUL (PostgreSQL text refuses it) and unpaired UTF-16
  surrogates (`"\\ud800"` is valid JSON, but no UTF-8 encoder accepts it: the password hasher and
  every database driver raise on it).

Size is bounded before parsing by apps.core.middleware.BodySizeLimitMiddleware.
"""

import json
import re

from django.conf import settings
from rest_framework import parsers
from rest_framework.exceptions import APIException, ParseError

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)
_BRACKET = re.compile(r"[\[\]{}]")
_UNSTORABLE = re.compile(r"[\x00\ud800-\udfff]")


def json_depth_check(text: str, max_depth: int) -> None:
    """ParseError when arrays and objects nest deeper than `max_depth` (strings are not looked into)."""
    depth = 0
    for bracket in _BRACKET.findall(_STRING.sub("", text)):
        if bracket in "[{":
            depth += 1
            if depth > max_depth:
                raise ParseError(f"JSON nested deeper than {max_depth} levels is not accepted.")
        else:
            depth -= 1


def storable_text_check(value, path: str = "$") -> None:
    """ParseError naming the first string (key or value) that holds NUL or an unpaired surrogate."""
    if isinstance(value, str):
        if _UNSTORABLE.search(value):
            raise ParseError(f"Text at {path} contains NUL or an unpaired UTF-16 surrogate, which cannot be stored.")
    elif isinstance(value, dict):
        for key, item in value.items():
            storable_text_check(key, f"{path} (a key)")
            storable_text_check(item, f"{path}.{key}" if len(key) <= 64 and key.isprintable() else f"{path}.?")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            storable_text_check(item, f"{path}[{index}]")


class PayloadTooLarge(APIException):
    status_code = 413
    default_detail = "The request body is too large."
    default_code = "payload_too_large"


def _refuse_constant(name: str):
    raise ValueError(f"{name} is not a JSON number")


class JSONParser(parsers.JSONParser):
    """DRF's JSON parser with a depth limit and storable text only; NaN and Infinity are refused."""

    def parse(self, stream, media_type=None, parser_context=None):
        encoding = (parser_context or {}).get("encoding", settings.DEFAULT_CHARSET)
        raw = stream.read(settings.MAX_REQUEST_BODY_BYTES + 1) if stream is not None else b""
        if len(raw) > settings.MAX_REQUEST_BODY_BYTES:  # a body that declared no length, or a wrong one
            raise PayloadTooLarge()
        try:
            text = raw.decode(encoding)
        except (UnicodeDecodeError, LookupError):
            raise ParseError(f"JSON parse error - the body is not {encoding} text.") from None
        json_depth_check(text, settings.JSON_MAX_DEPTH)
        try:
            data = json.loads(text, parse_constant=_refuse_constant)
        except ValueError as error:  # JSONDecodeError, and integers beyond Python's digit limit
            raise ParseError(f"JSON parse error - {error.__class__.__name__}: {str(error)[:200]}") from None
        storable_text_check(data)
        return data


class FormParser(parsers.FormParser):
    """Form bodies (OAuth2 token requests) with the same rule for text as JSON."""

    def parse(self, stream, media_type=None, parser_context=None):
        data = super().parse(stream, media_type, parser_context)
        for key, values in data.lists():
            storable_text_check(key, "$ (a key)")
            for value in values:
                storable_text_check(value, f"$.{key[:64]}")
        return data
