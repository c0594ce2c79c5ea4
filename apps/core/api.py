"""Pieces every service's API shares: the paginator and the one shape of an error answer."""

from drf_spectacular.utils import OpenApiResponse
from rest_framework import serializers
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.pagination import PageNumberPagination


class ProblemSerializer(serializers.Serializer):
    """RFC 9457 problem details, as apps.core.problems writes them; more members may follow."""

    type = serializers.CharField(help_text="`urn:problem-type:<code>`: stable per kind of problem")
    title = serializers.CharField(help_text="The HTTP status' phrase, or a short summary")
    status = serializers.IntegerField(min_value=400, max_value=599, help_text="The HTTP status code")
    detail = serializers.CharField(help_text="What went wrong, for a person")
    code = serializers.CharField(help_text="What went wrong, for a program (e.g. validation_error, throttled)")
    request_id = serializers.CharField(help_text="The X-Request-ID of this answer: quote it when reporting")
    errors = serializers.DictField(
        child=serializers.JSONField(), required=False, help_text="validation_error: the problems of each field"
    )
    retry_after = serializers.IntegerField(required=False, help_text="throttled: seconds until a retry may pass")

    class Meta:
        ref_name = "Problem"


# What a view says about one of its error answers; the schema is always ProblemSerializer.
PROBLEM = OpenApiResponse(response=ProblemSerializer, description="application/problem+json with the request id")

PAGE_SIZE_MAX = 100


class Pagination(PageNumberPagination):
    """Pages of `{count, next, previous, results}`; a client may ask `?page_size=` up to 100."""

    page_size_query_param = "page_size"
    max_page_size = PAGE_SIZE_MAX

    def get_schema_operation_parameters(self, view):
        return [
            {
                "name": self.page_query_param,
                "required": False,
                "in": "query",
                "description": "Page number, from 1; past the last page is a 404.",
                "schema": {"type": "integer", "minimum": 1},
            },
            {
                "name": self.page_size_query_param,
                "required": False,
                "in": "query",
                "description": f"Results per page (default 20; above {PAGE_SIZE_MAX}, {PAGE_SIZE_MAX}).",
                "schema": {"type": "integer", "minimum": 1},
            },
        ]


class ContentNegotiation(DefaultContentNegotiation):
    """DRF's negotiation, answered without parsing for what nearly every client sends.

    No `?format=` and an Accept header that is absent, `*/*` or exactly the first renderer's media
    type select the first renderer with its media type, which is what DRF's parse of those headers
    selects. Anything else (a list, parameters, another type, a format override) is DRF's own."""

    def select_renderer(self, request, renderers, format_suffix=None):
        if renderers and not format_suffix and self.settings.URL_FORMAT_OVERRIDE not in request.query_params:
            first = renderers[0]
            accept = request.META.get("HTTP_ACCEPT", "*/*")
            if accept in {"*/*", first.media_type} and ";" not in first.media_type:
                return first, first.media_type
        return super().select_renderer(request, renderers, format_suffix)
