"""Speaking HTTP to the running services in tests: a fresh user, the problem+json shape, /metrics counts."""

import uuid

import requests
from prometheus_client.parser import text_string_to_metric_families

PASSWORD = "correct horse battery staple"

# django-prometheus' per-view counter, as scraped: the name carries an extra `_total`.
REQUESTS_BY_VIEW = "django_http_requests_total_by_view_transport_method_total"


def register_and_login(auth_url: str, *, http=requests) -> tuple[str, dict]:
    """A new user's email and the token answer of their first login (through `http`: the requests
    module, or a Session that adds what a deployment needs, such as a Host header)."""
    email = f"user-{uuid.uuid4().hex[:12]}@example.com"
    registered = http.post(f"{auth_url}/api/auth/register/", json={"email": email, "password": PASSWORD}, timeout=10)
    assert registered.status_code == 201, registered.text
    token = http.post(f"{auth_url}/api/auth/token/", json={"email": email, "password": PASSWORD}, timeout=10)
    assert token.status_code == 200, token.text
    return email, token.json()


def assert_problem(response: requests.Response, status: int, code: str | None = None) -> dict:
    """The response is a problem+json of this status (and code), carrying its request id."""
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"] == "application/problem+json"
    body = response.json()
    assert body["status"] == status
    if code is not None:
        assert body["code"] == code
    assert body["request_id"] == response.headers["X-Request-ID"]
    return body


def scrape(url: str) -> dict[tuple[str, tuple], float]:
    """Every sample of a /metrics page, by name and sorted labels, as Prometheus parses it."""
    text = requests.get(url, timeout=10).text
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def requests_counted(service_url: str, view: str, method: str | None = None) -> int:
    """Requests a service counted for a view (and method), summed over all its gunicorn workers."""
    return sum(
        int(value)
        for (name, labels), value in scrape(f"{service_url}/metrics").items()
        if name == REQUESTS_BY_VIEW
        and (found := dict(labels))["transport"] == "http"
        and found["view"] == view
        and method in (None, found["method"])
    )
