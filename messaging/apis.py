"""The customers and messages API.

The caller is always the authenticated user. Customers and messages are
addressed by their UUID, and another user's id gets 404 like an unknown one.
"""

from __future__ import annotations

from django.http import Http404
from django.utils.translation import gettext as _
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_view,
)
from rest_framework import status, viewsets
from rest_framework.exceptions import NotFound
from rest_framework.generics import GenericAPIView
from rest_framework.response import Response
from rest_framework.views import APIView

from whatsapp_saas.exceptions import ApplicationError

from . import selectors, services
from .models import Customer, Message
from .serializers import (
    CustomerCreateSerializer,
    CustomerSerializer,
    CustomerUpdateSerializer,
    MessageFilterSerializer,
    MessageSendResultSerializer,
    MessageSendSerializer,
    MessageSerializer,
    MessagingErrorSerializer,
    messages_data,
    send_body_plain,
)

ERROR_400 = OpenApiResponse(
    MessagingErrorSerializer, description="Invalid input; `extra` names the field."
)
ERROR_401 = OpenApiResponse(
    MessagingErrorSerializer,
    description="Not authenticated (`not_authenticated`) or a bad token.",
)
ERROR_404 = OpenApiResponse(
    MessagingErrorSerializer, description="No such customer for this user."
)
ERROR_404_PAGE = OpenApiResponse(
    MessagingErrorSerializer,
    description="The page number is not a page of the results (`not_found`).",
)
ERROR_409_DUPLICATE = OpenApiResponse(
    MessagingErrorSerializer,
    description="The number is already a customer (`duplicate_customer`).",
)


@extend_schema_view(
    list=extend_schema(
        summary="List customers",
        parameters=[
            OpenApiParameter(
                "search",
                str,
                description=(
                    "Part of a name. A query of only digits, spaces and +-.()/ "
                    "also matches part of a number, read without a leading 0 or 00."
                ),
            )
        ],
        responses={
            200: CustomerSerializer(many=True),
            400: ERROR_400,
            401: ERROR_401,
            404: ERROR_404_PAGE,
        },
    ),
    retrieve=extend_schema(
        summary="Get a customer",
        responses={200: CustomerSerializer, 401: ERROR_401, 404: ERROR_404},
    ),
    create=extend_schema(
        summary="Add a customer",
        request=CustomerCreateSerializer,
        responses={
            201: CustomerSerializer,
            400: ERROR_400,
            401: ERROR_401,
            409: ERROR_409_DUPLICATE,
        },
    ),
    update=extend_schema(
        summary="Replace a customer's name and number",
        request=CustomerCreateSerializer,
        responses={
            200: CustomerSerializer,
            400: ERROR_400,
            401: ERROR_401,
            404: ERROR_404,
            409: ERROR_409_DUPLICATE,
        },
    ),
    partial_update=extend_schema(
        summary="Change some fields of a customer",
        request=CustomerUpdateSerializer,
        responses={
            200: CustomerSerializer,
            400: ERROR_400,
            401: ERROR_401,
            404: ERROR_404,
            409: ERROR_409_DUPLICATE,
        },
    ),
    destroy=extend_schema(
        summary="Delete a customer and their messages",
        responses={204: None, 401: ERROR_401, 404: ERROR_404},
    ),
)
class CustomerViewSet(viewsets.GenericViewSet):
    serializer_class = CustomerSerializer
    queryset = Customer.objects.none()
    lookup_field = "code"
    lookup_value_regex = "[0-9a-fA-F-]{32,36}"

    def get_queryset(self):
        search = self.request.query_params.get("search") or None
        return selectors.customer_list(user=self.request.user, search=search)

    def _customer(self) -> Customer:
        # NotFound carries the `not_found` code that a bare Http404 lacks.
        try:
            return selectors.customer_get(
                user=self.request.user, code=self.kwargs["code"]
            )
        except Http404:
            raise NotFound(
                _(
                    "No customer has the id %(id)s; list your customers at "
                    "/api/customers/."
                )
                % {"id": self.kwargs["code"]}
            ) from None

    def _output(self, customer: Customer, status_code=status.HTTP_200_OK):
        fresh = selectors.customer_get(user=self.request.user, code=customer.code)
        return Response(CustomerSerializer(fresh).data, status=status_code)

    def query_params_for(self, request) -> tuple[tuple[str, ...], tuple[str, ...]]:
        # Read by QueryParamsRead: only the list reads query parameters, and
        # OPTIONS on the list URL ("metadata") takes the same ones.
        on_list = self.lookup_field not in self.kwargs
        if self.action == "list" or (self.action == "metadata" and on_list):
            return ("search", "page"), ("search",)
        return (), ()

    def list(self, request):
        page = self.paginate_queryset(self.get_queryset())
        return self.get_paginated_response(CustomerSerializer(page, many=True).data)

    def retrieve(self, request, code=None):
        return Response(CustomerSerializer(self._customer()).data)

    def create(self, request):
        serializer = CustomerCreateSerializer(
            data=request.data, context={"request": request}
        )
        serializer.is_valid(raise_exception=True)
        customer = services.customer_create(
            owner=request.user,
            phone=serializer.validated_data["phone"],
            name=serializer.validated_data.get("name", ""),
        )
        return self._output(customer, status.HTTP_201_CREATED)

    def update(self, request, code=None):
        return self._update(request, partial=False)

    def partial_update(self, request, code=None):
        return self._update(request, partial=True)

    def _update(self, request, *, partial: bool):
        customer = self._customer()
        serializer_class = (
            CustomerUpdateSerializer if partial else CustomerCreateSerializer
        )
        serializer = serializer_class(data=request.data, context={"request": request})
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        services.customer_update(
            customer=customer,
            name=data.get("name", None if partial else ""),
            phone=data.get("phone"),
        )
        return self._output(customer)

    def destroy(self, request, code=None):
        services.customer_delete(customer=self._customer())
        return Response(status=status.HTTP_204_NO_CONTENT)


class MessageSendApi(APIView):
    @extend_schema(
        summary="Send a text message",
        description=(
            "Queues the text and returns at once with status 202. The send "
            "happens in the background, and the status of each message moves "
            "queued → sending → sent → delivered → read, or to failed with a "
            "reason. A text longer than 4096 characters becomes several "
            "messages, sent in order. Sends are paced a few seconds apart "
            "per WhatsApp number, so a message may stay queued for a while. "
            "A repeated request with the same "
            "`Idempotency-Key` header within 24 hours returns the messages of "
            "the first one and sends nothing again."
        ),
        parameters=[
            OpenApiParameter(
                "Idempotency-Key",
                str,
                location=OpenApiParameter.HEADER,
                required=False,
                description=(
                    "A unique value per message, such as a UUID, at most 64 "
                    "characters. Retrying with the same key never sends twice; "
                    "the same key with another text or customer gets 422 "
                    "`idempotency_key_reused`, and after the first send's "
                    "messages were deleted 409 `idempotency_key_deleted`. Keys "
                    "are scoped to the user."
                ),
            )
        ],
        request=MessageSendSerializer,
        responses={
            202: MessageSendResultSerializer,
            400: ERROR_400,
            401: ERROR_401,
            403: OpenApiResponse(
                MessagingErrorSerializer,
                description="The subscription is inactive (`subscription_inactive`).",
            ),
            404: ERROR_404,
            409: OpenApiResponse(
                MessagingErrorSerializer,
                description=(
                    "WhatsApp is not connected (`session_not_connected`), or "
                    "the customer of the `to` number was deleted while the "
                    "message was being sent (`customer_deleted`), or the "
                    "messages of an earlier send with the same "
                    "`Idempotency-Key` were deleted (`idempotency_key_deleted`); "
                    "nothing was sent."
                ),
            ),
            422: OpenApiResponse(
                MessagingErrorSerializer,
                description=(
                    "The `Idempotency-Key` was used for another message "
                    "(`idempotency_key_reused`)."
                ),
            ),
            429: OpenApiResponse(
                MessagingErrorSerializer,
                description=(
                    "The daily quota is used up (`daily_quota_exceeded`), and "
                    "`extra` contains limit, used and resets_at."
                ),
            ),
        },
    )
    def post(self, request):
        key = request.headers.get("Idempotency-Key", "")
        if "Idempotency-Key" in request.headers and not key.strip():
            raise ApplicationError(
                _(
                    "The Idempotency-Key header is empty; send a key such as a "
                    "UUID, or leave the header out."
                ),
                code="invalid_idempotency_key",
                extra={"field": "idempotency_key"},
            )
        data = send_body_plain(request.data)
        if data is None:
            serializer = MessageSendSerializer(
                data=request.data, context={"request": request}
            )
            serializer.is_valid(raise_exception=True)
            data = serializer.validated_data
        messages = services.message_send(
            user=request.user,
            content=data["content"],
            customer_code=data.get("customer_id"),
            to=data.get("to"),
            source=Message.Source.API,
            idempotency_key=key,
        )
        body = {"messages": messages_data(messages)}
        return Response(body, status=status.HTTP_202_ACCEPTED)


class MessageDetailApi(APIView):
    @extend_schema(
        summary="Get a message",
        description=(
            "Returns one of your messages by its id, with the same fields as "
            "an item of the message list. Poll it to follow a sent message's "
            "status."
        ),
        responses={
            200: MessageSerializer,
            401: ERROR_401,
            404: OpenApiResponse(
                MessagingErrorSerializer,
                description="No such message for this user (`not_found`).",
            ),
        },
    )
    def get(self, request, code):
        message = selectors.message_get(user=request.user, code=code)
        return Response(messages_data([message])[0])


# The query parameters the message list reads: its filters and the page.
MESSAGE_LIST_PARAMS = (*MessageFilterSerializer().fields, "page")


class MessageListApi(GenericAPIView):
    serializer_class = MessageSerializer
    queryset = Message.objects.none()
    query_params = MESSAGE_LIST_PARAMS

    @extend_schema(
        summary="List messages, newest first",
        parameters=[MessageFilterSerializer],
        responses={
            200: MessageSerializer(many=True),
            400: ERROR_400,
            401: ERROR_401,
            404: OpenApiResponse(
                MessagingErrorSerializer,
                description=(
                    "The page number is not a page of the results, or "
                    "`customer_id` names none of your customers (`not_found`)."
                ),
            ),
        },
    )
    def get(self, request):
        filters = MessageFilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        data = filters.validated_data
        queryset = selectors.message_list(
            user=request.user,
            customer_code=data.get("customer_id"),
            direction=data.get("direction"),
            status=data.get("status"),
            since=data.get("since"),
            until=data.get("until"),
        )
        page = self.paginate_queryset(queryset)
        return self.get_paginated_response(messages_data(page))
