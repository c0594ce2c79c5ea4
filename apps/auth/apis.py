"""HTTP API of the auth service: one view per operation, validate -> service -> serialize."""

from drf_spectacular.utils import OpenApiResponse, PolymorphicProxySerializer, extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.auth import keys, selectors, services
from apps.core.api import PROBLEM
from apps.core.client_address import client_address
from apps.core.parsers import FormParser, JSONParser
from apps.core.permissions import IsUser
from apps.core.serializers import StrictInputSerializer

# Register, token and refresh are limited per client address and per account (apps.auth.services).
THROTTLED = OpenApiResponse(description="Rate limited (per client address or per account): retry after Retry-After.")


class UserOutputSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    email = serializers.EmailField()
    created_at = serializers.DateTimeField()


class TokenOutputSerializer(serializers.Serializer):
    access_token = serializers.CharField()
    token_type = serializers.ChoiceField(choices=["Bearer"])
    expires_in = serializers.IntegerField(help_text="Seconds the access token is valid")
    refresh_token = serializers.CharField(required=False, help_text="Password and refresh grants only")


def _token_response(pair: services.TokenPair) -> Response:
    body = {"access_token": pair.access_token, "token_type": "Bearer", "expires_in": pair.expires_in}
    if pair.refresh_token:
        body["refresh_token"] = pair.refresh_token
    # RFC 6749 5.1: token responses must not be cached.
    return Response(body, headers={"Cache-Control": "no-store", "Pragma": "no-cache"})


class RegisterApi(APIView):
    authentication_classes = []
    permission_classes = [AllowAny]

    class InputSerializer(StrictInputSerializer):
        email = serializers.EmailField(max_length=254)
        # 8: Django's MinimumLengthValidator, said in the document; the other validators apply too.
        password = serializers.CharField(min_length=8, max_length=128, trim_whitespace=False)

    @extend_schema(
        request=InputSerializer,
        responses={201: UserOutputSerializer, 400: PROBLEM, 409: PROBLEM, 429: THROTTLED},
        summary="Register a user",
    )
    def post(self, request):
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        user = services.user_register(**data.validated_data, client_address=client_address(request))
        return Response(UserOutputSerializer(user).data, status=status.HTTP_201_CREATED)


class TokenApi(APIView):
    """Password grant for users (JSON `{email, password}`), client-credentials grant for services."""

    authentication_classes = []
    permission_classes = [AllowAny]
    parser_classes = [JSONParser, FormParser]  # OAuth2 clients send form-encoded bodies

    class PasswordInputSerializer(StrictInputSerializer):
        grant_type = serializers.ChoiceField(choices=["password"], required=False)
        email = serializers.EmailField(max_length=254)
        password = serializers.CharField(max_length=128, trim_whitespace=False)

    class ClientInputSerializer(StrictInputSerializer):
        grant_type = serializers.ChoiceField(choices=["client_credentials"])
        client_id = serializers.CharField(max_length=64)
        client_secret = serializers.CharField(max_length=256, trim_whitespace=False)

    @extend_schema(
        request=PolymorphicProxySerializer(
            component_name="TokenGrant",
            serializers=[PasswordInputSerializer, ClientInputSerializer],
            resource_type_field_name=None,
        ),
        responses={200: TokenOutputSerializer, 400: PROBLEM, 401: PROBLEM, 429: THROTTLED},
        summary="Log in (password grant) or get a service token (client_credentials grant)",
        description="Password grant: `{email, password}` (`grant_type` `password` may be given), answered with an "
        "access token and a refresh token. Client credentials: `{grant_type: client_credentials, client_id, "
        "client_secret}`, as JSON or form-encoded, answered with an access token carrying the client's scopes.",
    )
    def post(self, request):
        body = request.data
        grant_type = body.get("grant_type") if hasattr(body, "get") else None
        if grant_type == "client_credentials":
            data = self.ClientInputSerializer(data=body)
            data.is_valid(raise_exception=True)
            pair = services.client_token_issue(
                client_id=data.validated_data["client_id"],
                client_secret=data.validated_data["client_secret"],
                client_address=client_address(request),
            )
        else:
            data = self.PasswordInputSerializer(data=body)
            data.is_valid(raise_exception=True)
            pair = services.user_login(
                email=data.validated_data["email"],
                password=data.validated_data["password"],
                client_address=client_address(request),
            )
        return _token_response(pair)


class RefreshTokenInputSerializer(StrictInputSerializer):
    refresh_token = serializers.CharField(max_length=128)


class TokenRefreshApi(APIView):
    authentication_classes = []
    permission_classes = [AllowAny]

    @extend_schema(
        request=RefreshTokenInputSerializer,
        responses={200: TokenOutputSerializer, 400: PROBLEM, 401: PROBLEM, 429: THROTTLED},
        summary="Rotate a refresh token; reuse revokes the login's every token",
    )
    def post(self, request):
        data = RefreshTokenInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        pair = services.refresh_token_rotate(
            raw_token=data.validated_data["refresh_token"], client_address=client_address(request)
        )
        return _token_response(pair)


class LogoutApi(APIView):
    authentication_classes = []
    permission_classes = [AllowAny]

    @extend_schema(request=RefreshTokenInputSerializer, responses={204: None, 400: PROBLEM}, summary="Log out")
    def post(self, request):
        data = RefreshTokenInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        services.refresh_token_revoke(raw_token=data.validated_data["refresh_token"])
        return Response(status=status.HTTP_204_NO_CONTENT)


class MeApi(APIView):
    permission_classes = [IsUser]

    @extend_schema(responses={200: UserOutputSerializer, 401: PROBLEM, 403: PROBLEM}, summary="The caller")
    def get(self, request):
        user = selectors.user_get(user_id=request.user.subject)
        return Response(UserOutputSerializer(user).data)


class JwksApi(APIView):
    authentication_classes = []
    permission_classes = [AllowAny]

    @extend_schema(
        responses={200: inline_serializer("Jwks", {"keys": serializers.ListField(child=serializers.DictField())})},
        summary="Public keys that verify access tokens",
    )
    def get(self, request):
        # Caches may keep it briefly; verifiers refetch on an unknown kid anyway.
        return Response(keys.jwks(), headers={"Cache-Control": "public, max-age=300"})
