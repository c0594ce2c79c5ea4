"""URLs used only by the kernel's tests: the real root plus views that fail on purpose."""

from django.db import OperationalError
from django.urls import path
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.core.serializers import StrictInputSerializer
from apps.urls import urlpatterns as real_urlpatterns


def crash(request):
    raise RuntimeError("boom")


class EchoApi(APIView):
    authentication_classes = []
    permission_classes = [AllowAny]

    class InputSerializer(StrictInputSerializer):
        from rest_framework import serializers

        name = serializers.CharField(max_length=10)
        count = serializers.IntegerField(min_value=0)

    def post(self, request):
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        return Response(data.validated_data)


class CrashApi(APIView):
    authentication_classes = []
    permission_classes = [AllowAny]

    def get(self, request):
        raise RuntimeError("boom inside DRF")


class DatabaseGoneApi(APIView):
    authentication_classes = []
    permission_classes = [AllowAny]

    def get(self, request):
        raise OperationalError("server closed the connection unexpectedly")


def database_gone(request):
    raise OperationalError("connection to server at 127.0.0.1 failed: Connection refused")


urlpatterns = [
    path("test/database-gone", database_gone),
    path("test/database-gone-api", DatabaseGoneApi.as_view()),
    path("test/crash", crash),
    path("test/crash-api", CrashApi.as_view()),
    path("test/echo", EchoApi.as_view()),
    *real_urlpatterns,
]

handler400 = "apps.core.problems.bad_request"
handler403 = "apps.core.problems.permission_denied"
handler404 = "apps.core.problems.page_not_found"
handler500 = "apps.core.problems.server_error"
