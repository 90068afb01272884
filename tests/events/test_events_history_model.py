"""Property test: resume-after-id on a bounded history matches a simple model."""

from __future__ import annotations

import asyncio

from events_support import ctx
from hypothesis import given, settings
from hypothesis import strategies as st

from userscope.events import BEGINNING, Delivery, Gap, InMemoryBroker


def key(event_id: str) -> tuple[int, int]:
    ms, seq = event_id.split("-")
    return int(ms), int(seq)


async def scenario(maxlen: int, count: int, pick: int | None) -> None:
    broker = InMemoryBroker(maxlen=maxlen)
    alice, bob = ctx("alice"), ctx("bob")
    published = []
    for n in range(count):
        published.append(await broker.publish(alice, {"n": n}))
        await broker.publish(bob, {"n": n})
    after = BEGINNING if pick is None else published[pick % count]
    retained = published[-maxlen:]
    trimmed = published[: len(published) - len(retained)]
    expected = [i for i in retained if key(i) > key(after)]
    expect_gap = bool(trimmed) and key(trimmed[-1]) > key(after)

    async with broker.subscribe(alice, after=after) as sub:
        async with asyncio.timeout(5):
            got: list[Delivery | Gap] = [
                await anext(sub) for _ in range(len(expected) + int(expect_gap))
            ]
            sentinel = await broker.publish(alice, {"sentinel": True})
            last = await anext(sub)
    await broker.aclose()

    if expect_gap:
        assert got[0] == Gap(after=after, next_id=retained[0], reason="trimmed")
        got = got[1:]
    assert all(isinstance(i, Delivery) for i in got)
    assert [i.id for i in got if isinstance(i, Delivery)] == expected
    assert isinstance(last, Delivery)
    assert last.id == sentinel  # nothing else (in particular nothing of bob's) came first


@settings(max_examples=60, deadline=None)
@given(
    maxlen=st.integers(min_value=1, max_value=8),
    count=st.integers(min_value=1, max_value=20),
    pick=st.none() | st.integers(min_value=0, max_value=100),
)
def test_resume_matches_the_model(maxlen: int, count: int, pick: int | None) -> None:
    asyncio.run(scenario(maxlen, count, pick))
