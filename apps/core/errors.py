"""API errors shared by every service, beyond DRF's own; each becomes a problem+json response."""

from rest_framework import exceptions


class Conflict(exceptions.APIException):
    status_code = 409
    default_detail = "The request conflicts with the current state of the resource."
    default_code = "conflict"


class UnprocessableEntity(exceptions.APIException):
    status_code = 422
    default_detail = "The request is well-formed but cannot be processed."
    default_code = "unprocessable"


class ServiceUnavailable(exceptions.APIException):
    status_code = 503
    default_detail = "A service this request depends on is unavailable; retry later."
    default_code = "dependency_unavailable"


class ProblemWithDetails(exceptions.APIException):
    """An API error whose problem+json body carries extra members and whose response extra headers."""

    def __init__(self, detail=None, code=None, *, extensions: dict | None = None, headers: dict | None = None):
        super().__init__(detail, code)
        self.extensions = extensions or {}
        self.headers = headers or {}
