"""Every operation documents an example of its success response and of its request body, and every
model-level example is a valid, self-consistent value of its model, so the examples cannot rot."""

from __future__ import annotations

import math
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any, get_args

import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute, iter_route_contexts
from prometheus_client import CollectorRegistry
from pydantic import BaseModel, ValidationError

from api.app import create_app
from core.alerting import event_id, fingerprint
from schemas.alerts import AlertEventPublic, AlertPublic, DeliveryPublic
from schemas.settings import Settings
from schemas.standards import pue_grade

JSON = "application/json"
_STEPS = {"15min": timedelta(minutes=15), "hour": timedelta(hours=1), "day": timedelta(days=1)}


@pytest.fixture(scope="module")
def app() -> FastAPI:
    return create_app(Settings(), CollectorRegistry())


@pytest.fixture(scope="module")
def openapi(app: FastAPI) -> dict[str, Any]:
    return app.openapi()


def _operations(doc: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for path, item in doc["paths"].items():
        for method, operation in item.items():
            yield f"{method.upper()} {path}", operation


def _has_example(doc: dict[str, Any], media_type: str, media: dict[str, Any]) -> bool:
    """A media-type example, or (JSON) a component with model-level examples, itself or as list items."""
    if media.get("example") is not None or media.get("examples"):
        return True
    schema = media.get("schema", {})
    ref = schema.get("$ref") or schema.get("items", {}).get("$ref")
    if media_type != JSON or ref is None:
        return False
    return bool(doc["components"]["schemas"][ref.rsplit("/", 1)[-1]].get("examples"))


def _models(annotation: Any) -> Iterator[type[BaseModel]]:
    """The models an annotation names: itself, or inside `list[...]`, `X | None`, ..."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        yield annotation
    for arg in get_args(annotation):
        yield from _models(arg)


def _route_models(app: FastAPI) -> tuple[set[type[BaseModel]], set[type[BaseModel]]]:
    """The models of every documented route's success responses, and of its request body."""
    responses: set[type[BaseModel]] = set()
    bodies: set[type[BaseModel]] = set()
    for context in iter_route_contexts(app.routes):
        route = context.original_route
        if not isinstance(route, APIRoute) or not route.include_in_schema:
            continue
        responses.update(_models(route.response_model))
        for status, extra in route.responses.items():
            if str(status).startswith("2") and "model" in extra:
                responses.update(_models(extra["model"]))
        if route.body_field is not None:
            bodies.update(_models(route.body_field.field_info.annotation))
    return responses, bodies


def _examples(model: type[BaseModel]) -> list[Any]:
    examples = model.model_json_schema().get("examples", [])
    assert isinstance(examples, list)
    return examples


def test_every_success_response_has_an_example(openapi: dict[str, Any]) -> None:
    seen: set[str] = set()
    missing = []
    for name, operation in _operations(openapi):
        for status, response in operation["responses"].items():
            for media_type, media in response.get("content", {}).items() if status.startswith("2") else ():
                seen.add(media_type)
                if not _has_example(openapi, media_type, media):
                    missing.append(f"{name} {status} {media_type}")
    assert {JSON, "text/csv", "text/event-stream"} <= seen
    assert missing == []


def test_every_request_body_has_an_example(openapi: dict[str, Any]) -> None:
    bodies = {name: op["requestBody"]["content"] for name, op in _operations(openapi) if "requestBody" in op}
    missing = [
        f"{name} {media_type}"
        for name, content in bodies.items()
        for media_type, media in content.items()
        if not _has_example(openapi, media_type, media)
    ]
    assert len(bodies) >= 5
    assert missing == []


def test_every_route_model_has_an_example(app: FastAPI) -> None:
    responses, bodies = _route_models(app)
    assert len(responses) >= 20 and len(bodies) >= 5
    assert sorted(m.__name__ for m in responses | bodies if not _examples(m)) == []


def test_response_examples_are_what_the_model_would_send(app: FastAPI) -> None:
    """Valid, and complete: serialising the validated example gives the example back."""
    errors = {}
    for model in _route_models(app)[0]:
        for example in _examples(model):
            try:
                sent = model.model_validate(example).model_dump(mode="json")
            except ValidationError as exc:
                errors[model.__name__] = str(exc)
            else:
                if sent != example:
                    errors[model.__name__] = f"serialises as {sent}"
    assert errors == {}


def test_request_examples_are_valid(app: FastAPI) -> None:
    errors = {}
    for model in _route_models(app)[1]:
        for example in _examples(model):
            try:
                model.model_validate(example)
            except ValidationError as exc:
                errors[model.__name__] = str(exc)
    assert errors == {}


def _objects(value: Any) -> Iterator[dict[str, Any]]:
    if isinstance(value, dict):
        yield value
        for item in value.values():
            yield from _objects(item)
    elif isinstance(value, list):
        for item in value:
            yield from _objects(item)


def _t(value: str) -> datetime:
    return datetime.fromisoformat(value)


def _off(a: float, b: float, tol: float = 1e-6) -> bool:
    return not math.isclose(a, b, abs_tol=tol)


def _value_problems(obj: dict[str, Any]) -> Iterator[str]:
    """One object on its own: time runs forward, shares and differences add up."""
    start, end = obj.get("start"), obj.get("end")
    if isinstance(start, str) and isinstance(end, str) and _t(end) <= _t(start):
        yield "ends before it starts"
    fossil, nonfossil = obj.get("fossil_share"), obj.get("nonfossil_share")
    if fossil is not None and nonfossil is not None and _off(fossil + nonfossil, 1.0, 1e-4):
        yield "fossil and non-fossil shares do not add up to 1"
    target = obj.get("target_share")
    if (
        target is not None
        and nonfossil is not None
        and (_off(obj["gap"], target - nonfossil) or obj["met"] != (nonfossil >= target))
    ):
        yield "gap or met disagree with the target"
    main = obj.get("main_kwh")
    unmetered = main - sum(obj["sub_items_kwh"].values()) if main is not None else None
    if unmetered is not None and (
        _off(obj["unmetered_kwh"], unmetered) or _off(obj["unmetered_share"], unmetered / main, 1e-4)
    ):
        yield "unmetered energy is not main minus sub-items"
    it = obj.get("it_kwh") if "buckets" not in obj else None
    if it and (_off(obj["pue"], obj["total_kwh"] / it, 1e-4) or obj["grade"] != pue_grade(obj["pue"])):
        yield "PUE or its grade is wrong"


def _series_problems(obj: dict[str, Any], buckets: list[dict[str, Any]]) -> Iterator[str]:
    """A series and its buckets: ordered, of the resolution's length, summing to the totals."""
    starts = [_t(b["start"]) for b in buckets]
    if starts != sorted(starts):
        yield "buckets out of order"
    step = _STEPS.get(obj.get("resolution", ""))
    if step is not None and any(_t(b["end"]) - _t(b["start"]) != step for b in buckets if "end" in b):
        yield f"a bucket is not {step} long"
    if any(b["flagged"] != (abs(b["unmetered_share"]) > obj["tolerance"]) for b in buckets if "flagged" in b):
        yield "flagged disagrees with the tolerance"
    for total, part, scale in (
        ("total_kwh", "kwh", 1.0),
        ("location_tco2e", "location_kg", 1000.0),
        ("market_tco2e", "market_kg", 1000.0),
        ("coverage", "coverage", len(buckets)),  # the buckets shown are equally long
    ):
        parts: list[Any] = [b.get(part) for b in buckets]
        if total in obj and None not in parts and _off(obj[total] * scale, sum(parts), 1e-4):
            yield f"{total} does not match the buckets' {part}"
    measured = [b for b in buckets if b.get("it_kwh")]
    if measured and obj.get("pue") is not None:
        overall = sum(b["total_kwh"] for b in measured) / sum(b["it_kwh"] for b in measured)
        if _off(obj["pue"], overall, 1e-3) or obj["grade"] != pue_grade(obj["pue"]):
            yield "the range's PUE or grade is wrong"


def _inconsistencies(example: Any) -> Iterator[str]:
    """What would make a careful reader distrust an example."""
    for obj in _objects(example):
        for problem in _value_problems(obj):
            yield f"{problem}: {obj}"
        buckets = obj.get("buckets")
        if isinstance(buckets, list) and buckets:
            for problem in _series_problems(obj, buckets):
                yield f"{problem}: {obj}"


def test_examples_are_consistent(app: FastAPI) -> None:
    responses, bodies = _route_models(app)
    problems = [
        f"{model.__name__}: {problem}"
        for model in responses | bodies
        for example in _examples(model)
        for problem in _inconsistencies(example)
    ]
    assert problems == []


def test_the_consistency_check_can_fail() -> None:
    bucket = {"start": "2026-11-24T01:00:00Z", "end": "2026-11-24T01:30:00Z", "kwh": 1.0}
    problems = list(_inconsistencies({"resolution": "hour", "total_kwh": 3.0, "buckets": [bucket]}))
    assert [p.split(": {")[0] for p in problems] == [
        "a bucket is not 1:00:00 long",
        "total_kwh does not match the buckets' kwh",
    ]


def test_alert_examples_carry_the_ids_the_workers_would_give_them() -> None:
    alert = _examples(AlertPublic)[0]
    assert alert["fingerprint"] == fingerprint(alert["rule_id"], alert["subject"])
    starts_at = int(_t(alert["since"]).timestamp() * 1_000_000)
    expected = event_id(alert["fingerprint"], "firing", starts_at)
    assert _examples(AlertEventPublic)[0]["event_id"] == expected
    delivery = _examples(DeliveryPublic)[0]
    assert (delivery["event_id"], delivery["fingerprint"]) == (expected, alert["fingerprint"])


def test_the_document_shows_the_examples_whole(app: FastAPI, openapi: dict[str, Any]) -> None:
    components = openapi["components"]["schemas"]
    responses, bodies = _route_models(app)
    lost = sorted(
        m.__name__
        for m in responses | bodies
        if m.__name__ in components and components[m.__name__].get("examples") != _examples(m)
    )
    assert lost == []
