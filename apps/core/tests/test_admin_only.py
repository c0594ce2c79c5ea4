"""Sessions, CSRF, staff login and messages run for the admin's pages and for nothing else
(apps.core.middleware.AdminOnlyMiddleware), and the checks that would look for them in MIDDLEWARE
look for them where they are (apps.core.checks.admin_csrf_check)."""

import pytest
from django.contrib.auth.models import User as StaffUser
from django.core.exceptions import ImproperlyConfigured
from django.http import HttpResponse
from django.test import Client, RequestFactory

from apps.core.checks import admin_csrf_check
from apps.core.middleware import AdminOnlyMiddleware

pytestmark = pytest.mark.django_db


def test_an_api_request_runs_none_of_the_admins_middlewares():
    seen = {}

    def view(request):
        seen.update(session=hasattr(request, "session"), user=hasattr(request, "user"))
        return HttpResponse()

    AdminOnlyMiddleware(view)(RequestFactory().get("/api/orders/"))
    assert seen == {"session": False, "user": False}


def test_an_admin_request_runs_them_all():
    seen = {}

    def view(request):
        seen.update(
            session=hasattr(request, "session"), user=hasattr(request, "user"), messages=hasattr(request, "_messages")
        )
        return HttpResponse()

    AdminOnlyMiddleware(view)(RequestFactory().get("/admin/"))
    assert seen == {"session": True, "user": True, "messages": True}


def test_staff_log_in_to_the_admin_through_its_form_with_its_csrf_token():
    StaffUser.objects.create_superuser("support", "support@example.com", "a long staff password")
    browser = Client(enforce_csrf_checks=True)
    form = browser.get("/admin/login/")
    assert form.status_code == 200
    token = browser.cookies["csrftoken"].value
    answer = browser.post(
        "/admin/login/?next=/admin/",
        {"username": "support", "password": "a long staff password", "csrfmiddlewaretoken": token},
    )
    assert answer.status_code == 302, answer.content[:300]
    assert "sessionid" in browser.cookies
    assert browser.get("/admin/").status_code == 200


def test_an_admin_form_posted_without_its_token_is_refused():
    response = Client(enforce_csrf_checks=True).post("/admin/login/", {"username": "a", "password": "b"})
    assert response.status_code == 403
    assert response["Content-Type"] == "application/problem+json"


def test_an_api_answer_sets_no_cookie(client):
    response = client.get("/api/schema/")
    assert response.status_code == 200
    assert not response.cookies
    assert "Cookie" not in response.get("Vary", "")


def test_a_middleware_with_hooks_it_cannot_run_is_refused(settings):
    settings.ADMIN_MIDDLEWARE = [*settings.ADMIN_MIDDLEWARE, "apps.core.middleware.DatabaseUnavailableMiddleware"]
    with pytest.raises(ImproperlyConfigured, match="process_exception"):
        AdminOnlyMiddleware(lambda request: HttpResponse())


def test_the_platforms_settings_pass_the_csrf_check():
    assert admin_csrf_check() == []


def test_the_check_warns_when_the_admin_would_lose_its_csrf_protection(settings):
    settings.ADMIN_MIDDLEWARE = [m for m in settings.ADMIN_MIDDLEWARE if "csrf" not in m]
    assert [message.id for message in admin_csrf_check()] == ["core.W002"]


def test_the_check_warns_of_a_csrf_cookie_sent_over_http(settings):
    settings.CSRF_COOKIE_SECURE = False
    assert [message.id for message in admin_csrf_check()] == ["core.W003"]
