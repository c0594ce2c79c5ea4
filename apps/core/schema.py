"""The OpenAPI documents of the services (drf-spectacular): bearer authentication, and errors.

Every error answer of every operation is documented once here, with the one problem schema and its
media type, application/problem+json: those a view declares (with their descriptions), and those
any operation of its kind can meet (400 for bad input, 401/403/503 where a token is verified, 404
for paths with ids and for pages, 413/415 where there is a body, 500 everywhere). Every answer
documents the X-Request-ID header it carries.
"""

from drf_spectacular.extensions import OpenApiAuthenticationExtension, OpenApiSerializerExtension
from drf_spectacular.openapi import AutoSchema as SpectacularAutoSchema
from drf_spectacular.plumbing import is_list_serializer
from rest_framework.permissions import AllowAny

from apps.core.api import ProblemSerializer
from apps.core.problems import CONTENT_TYPE

ERROR_DESCRIPTIONS = {
    "400": "Bad input: the request body, a parameter or a header is invalid (see `errors`).",
    "401": "No valid access token (WWW-Authenticate says which).",
    "403": "The token does not allow this operation.",
    "404": "No such resource (for lists: past the last page).",
    "405": "Method not allowed.",
    "409": "Conflict with the resource's current state.",
    "413": "The request body is too large.",
    "415": "The request body is not of a supported media type.",
    "422": "Well-formed, but cannot be processed.",
    "429": "Too many requests: retry after Retry-After seconds.",
    "500": "Unexpected error: quote the request id when reporting it.",
    "503": "A dependency is unavailable: retry later (Retry-After, when known).",
}
REQUEST_ID_HEADER = {
    "X-Request-ID": {
        "description": "The request's id: the caller's own if it sent a sane one, else a new one.",
        "required": True,
        "schema": {"type": "string", "pattern": "^[A-Za-z0-9._:-]{1,128}$"},
    }
}
RETRY_AFTER_HEADER = {
    "description": "Seconds to wait before retrying",
    "schema": {"type": "integer", "minimum": 0},
}


class AutoSchema(SpectacularAutoSchema):
    def _map_serializer_field(self, field, direction, bypass_extensions=False):
        """A nested list says how many items it takes (drf-spectacular leaves that out)."""
        schema = super()._map_serializer_field(field, direction, bypass_extensions)
        if is_list_serializer(field) and isinstance(schema, dict) and schema.get("type") == "array":
            minimum = max(getattr(field, "min_length", None) or 0, 0 if field.allow_empty else 1)
            if minimum:
                schema["minItems"] = minimum
            if getattr(field, "max_length", None) is not None:
                schema["maxItems"] = field.max_length
        return schema

    def _verifies_tokens(self) -> bool:
        return bool(self.view.get_authenticators())

    def _requires_permission(self) -> bool:
        return any(not isinstance(permission, AllowAny) for permission in self.view.get_permissions())

    def _error_codes_of_kind(self) -> set[str]:
        codes = {"500"}
        has_body = self.method in {"POST", "PUT", "PATCH"}
        if has_body:
            codes |= {"400", "413", "415"}
        if any(parameter.get("in") in {"query", "header"} for parameter in self._get_parameters()):
            codes.add("400")
        if self._verifies_tokens() and self._requires_permission():
            codes |= {"401", "403", "503"}
        if "{" in self.path or (self.method == "GET" and self._is_list_view() and self._get_paginator()):
            codes.add("404")
        return codes

    def _get_response_bodies(self, direction="response"):
        responses = super()._get_response_bodies(direction)
        for code in self._error_codes_of_kind():
            responses.setdefault(code, {})
        problem = self.resolve_serializer(ProblemSerializer, "response").ref
        for code, response in responses.items():
            headers = {**response.get("headers", {}), **REQUEST_ID_HEADER}
            if code >= "400":
                response["content"] = {CONTENT_TYPE: {"schema": problem}}
                if not response.get("description"):
                    response["description"] = ERROR_DESCRIPTIONS.get(code, "Error")
                if code == "429":
                    headers["Retry-After"] = {**RETRY_AFTER_HEADER, "required": True}
                if code == "503":
                    headers.setdefault("Retry-After", RETRY_AFTER_HEADER)
            response["headers"] = headers
        return dict(sorted(responses.items()))


class JwtAuthenticationScheme(OpenApiAuthenticationExtension):
    target_class = "apps.core.tokens.JwtAuthentication"
    name = "bearerAuth"

    def get_security_definition(self, auto_schema):
        return {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "JWT",
            "description": "Access token from POST /api/auth/token/ (RS256, verified against /.well-known/jwks.json).",
        }


class StrictInputSerializerSchema(OpenApiSerializerExtension):
    """Request bodies refuse fields they do not know (apps.core.serializers): the document says so."""

    target_class = "apps.core.serializers.StrictInputSerializer"
    match_subclasses = True

    def map_serializer(self, auto_schema, direction):
        schema = auto_schema._map_serializer(self.target, direction, bypass_extensions=True)
        schema["additionalProperties"] = False
        return schema
