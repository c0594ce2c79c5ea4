"""The Idempotency-Key request header, shared by every endpoint that creates something."""

import re

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter
from prometheus_client import Counter
from rest_framework import exceptions
from rest_framework.request import Request

HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
# Printable ASCII without spaces, as Stripe and the IETF draft allow; long enough for a UUID and more.
_VALID = re.compile(r"[\x21-\x7e]{1,255}")

PARAMETER = OpenApiParameter(
    name=HEADER,
    # What _VALID accepts: 1 to 255 printable ASCII characters without spaces (! to ~).
    type={"type": "string", "minLength": 1, "maxLength": 255, "pattern": "^[!-~]+$"},
    location=OpenApiParameter.HEADER,
    required=True,
    description="A unique key per operation (a UUID). Retrying with the same key and body repeats nothing: "
    "the first answer is returned again.",
)


REPLAYED_PARAMETER = OpenApiParameter(
    name=REPLAYED_HEADER,
    type=OpenApiTypes.STR,
    location=OpenApiParameter.HEADER,
    response=[201],
    description="`true` when this answers an earlier request with the same Idempotency-Key (nothing was done again)",
)


def idempotency_key_from(request: Request) -> str:
    """The request's Idempotency-Key; a missing or malformed one is a 400 naming the header."""
    key = request.headers.get(HEADER, "")
    if not key:
        raise exceptions.ValidationError({HEADER: ["This header is required (a unique key per operation)."]})
    if not _VALID.fullmatch(key):
        raise exceptions.ValidationError({HEADER: ["Use 1 to 255 printable ASCII characters without spaces."]})
    return key


# Replays by view; a key in use (409) or reused for another request (422) is a problem answer,
# counted by its code in http_problems_total.
REPLAYS = Counter("idempotency_replays", "Requests answered with the stored answer of an earlier one.", ["view"])


def replayed_headers(request: Request, *, replayed: bool) -> dict[str, str]:
    """The answer's headers saying whether it is a replay; a replay is counted, by view."""
    if not replayed:
        return {}
    REPLAYS.labels(view=request.resolver_match.view_name).inc()
    return {REPLAYED_HEADER: "true"}
