"""The problem `code` of each HTTP error status, for answers that no more specific code describes.

Plain values (no Django import), shared by the middleware that holds the error contract and by the
gunicorn worker, which answers before Django is loaded.
"""

STATUS_CODES = {
    400: "bad_request",
    401: "not_authenticated",
    403: "permission_denied",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    413: "payload_too_large",
    414: "uri_too_long",
    415: "unsupported_media_type",
    417: "expectation_failed",
    429: "throttled",
    431: "header_too_large",
    500: "internal_error",
    501: "not_implemented",
    503: "unavailable",
}


def status_code(status: int) -> str:
    return STATUS_CODES.get(status, "internal_error" if status >= 500 else "bad_request")
