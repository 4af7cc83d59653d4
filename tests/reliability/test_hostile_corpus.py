"""Every hostile body of tests/fixtures/hostile gets its documented 4xx (or a 200), never a 5xx
or a hang, and a good request is still answered correctly afterwards."""

from __future__ import annotations

import asyncio
import base64

import httpx
import pytest

from service.app import create_app
from tests.fixtures.hostile.make_corpus import (
    BODY_LIMIT,
    MAX_BATCH,
    REAL_PNG,
    TEXT_LIMIT,
    Case,
    build_corpus,
)
from tests.reliability import figures
from tests.reliability.clean_errors import problems
from tests.service.helpers import serving_async, settings_for

pytestmark = pytest.mark.anyio
REQUEST_TIMEOUT_S = 10.0  # a hostile input that takes longer than this counts as a hang


async def send(client: httpx.AsyncClient, case: Case) -> httpx.Response:
    headers = {"content-type": case.content_type} if case.content_type else {}
    headers |= dict(case.headers)
    request = client.build_request("POST", case.path, content=case.body, headers=headers)
    if case.content_type is None:
        request.headers.pop("content-type", None)
    return await asyncio.wait_for(client.send(request), REQUEST_TIMEOUT_S)


def verdict(case: Case, response: httpx.Response) -> list[str]:
    found = problems(response)
    if response.status_code not in case.expect:
        found.append(f"status {response.status_code}, expected {sorted(case.expect)}")
    return [f"{case.name}: {what} ({response.text[:120]!r})" for what in found]


async def test_the_hostile_corpus_gets_clean_4xx_answers_and_the_service_goes_on(two_model_repo):
    settings = settings_for(
        two_model_repo,
        max_body_bytes=BODY_LIMIT,
        max_text_bytes=TEXT_LIMIT,
        max_batch_size=MAX_BATCH,
    )
    corpus = build_corpus()
    failures: list[str] = []
    async with serving_async(create_app(settings)) as client:
        for case in corpus:
            try:
                failures += verdict(case, await send(client, case))
            except TimeoutError:
                failures.append(f"{case.name}: no answer within {REQUEST_TIMEOUT_S} s")
        good = await client.post("/predict", json={"image": base64.b64encode(REAL_PNG).decode()})
        ready = await client.get("/readyz")
    figures.add("hostile corpus cases", len(corpus))
    assert not failures, "\n".join(failures)
    assert good.status_code == 200 and good.json()["model"] == "cifar10"
    assert ready.status_code == 200
