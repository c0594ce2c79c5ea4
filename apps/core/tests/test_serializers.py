"""Output serializers kept once per class: the same representation as a serializer made per response."""

import datetime as dt
import threading
import uuid
from dataclasses import dataclass, field

import pytest
from django.core.exceptions import ObjectDoesNotExist
from django.utils import timezone
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


# The representation is decided once per class (`_representation`): every kind of field and value
# below must come out as DRF's own serializer, made afresh, gives it.


class Shouty(serializers.CharField):
    def to_representation(self, value):
        return str(value).upper()


class Owner:
    name = "ann"

    @property
    def vanished(self):
        raise ObjectDoesNotExist  # as a related object that is not there


class OwnerSerializer(serializers.Serializer):
    name = serializers.CharField()


class KitchenSinkSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    hex_id = serializers.UUIDField(source="id", format="hex")
    total = serializers.IntegerField()
    created_at = serializers.DateTimeField()
    day = serializers.DateTimeField(source="created_at", format="%Y-%m-%d")
    in_tokyo = serializers.DateTimeField(source="created_at", default_timezone=dt.timezone(dt.timedelta(hours=9)))
    naive = serializers.DateTimeField()
    note = Shouty()
    parent_id = serializers.UUIDField(allow_null=True)
    lines = LineSerializer(many=True)
    line_count = serializers.IntegerField()  # a method, called
    owner = OwnerSerializer(allow_null=True)
    owner_name = serializers.CharField(source="owner.name", allow_null=True)
    everything_total = serializers.IntegerField(source="*", required=False)
    absent = serializers.CharField(required=False)
    absent_default = serializers.CharField(default="fallback")
    absent_null = serializers.CharField(allow_null=True)
    vanished = serializers.CharField(source="owner.vanished", allow_null=True)
    gone = serializers.CharField()  # a related object that is not there: None, as DRF has it
    doubled = serializers.SerializerMethodField()

    def get_doubled(self, instance) -> int:
        return instance.total * 2


@dataclass
class Sink(Thing):
    naive: dt.datetime = dt.datetime(2026, 1, 2, 3, 4, 5)  # noqa: DTZ001 (a naive value on purpose)
    owner: Owner | None = None

    def __int__(self) -> int:  # what `source="*"` hands the integer field
        return self.total

    @property
    def gone(self):
        raise ObjectDoesNotExist


def represented_alike(instance) -> None:
    assert output_of(KitchenSinkSerializer, instance) == KitchenSinkSerializer(instance).data


def sink(**changes):
    values = vars(thing(**{key: value for key, value in changes.items() if key in Thing.__dataclass_fields__}))
    return Sink(**values, **{key: value for key, value in changes.items() if key not in Thing.__dataclass_fields__})


@pytest.mark.parametrize(
    "instance",
    [
        pytest.param(sink(), id="defaults"),
        pytest.param(sink(note="gift", parent_id=uuid.uuid4(), lines=[], owner=Owner()), id="owner, no lines"),
        pytest.param(
            sink(created_at=dt.datetime(2026, 6, 1, 12, tzinfo=dt.timezone(dt.timedelta(hours=-5)))), id="offset"
        ),
    ],
)
@pytest.mark.parametrize("zone", ["UTC", "Europe/Paris"])
def test_every_kind_of_field_is_represented_as_a_fresh_drf_serializer_represents_it(instance, zone):
    with timezone.override(zone):
        represented_alike(instance)


def test_a_mapping_is_represented_as_drf_represents_it():
    values = vars(thing()) | {"line_count": 2}
    assert output_of(ThingSerializer, values) == ThingSerializer(values).data


def test_without_time_zones_datetimes_come_out_naive_as_drf_gives_them(settings):
    settings.USE_TZ = False
    represented_alike(sink())


def test_another_datetime_format_in_drf_settings_is_followed(settings):
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DATETIME_FORMAT": "%d/%m/%Y %H:%M"}
    represented_alike(sink())
    assert output_of(ThingSerializer, thing())["created_at"] == "26/11/2026 08:16"


def test_a_datetime_that_overflows_fails_as_drf_fails_it():
    late = sink(created_at=dt.datetime.max.replace(tzinfo=dt.UTC))
    with timezone.override("Asia/Tokyo"):
        with pytest.raises(serializers.ValidationError) as drf:
            KitchenSinkSerializer(late).data  # noqa: B018
        with pytest.raises(serializers.ValidationError) as kept:
            output_of(KitchenSinkSerializer, late)
    assert kept.value.detail == drf.value.detail


def test_a_missing_required_attribute_fails_as_drf_fails_it():
    @dataclass
    class NoTotal:
        id: uuid.UUID

    class Needs(serializers.Serializer):
        id = serializers.UUIDField()
        total = serializers.IntegerField()

    with pytest.raises(AttributeError) as drf:
        Needs(NoTotal(uuid.uuid4())).data  # noqa: B018
    with pytest.raises(AttributeError) as kept:
        output_of(Needs, NoTotal(uuid.uuid4()))
    assert str(kept.value) == str(drf.value)


def test_a_serializer_with_its_own_to_representation_keeps_it():
    class Own(ThingSerializer):
        def to_representation(self, instance):
            return {"own": True, **super().to_representation(instance)}

    instance = thing()
    assert output_of(Own, instance) == Own(instance).data
    assert output_of(Own, instance)["own"] is True
    assert core_serializers._outputs[Own][1] is None  # DRF's own path, not the decided one


def test_plain_fields_are_read_and_converted_without_drf_s_per_call_machinery(monkeypatch):
    output_of(ThingSerializer, thing())
    calls = []
    original = serializers.Field.get_attribute
    monkeypatch.setattr(serializers.Field, "get_attribute", lambda *args: calls.append(args) or original(*args))
    assert output_of(ThingSerializer, thing())["total"] == 2500
    assert [field.field_name for field, _instance in calls] == ["line_count"]  # the method, called by DRF
