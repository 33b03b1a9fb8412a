"""The request guard as plain ASGI: the body deadline (408) against clients that send their
body slowly, without touching requests whose body has arrived."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from bentos.guard import Guard, GuardConfig

SCOPE = {"type": "http", "method": "POST", "path": "/predict", "headers": []}
PART = {"type": "http.request", "body": b'{"records": [', "more_body": True}
LAST = {"type": "http.request", "body": b"]}", "more_body": False}


async def _echo(scope, receive, send):
    """An app that reads the whole body, takes its time, then answers 200 with its size."""
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body", False):
            break
    await asyncio.sleep(scope.get("think_s", 0))
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": json.dumps({"bytes": len(body)}).encode()})


async def _answers_at_once(scope, receive, send):
    """An app that answers before reading the body (and never reads it)."""
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"{}"})


def _client(*messages):
    """receive() of a client that sends these messages (a number: it waits that many
    seconds first), then nothing more."""
    pending = list(messages)

    async def receive():
        if not pending:
            await asyncio.Event().wait()
        if isinstance(pending[0], float):
            await asyncio.sleep(pending.pop(0))
        return pending.pop(0)

    return receive


async def _call(guard: Guard, receive, **scope) -> tuple[int, dict, float]:
    sent: list[dict] = []

    async def send(message):
        sent.append(message)

    start = time.monotonic()
    await asyncio.wait_for(guard({**SCOPE, **scope}, receive, send), 5)  # never hang a test
    status = next(m["status"] for m in sent if m["type"] == "http.response.start")
    body = json.loads(
        b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    )
    return status, body, time.monotonic() - start


def _guard(app=_echo, timeout: float = 0.4) -> Guard:
    return Guard(app, config=GuardConfig(body_timeout_s=timeout))


def test_a_body_that_stops_arriving_gets_408_at_its_deadline():
    guard = _guard(timeout=0.4)
    status, body, took = asyncio.run(_call(guard, _client(PART)))
    assert status == 408
    assert "did not arrive within 0.4 s" in body["error"]
    assert "MLOPS_SERVE_BODY_TIMEOUT_S" in body["error"]
    assert 0.4 <= took < 2.0
    assert not guard._reading and not guard._expired  # nothing left behind


def test_only_the_slow_request_is_answered_408():
    async def many():
        guard = _guard(timeout=0.4)
        slow = asyncio.ensure_future(_call(guard, _client(PART)))
        fast = [_call(guard, _client(PART, LAST), think_s=0.05) for _ in range(50)]
        answers = await asyncio.gather(*fast)
        return guard, await slow, answers

    guard, slow, answers = asyncio.run(many())
    assert slow[0] == 408
    assert {status for status, _, _ in answers} == {200}
    assert {body["bytes"] for _, body, _ in answers} == {len(PART["body"] + LAST["body"])}
    assert not guard._reading and not guard._expired


def test_a_request_whose_body_arrived_may_take_longer_than_the_deadline():
    # Processing is not under the body deadline: the app thinks for three deadlines.
    status, _, took = asyncio.run(_call(_guard(timeout=0.2), _client(PART, LAST), think_s=0.6))
    assert status == 200
    assert took >= 0.6


def test_a_response_that_started_is_not_replaced():
    # The app answered without reading the body; the client never sends the rest.
    guard = _guard(_answers_at_once, timeout=0.2)

    async def answered_then_wait():
        answer = await _call(guard, _client(PART))
        await asyncio.sleep(0.5)  # past the deadline: the watchdog must not touch anything
        return answer

    status, _, _ = asyncio.run(answered_then_wait())
    assert status == 200
    assert not guard._reading and not guard._expired


def test_the_watchdog_runs_only_while_a_body_is_awaited():
    async def scenario():
        guard = _guard(timeout=0.4)
        assert guard._watchdog is None
        request = asyncio.ensure_future(_call(guard, _client(PART, 0.2, LAST)))
        await asyncio.sleep(0.1)
        running = guard._watchdog is not None  # a body is on its way
        assert (await request)[0] == 200
        await asyncio.sleep(0.25)  # a watch interval with nothing to watch
        return running, guard._watchdog

    running, after = asyncio.run(scenario())
    assert running
    assert after is None


def test_a_cancellation_that_is_not_the_guards_goes_through():
    # A server shutting down cancels its requests: the guard must not answer 408 for it.
    async def scenario():
        guard = _guard(timeout=30)
        task = asyncio.ensure_future(_call(guard, _client(PART)))
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return guard

    guard = asyncio.run(scenario())
    assert not guard._reading and not guard._expired


def test_a_new_event_loop_gets_its_own_watchdog():
    # One guard, two loops one after the other (as each TestClient runs its own).
    guard = _guard(timeout=0.3)
    asyncio.run(_call(guard, _client(PART, LAST)))
    status, _, _ = asyncio.run(_call(guard, _client(PART)))
    assert status == 408
