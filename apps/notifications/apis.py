"""HTTP API of the notifications service: events from services in, each user's inbox out."""

import re

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.core.api import PROBLEM, Pagination
from apps.core.permissions import HasServiceScope, IsUser
from apps.core.serializers import StrictInputSerializer, StrictUUIDField, output_of
from apps.notifications import selectors, services

EVENT_TYPE = re.compile(r"^[a-z][a-z_]{0,30}(\.[a-z][a-z_]{0,30}){1,2}$")


class NotificationOutputSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    type = serializers.CharField()
    title = serializers.CharField()
    body = serializers.CharField()
    data = serializers.DictField()
    event_id = serializers.UUIDField(allow_null=True, help_text="Empty once the event is past the dedup window.")
    created_at = serializers.DateTimeField()
    read_at = serializers.DateTimeField(allow_null=True)


class EventPublishApi(APIView):
    """Services publish events here (scope notifications:publish); users cannot."""

    permission_classes = [HasServiceScope]
    required_scopes = ["notifications:publish"]

    class InputSerializer(StrictInputSerializer):
        event_id = StrictUUIDField()
        type = serializers.RegexField(EVENT_TYPE, max_length=64, help_text="e.g. order.paid")
        user_id = StrictUUIDField()
        data = serializers.DictField(required=False, default=dict)

        class Meta:
            ref_name = "EventPublishInput"

    class OutputSerializer(serializers.Serializer):
        event_id = serializers.UUIDField()
        status = serializers.ChoiceField(choices=["accepted", "duplicate"])
        notification_id = serializers.UUIDField(allow_null=True)

        class Meta:
            ref_name = "EventPublishOutput"

    @extend_schema(
        request=InputSerializer,
        responses={202: OutputSerializer, 400: PROBLEM, 401: PROBLEM, 403: PROBLEM},
        summary="Publish an event (service token with notifications:publish); a repeated event_id changes nothing",
    )
    def post(self, request):
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        event = data.validated_data
        notification, created = services.event_accept(
            event_id=event["event_id"],
            event_type=event["type"],
            user_id=event["user_id"],
            data=event["data"],
            source=request.user.subject,
        )
        body = {
            "event_id": event["event_id"],
            "status": "accepted" if created else "duplicate",
            "notification_id": notification.id if notification else None,
        }
        return Response(output_of(self.OutputSerializer, body), status=status.HTTP_202_ACCEPTED)


class NotificationListApi(APIView):
    pagination_class = Pagination  # also what the OpenAPI document describes the list with
    permission_classes = [IsUser]

    @extend_schema(
        parameters=[OpenApiParameter("unread", OpenApiTypes.BOOL, description="only unread notifications")],
        responses={
            200: NotificationOutputSerializer(many=True),
            400: PROBLEM,
            401: PROBLEM,
            403: PROBLEM,
            404: PROBLEM,
        },
        summary="The caller's inbox, newest first (paginated: ?page=, ?page_size= up to 100)",
    )
    def get(self, request):
        unread = request.query_params.get("unread", "false").lower()
        if unread not in {"true", "false", "1", "0"}:
            raise serializers.ValidationError({"unread": ["Use true or false."]})
        notifications = selectors.notification_list(user_id=request.user.subject, unread_only=unread in {"true", "1"})
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(notifications, request, view=self)
        return paginator.get_paginated_response([output_of(NotificationOutputSerializer, item) for item in page])


class NotificationReadApi(APIView):
    permission_classes = [IsUser]

    @extend_schema(
        request=None,
        responses={200: NotificationOutputSerializer, 401: PROBLEM, 403: PROBLEM, 404: PROBLEM},
        summary="Mark one of the caller's notifications read (again: no change)",
    )
    def post(self, request, notification_id):
        notification = selectors.notification_get(user_id=request.user.subject, notification_id=notification_id)
        notification = services.notification_mark_read(notification=notification)
        return Response(output_of(NotificationOutputSerializer, notification))
