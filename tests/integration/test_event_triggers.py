"""Object and topic triggers on a real server: S3- and SNS-shaped events, filters, fan-out,
restarts, and an object event that survives a kill -9 between the write and the delivery.

Each handler prints the event it got on one line (``event {...}``); the tests read the
function's log lines to see which events arrived.
"""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from tests.integration.conftest import Server

PRINTS = """
import json

def handler(event, context):
    print("event " + json.dumps({"event": event, "call": context.aws_request_id}))
    return {"ok": True}
"""


def events(api: httpx.Client, function: str) -> list[dict[str, Any]]:
    """Every event the function printed, in order, with the call it ran as (``call``)."""
    found: list[dict[str, Any]] = []
    after = 0
    while True:
        page = api.get(f"/v1/functions/{function}/logs", params={"after": after, "limit": 1000}).json()
        for line in page["logs"]:
            if line["message"].startswith("event "):
                found.append(json.loads(line["message"][6:]))
        if not page["logs"]:
            return found
        after = page["next"]


def wait_for_events(
    api: httpx.Client, function: str, count: int, timeout: float = 30.0
) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while len(found := events(api, function)) < count:
        assert time.monotonic() < deadline, f"{function} got {len(found)} events, not {count}: {found}"
        time.sleep(0.1)
    return found


def records(api: httpx.Client, function: str, count: int) -> list[dict[str, Any]]:
    """The ``Records[0]`` of each event the function got, once it got ``count``."""
    return [found["event"]["Records"][0] for found in wait_for_events(api, function, count)]


def deploy(api: httpx.Client, code: Callable[..., str], name: str, **config: Any) -> None:
    response = api.put(f"/v1/functions/{name}", json={"code": code({"main.py": PRINTS}), **config})
    assert response.status_code in (200, 201), response.text


def put_trigger(api: httpx.Client, name: str, **body: Any) -> dict[str, Any]:
    response = api.put(f"/v1/triggers/{name}", json=body)
    assert response.status_code in (200, 201), response.text
    return response.json()  # type: ignore[no-any-return]


def put_object(api: httpx.Client, bucket: str, key: str, body: bytes) -> dict[str, Any]:
    response = api.put(f"/v1/buckets/{bucket}/objects/{quote(key, safe='')}", content=body)
    assert response.status_code in (200, 201), response.text
    return response.json()  # type: ignore[no-any-return]


def publish(api: httpx.Client, topic: str, message: Any, **attributes: str) -> dict[str, Any]:
    response = api.post(f"/v1/topics/{topic}/messages", json={"message": message, "attributes": attributes})
    assert response.status_code == 202, response.text
    return response.json()  # type: ignore[no-any-return]


def metric(text: str, name: str, **labels: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


# -- object triggers -------------------------------------------------------------


def test_object_triggers_deliver_s3_events_of_what_they_match(
    api: httpx.Client, code: Callable[..., str]
) -> None:
    deploy(api, code, "obj-uploads")
    deploy(api, code, "obj-removals")
    assert api.put("/v1/buckets/obj-photos").status_code == 201
    uploads = put_trigger(
        api,
        "obj-uploads",
        type="object",
        function="obj-uploads",
        bucket="obj-photos",
        prefix="in/",
        suffix=".txt",
    )
    assert (uploads["type"], uploads["events"], uploads["prefix"], uploads["suffix"]) == (
        "object",
        ["created"],
        "in/",
        ".txt",
    )
    put_trigger(
        api, "obj-removals", type="object", function="obj-removals", bucket="obj-photos", events=["deleted"]
    )

    written = put_object(api, "obj-photos", "in/my notes.txt", b"hello")
    put_object(api, "obj-photos", "in/cat.png", b"not text")  # the suffix: not for obj-uploads
    put_object(api, "obj-photos", "out/other.txt", b"elsewhere")  # the prefix: neither
    assert (
        api.delete(f"/v1/buckets/obj-photos/objects/{quote('in/my notes.txt', safe='')}").status_code == 204
    )

    (created,) = records(api, "obj-uploads", 1)
    assert created["eventSource"] == "wuzhao:s3"
    assert created["eventName"] == "ObjectCreated:Put"
    assert created["s3"]["configurationId"] == "obj-uploads"
    assert created["s3"]["bucket"]["name"] == "obj-photos"
    assert created["s3"]["object"]["key"] == "in/my+notes.txt"  # URL-encoded, as S3 sends keys
    assert created["s3"]["object"]["size"] == 5
    assert created["s3"]["object"]["eTag"] == written["etag"]
    deleted = records(api, "obj-removals", 1)[0]
    assert deleted["eventName"] == "ObjectRemoved:Delete"
    assert deleted["s3"]["object"]["key"] == "in/my+notes.txt"
    assert deleted["s3"]["object"]["sequencer"] > created["s3"]["object"]["sequencer"]  # string order
    time.sleep(1.0)  # and nothing else comes
    assert len(events(api, "obj-uploads")) == len(events(api, "obj-removals")) == 1


def test_object_triggers_are_of_their_namespace_and_listed(
    api: httpx.Client, code: Callable[..., str]
) -> None:
    deploy(api, code, "obj-mine")
    assert api.put("/v1/buckets/obj-shared-name").status_code == 201
    put_trigger(api, "obj-mine", type="object", function="obj-mine", bucket="obj-shared-name")
    assert api.post("/v1/namespaces", json={"name": "obj-other"}).status_code == 201
    other = {"X-Wuzhao-Namespace": "obj-other"}
    assert api.put("/v1/buckets/obj-shared-name", headers=other).status_code == 201
    assert api.put("/v1/buckets/obj-shared-name/objects/k", content=b"x", headers=other).status_code == 201
    put_object(api, "obj-shared-name", "k", b"mine")
    assert len(records(api, "obj-mine", 1)) == 1
    time.sleep(0.5)
    assert len(events(api, "obj-mine")) == 1  # the other namespace's bucket of the same name fired nothing
    listed = api.get("/v1/triggers", params={"function": "obj-mine"}).json()["triggers"]
    assert [(t["name"], t["type"], t["bucket"]) for t in listed] == [
        ("obj-mine", "object", "obj-shared-name")
    ]


def test_an_object_event_is_not_lost_when_the_server_is_killed_after_the_write(
    start_server: Callable[..., Server], code: Callable[..., str]
) -> None:
    server = start_server()
    api = server.client()
    # Disabled: nothing of it can run before the kill, so only the queue can remember the event.
    deploy(api, code, "survivor", max_concurrency=0)
    assert api.put("/v1/buckets/kept").status_code == 201
    put_trigger(api, "kept", type="object", function="survivor", bucket="kept")
    written = put_object(api, "kept", "report.csv", b"a,b\n")
    assert server.process is not None
    server.process.send_signal(signal.SIGKILL)  # right after the PUT answered
    server.process.wait()

    server = start_server(data_dir=server.data_dir)
    api = server.client()
    assert metric(api.get("/metrics").text, "wuzhao_async_queue_depth", function="survivor") == 1
    assert events(api, "survivor") == []
    deploy(api, code, "survivor", max_concurrency=1)  # enabled: the delivery made before the kill runs
    (record,) = records(api, "survivor", 1)
    assert record["s3"]["object"]["key"] == "report.csv"
    assert record["s3"]["object"]["eTag"] == written["etag"]


# -- topics ---------------------------------------------------------------------


def test_a_message_fans_out_to_every_subscriber_its_filter_passes(
    api: httpx.Client, code: Callable[..., str], server: Server
) -> None:
    for name in ("topic-all", "topic-refunds", "topic-sales"):
        deploy(api, code, name)
    put_trigger(api, "topic-all", type="topic", function="topic-all", topic="orders")
    refunds = put_trigger(
        api,
        "topic-refunds",
        type="topic",
        function="topic-refunds",
        topic="orders",
        filter={"kind": ["refund"]},
    )
    assert refunds["filter"] == {"kind": ["refund"]}
    put_trigger(
        api, "topic-sales", type="topic", function="topic-sales", topic="orders", filter={"kind": ["sale"]}
    )

    published = publish(api, "orders", {"order": 7}, kind="refund", region="eu")
    assert published["deliveries"] == 2

    for function in ("topic-all", "topic-refunds"):
        (record,) = records(api, function, 1)
        assert record["EventSource"] == "wuzhao:sns"
        assert record["EventSubscriptionArn"] == f"wuzhao:sns:default:orders:{function}"
        sns = record["Sns"]
        assert (sns["Type"], sns["MessageId"], sns["TopicArn"]) == (
            "Notification",
            published["message_id"],
            "wuzhao:sns:default:orders",
        )
        assert json.loads(sns["Message"]) == {"order": 7}  # JSON is sent as its text, as SNS does
        assert sns["MessageAttributes"] == {
            "kind": {"Type": "String", "Value": "refund"},
            "region": {"Type": "String", "Value": "eu"},
        }
    # each subscriber its own call
    assert events(api, "topic-all")[0]["call"] != events(api, "topic-refunds")[0]["call"]
    assert publish(api, "orders", "plain text")["deliveries"] == 1  # only the filterless one
    assert records(api, "topic-all", 2)[1]["Sns"]["Message"] == "plain text"
    assert publish(api, "nobody-listens", "x")["deliveries"] == 0
    time.sleep(0.5)
    assert events(api, "topic-sales") == []

    # an invoker key may publish (it may invoke); the message stays in its namespace
    invoker = server.client(api.post("/v1/keys", json={"role": "invoker"}).json()["key"])
    assert invoker.post("/v1/topics/orders/messages", json={"message": "i"}).status_code == 202
    assert api.post("/v1/namespaces", json={"name": "topic-other"}).status_code == 201
    other = api.post(
        "/v1/topics/orders/messages", json={"message": "o"}, headers={"X-Wuzhao-Namespace": "topic-other"}
    )
    assert (other.status_code, other.json()["deliveries"]) == (202, 0)


@pytest.mark.parametrize(
    ("path", "body", "status", "field"),
    [
        ("/v1/topics/Orders/messages", {"message": "x"}, 400, "topic"),
        ("/v1/topics/orders/messages", {}, 400, "message"),
        ("/v1/topics/orders/messages", {"message": "x", "attributes": {"a": 1}}, 400, "attributes"),
        ("/v1/topics/orders/messages", {"message": "x", "attributes": {"a b": "c"}}, 400, "attributes"),
        ("/v1/topics/orders/messages", {"message": "x", "extra": 1}, 400, "extra"),
        ("/v1/topics/orders/messages", {"message": "x" * (256 * 1024 + 1)}, 413, None),
    ],
)
def test_a_bad_message_is_refused(
    api: httpx.Client, path: str, body: dict[str, Any], status: int, field: str | None
) -> None:
    response = api.post(path, json=body)
    assert response.status_code == status, response.text
    assert response.json()["error"].get("field") == field


def test_object_and_topic_triggers_survive_a_restart(
    start_server: Callable[..., Server], code: Callable[..., str]
) -> None:
    server = start_server()
    api = server.client()
    deploy(api, code, "keeper")
    assert api.put("/v1/buckets/keeper").status_code == 201
    put_trigger(api, "on-upload", type="object", function="keeper", bucket="keeper", suffix=".json")
    put_trigger(api, "on-alert", type="topic", function="keeper", topic="alerts", filter={"level": ["high"]})
    before = api.get("/v1/triggers").json()["triggers"]
    assert server.stop() == 0

    server = start_server(data_dir=server.data_dir)
    api = server.client()
    assert api.get("/v1/triggers").json()["triggers"] == before
    put_object(api, "keeper", "a.json", b"{}")
    assert publish(api, "alerts", "disk full", level="high")["deliveries"] == 1
    got = records(api, "keeper", 2)
    assert sorted(r.get("eventName") or r["EventSource"] for r in got) == ["ObjectCreated:Put", "wuzhao:sns"]


def test_the_cli_puts_event_triggers_and_publishes(
    api: httpx.Client, code: Callable[..., str], server: Server
) -> None:
    deploy(api, code, "cli-sub")
    put = server.cli(
        "trigger", "put", "cli-sub", "-f", "cli-sub", "--type", "topic", "-t", "cli", "--filter", "k=v"
    )
    assert put.returncode == 0, put.stderr
    assert put.stdout == "created trigger cli-sub: k=v -> cli-sub from topic cli\n"
    bucket = server.cli(
        "trigger", "put", "cli-obj", "-f", "cli-sub", "--type", "object", "-b", "cli-b", "--event", "deleted"
    )
    assert bucket.returncode == 0, bucket.stderr
    published = server.cli("topic", "publish", "cli", '{"n": 1}', "--json", "--attr", "k=v")
    assert published.returncode == 0, published.stderr
    assert "1 subscriber will get it" in published.stderr
    (record,) = records(api, "cli-sub", 1)
    assert record["Sns"]["MessageId"] == published.stdout.strip()
    assert json.loads(record["Sns"]["Message"]) == {"n": 1}
