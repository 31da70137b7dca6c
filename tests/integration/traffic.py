"""Client traffic for integration tests: one request per connection, from threads."""

from __future__ import annotations

import http.client
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from tests.support import poll_until


@dataclass(frozen=True)
class Reply:
    status: int
    headers: dict[str, str]
    document: dict[str, Any]


def post_on_a_new_connection(
    url: str, body: dict[str, Any], headers: dict[str, str] | None = None
) -> Reply:
    """One request on its own connection, so the kernel picks the worker that accepts it.
    Plain `http.client`: an httpx client costs milliseconds to build (its TLS context)."""
    host, port = url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        connection.request(
            "POST",
            "/invocations",
            orjson.dumps(body),
            {"Content-Type": "application/json", **(headers or {})},
        )
        response = connection.getresponse()
        payload = response.read()
        names = {name.lower(): value for name, value in response.getheaders()}
        return Reply(response.status, names, orjson.loads(payload))
    finally:
        connection.close()


@dataclass
class Load:
    """Requests from a few threads, round robin over the given URLs, until stopped."""

    urls: list[str]
    body: dict[str, Any]
    acknowledged: list[str] = field(default_factory=list)
    answers: list[tuple[float, float]] = field(default_factory=list)
    """Per acknowledged request: when it was answered (`time.time()`) and its latency (s)."""
    failures: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self, threads: int = 4) -> Callable[[], None]:
        def work(offset: int) -> None:
            turn = offset
            while not self.stop.is_set():
                url = self.urls[turn % len(self.urls)]
                turn += 1
                sent = time.monotonic()
                try:
                    reply = post_on_a_new_connection(url, self.body)
                except (OSError, http.client.HTTPException, orjson.JSONDecodeError) as error:
                    self.failures.append(f"{url}: {error!r}")
                    continue
                if reply.status == 200:
                    self.acknowledged.append(reply.headers["x-request-id"])
                    self.answers.append((time.time(), time.monotonic() - sent))
                else:
                    self.failures.append(f"{url}: {reply.status} {reply.document}")

        workers = [threading.Thread(target=work, args=(i,), daemon=True) for i in range(threads)]
        for worker in workers:
            worker.start()

        def finish() -> None:
            self.stop.set()
            for worker in workers:
                worker.join(60)

        return finish

    def latencies_between(self, start: float, end: float) -> list[float]:
        """Latencies of the requests answered between two `time.time()` moments."""
        return [latency for at, latency in list(self.answers) if start <= at < end]

    def wait_for_answers_after(self, moment: float, count: int = 100) -> None:
        poll_until(
            lambda: True if sum(at > moment for at, _ in list(self.answers)) >= count else None,
            timeout_s=60,
            what=f"{count} answers after the routing change took effect",
        )
