"""Pieces every service's API shares: the paginator and the OpenAPI description of an error answer."""

from drf_spectacular.utils import OpenApiResponse
from rest_framework.pagination import PageNumberPagination

# Every non-2xx answer has this one shape (apps.core.problems).
PROBLEM = OpenApiResponse(description="application/problem+json with the request id")


class Pagination(PageNumberPagination):
    """Pages of `{count, next, previous, results}`; a client may ask `?page_size=` up to 100."""

    page_size_query_param = "page_size"
    max_page_size = 100
