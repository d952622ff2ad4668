"""Fields that ModelFieldsOnceMixin builds once per serializer class."""

from __future__ import annotations

import builtins
from unittest import mock

from rest_framework import serializers

from messaging.models import Customer
from messaging.serializers import ModelFieldsOnceMixin


def test_fields_read_during_first_build():
    class CustomerNameSerializer(ModelFieldsOnceMixin, serializers.ModelSerializer):
        class Meta:
            model = Customer
            fields = ["name"]
            read_only_fields = ["name"]

    read_meanwhile = []
    reads_started = []

    def all_with_concurrent_read(values):
        # Another thread's serializer reads the fields at this point of the
        # first build, as a threaded server may do.
        if not reads_started:
            reads_started.append(True)
            read_meanwhile.append(CustomerNameSerializer().fields)
        return builtins.all(values)

    with mock.patch("messaging.serializers.all", all_with_concurrent_read, create=True):
        CustomerNameSerializer().get_fields()

    assert list(read_meanwhile[0]) == ["name"]
