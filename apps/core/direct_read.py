"""Reads answered without DRF's dispatch in the case nearly every request is (DirectReadApi)."""

import functools

from django.core.exceptions import ImproperlyConfigured
from django.http import HttpResponse
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.core.permissions import IsUser
from apps.core.problems import ANSWERED_EXCEPTIONS
from apps.core.tokens import USER, JwtAuthentication, Principal, access_token_known


class DirectReadApi(APIView):
    """An APIView whose GET, for the request nearly every caller sends, runs without DRF's dispatch.

    That request: GET, no query string, an Accept of nothing, `*/*` or `application/json`, and a
    bearer token this process has already verified, still valid, of a user. It is answered with
    `read(principal, **url_kwargs)` through DRF's JSON renderer and the headers DRF adds: the same
    status, headers and bytes as DRF's dispatch gives (tests compare them case by case). Every other
    request goes through DRF's dispatch, and so does one whose `read` raises what DRF answers itself
    (a 404, a validation error); any other exception propagates as it would from DRF's dispatch.
    A token seen for the first time is verified by DRF's authentication, so nothing that can wait
    (fetching auth's keys) is ever done twice.

    DRF's per-request objects (the Request wrapper, authenticators, permissions, negotiation, the
    response's finalisation) cost about a sixth of an order read in process. Only for views whose
    policy is what this path applies: the platform's JWT authentication, IsUser, the JSON renderer
    alone, no throttles, no versioning (checked when the URLconf is built).
    """

    permission_classes = [IsUser]

    @staticmethod
    def read(principal: Principal, **kwargs) -> object:
        raise NotImplementedError

    def get(self, request, **kwargs):
        return Response(self.read(request.user, **kwargs))

    @classmethod
    def as_view(cls, **initkwargs):
        through_drf = super().as_view(**initkwargs)
        cls._direct_policy_check()
        renderer = JSONRenderer()
        # What DRF's Allow header lists: a view with `get` answers HEAD too (Django's View.setup).
        allow = ", ".join(
            method.upper()
            for method in cls.http_method_names
            if hasattr(cls, method) or (method == "head" and hasattr(cls, "get"))
        )

        @functools.wraps(through_drf)
        def view(request, *args, **kwargs):
            meta = request.META
            authorization = meta.get("HTTP_AUTHORIZATION", "")
            if (
                request.method == "GET"
                and not meta.get("QUERY_STRING")
                and meta.get("HTTP_ACCEPT", "*/*") in _DIRECT_ACCEPTS
                and authorization[:7].lower() == "bearer "
            ):
                principal = access_token_known(authorization[7:].strip())
                if principal is not None and principal.kind == USER:
                    try:
                        data = cls.read(principal, **kwargs)
                    except ANSWERED_EXCEPTIONS:  # DRF's dispatch answers them (apps.core.problems)
                        return through_drf(request, *args, **kwargs)
                    response = HttpResponse(
                        renderer.render(data, "application/json", {}), content_type="application/json"
                    )
                    response["Allow"] = allow
                    return response
            return through_drf(request, *args, **kwargs)

        view.through_drf = through_drf
        return view

    @classmethod
    def _direct_policy_check(cls) -> None:
        policy = {
            "authentication": list(cls.authentication_classes) == [JwtAuthentication],
            "permissions": list(cls.permission_classes) == [IsUser],
            "renderers": list(cls.renderer_classes) == [JSONRenderer],
            "throttles": not cls.throttle_classes,
            "versioning": cls.versioning_class is None,
        }
        broken = [name for name, holds in policy.items() if not holds]
        if broken:
            raise ImproperlyConfigured(f"{cls.__name__} answers GET directly only under the platform policy: {broken}")


_DIRECT_ACCEPTS = frozenset({"*/*", "application/json"})
