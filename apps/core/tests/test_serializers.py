"""Output serializers kept once per class: the same representation as a serializer made per response."""

import datetime as dt
import threading
import uuid
from dataclasses import dataclass, field

from rest_framework import serializers

from apps.core import serializers as core_serializers
from apps.core.serializers import output_of


@dataclass
class Line:
    sku: str
    quantity: int


@dataclass
class Thing:
    id: uuid.UUID
    total: int
    created_at: dt.datetime
    note: str = ""
    parent_id: uuid.UUID | None = None
    lines: list[Line] = field(default_factory=list)

    def line_count(self) -> int:
        return len(self.lines)


class LineSerializer(serializers.Serializer):
    sku = serializers.CharField()
    quantity = serializers.IntegerField()


class ThingSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    total = serializers.IntegerField()
    created_at = serializers.DateTimeField()
    note = serializers.CharField()
    parent_id = serializers.UUIDField(allow_null=True)
    lines = LineSerializer(many=True)
    line_count = serializers.IntegerField()  # a method, called


def thing(**changes) -> Thing:
    values = {
        "id": uuid.uuid4(),
        "total": 2500,
        "created_at": dt.datetime(2026, 11, 26, 8, 16, 30, 898000, tzinfo=dt.UTC),
        "lines": [Line("BOOK-42", 2), Line("PEN-1", 1)],
    }
    return Thing(**(values | changes))


def test_the_representation_is_the_one_a_fresh_serializer_gives():
    for instance in (thing(), thing(note="gift", parent_id=uuid.uuid4(), lines=[])):
        assert output_of(ThingSerializer, instance) == ThingSerializer(instance).data


def test_the_values_are_the_json_ready_ones():
    instance = thing()
    assert output_of(ThingSerializer, instance) == {
        "id": str(instance.id),
        "total": 2500,
        "created_at": "2026-11-26T08:16:30.898000Z",
        "note": "",
        "parent_id": None,
        "lines": [{"sku": "BOOK-42", "quantity": 2}, {"sku": "PEN-1", "quantity": 1}],
        "line_count": 2,
    }


def test_one_serializer_serves_every_call():
    output_of(ThingSerializer, thing())
    kept = core_serializers._outputs[ThingSerializer]
    output_of(ThingSerializer, thing())
    assert core_serializers._outputs[ThingSerializer] is kept


def test_threads_sharing_it_each_get_their_own_instances_representation():
    instances = [thing(total=total) for total in range(1, 201)]
    found: dict[int, list] = {}

    def represent(offset: int) -> None:
        found[offset] = [output_of(ThingSerializer, instance)["total"] for instance in instances[offset::4]]

    threads = [threading.Thread(target=represent, args=(offset,)) for offset in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert found == {offset: list(range(offset + 1, 201, 4)) for offset in range(4)}
