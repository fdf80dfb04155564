"""Records: optimistic concurrency, listing, atomic batches."""

from __future__ import annotations

import asyncio

import pytest

from podium.errors import ConflictError, InvalidInputError, LeaseLostError, UnstorableValueError
from podium.ids import new_ulid_str
from podium.store import Ack, Append, Enqueue, Put, Store


async def test_create_then_update_bumps_version(store: Store) -> None:
    rec = await store.put("job", "a", {"x": 1}, expected_version=0, status="pending", group="bp")
    assert (rec.version, rec.data, rec.status, rec.group) == (1, {"x": 1}, "pending", "bp")
    rec2 = await store.put("job", "a", {"x": 2}, expected_version=1, status="running", group="bp")
    assert rec2.version == 2
    got = await store.get("job", "a")
    assert got is not None and got.data == {"x": 2} and got.version == 2 and got.status == "running"
    assert got.created_at == rec.created_at


async def test_versioned_write_moves_the_record_between_groups(store: Store) -> None:
    """A versioned write keeps, changes or clears the group; listings by group follow (SQLite updates the
    group's index only when the group changes); a stale one changes nothing, whatever group it names."""
    await store.put("task", "t", {"n": 1}, expected_version=0, status="queued", group="j1")
    await store.put("task", "t", {"n": 2}, expected_version=1, status="running", group="j1")
    rec = await store.put("task", "t", {"n": 3}, expected_version=2, status="running", group="j2")
    assert (rec.version, rec.group) == (3, "j2")
    assert [r.id for r in await store.list("task", group="j2")] == ["t"]
    assert await store.list("task", group="j1") == []
    with pytest.raises(ConflictError) as info:
        await store.put("task", "t", {"n": 99}, expected_version=2, group="j3")
    assert info.value.actual == 3
    with pytest.raises(ConflictError):
        await store.put("task", "t", {"n": 99}, expected_version=2, group="j2")
    rec = await store.put("task", "t", {"n": 4}, expected_version=3, status="done", group=None)
    got = await store.get("task", "t")
    assert got is not None and (got.version, got.group, got.status, got.data) == (4, None, "done", {"n": 4})
    assert await store.count("task", group="j2") == 0
    assert [r.id for r in await store.list("task", status="done")] == ["t"]
    await store.put("task", "t", {"n": 5}, expected_version=4, status="done", group="j1")
    assert [r.id for r in await store.list("task", group="j1")] == ["t"]


async def test_stale_write_fails_and_changes_nothing(store: Store) -> None:
    await store.put("job", "a", {"x": 1}, expected_version=0)
    await store.put("job", "a", {"x": 2}, expected_version=1)
    with pytest.raises(ConflictError) as info:
        await store.put("job", "a", {"x": 99}, expected_version=1)
    assert info.value.actual == 2
    with pytest.raises(ConflictError):
        await store.put("job", "a", {"x": 99}, expected_version=0)
    got = await store.get("job", "a")
    assert got is not None and got.data == {"x": 2} and got.version == 2


async def test_two_concurrent_writers_exactly_one_wins(store: Store) -> None:
    await store.put("job", "a", {"n": 0}, expected_version=0)
    base = await store.get("job", "a")
    assert base is not None

    async def writer(n: int) -> int:
        await store.put("job", "a", {"n": n}, expected_version=base.version)
        return n

    results = await asyncio.gather(*(writer(n) for n in range(1, 6)), return_exceptions=True)
    winners = [r for r in results if isinstance(r, int)]
    assert len(winners) == 1
    assert all(isinstance(r, ConflictError) for r in results if not isinstance(r, int))
    got = await store.get("job", "a")
    assert got is not None and got.version == 2 and got.data == {"n": winners[0]}


async def test_returned_data_is_not_aliased(store: Store) -> None:
    data = {"nested": {"k": [1, 2]}}
    rec = await store.put("job", "a", data)
    data["nested"]["k"].append(3)
    rec.data["nested"]["k"].append(4)
    got = await store.get("job", "a")
    assert got is not None and got.data == {"nested": {"k": [1, 2]}}


async def test_peek_is_get_or_nothing(store: Store) -> None:
    """``peek`` answers at once with what ``get`` would return, or ``None`` (then ``get`` is read); never a
    missing record, never data the caller can change under the store."""
    assert store.peek("job", "nope") is None
    await store.put("job", "a", {"nested": {"k": [1]}}, status="running")
    await store.put("job", "a", {"nested": {"k": [1, 2]}}, status="finished")
    got = await store.get("job", "a")
    peeked = store.peek("job", "a")
    assert peeked is None or peeked == got
    if peeked is not None:
        peeked.data["nested"]["k"].append(3)
        again = store.peek("job", "a")
        assert again is not None and again.data == {"nested": {"k": [1, 2]}}
    await store.delete("job", "a")
    assert store.peek("job", "a") is None


async def test_peek_mark_is_peeks_version_and_times(store: Store) -> None:
    """``peek_mark`` says what ``peek`` would return, undecoded: ``None`` where it returns ``None``, else that
    record's (version, created_at, updated_at); a write changes it."""
    assert store.peek_mark("job", "nope") is None
    await store.put("job", "a", {"n": 1}, status="running")

    def both() -> tuple[object, object]:
        rec = store.peek("job", "a")
        return store.peek_mark("job", "a"), None if rec is None else (
            rec.version,
            rec.created_at,
            rec.updated_at,
        )

    mark, expected = both()
    assert mark == expected
    got = await store.get("job", "a")
    assert got is not None
    await store.put("job", "a", {"n": 2}, status="finished", expected_version=got.version)
    after, expected = both()
    assert after == expected
    if mark is not None and after is not None:
        assert after != mark and after[0] == got.version + 1


async def test_list_filters_orders_and_pages(store: Store) -> None:
    ids = [new_ulid_str() for _ in range(6)]
    for i, id in enumerate(ids):
        await store.put(
            "job", id, {"i": i}, status="done" if i % 2 else "pending", group="a" if i < 3 else "b"
        )
    await store.put("other", new_ulid_str(), {})
    assert [r.id for r in await store.list("job")] == ids
    assert [r.id for r in await store.list("job", status="done")] == ids[1::2]
    assert [r.id for r in await store.list("job", status=["done", "pending"], group="b")] == ids[3:]
    page1 = await store.list("job", limit=4)
    page2 = await store.list("job", after=page1[-1].id, limit=4)
    assert [r.id for r in page1 + page2] == ids
    assert [r.id for r in await store.list("job", descending=True, limit=2)] == ids[:-3:-1]
    assert await store.count("job") == 6
    assert await store.count("job", status="pending", group="a") == 2


async def test_delete(store: Store) -> None:
    await store.put("job", "a", {})
    with pytest.raises(ConflictError):
        await store.delete("job", "a", expected_version=5)
    assert await store.delete("job", "a", expected_version=1) is True
    assert await store.get("job", "a") is None
    assert await store.delete("job", "a") is False


async def test_batch_is_all_or_nothing(store: Store) -> None:
    await store.put("job", "a", {"v": 1})
    with pytest.raises(ConflictError):
        await store.apply(
            Put("job", "b", {"new": True}),
            Enqueue("q", "t1", {"x": 1}),
            Append("a", "transition", status="running"),
            Put("job", "a", {"v": 2}, expected_version=7),
        )
    assert await store.get("job", "b") is None
    assert await store.take("q", owner="w", lease_s=10) == []
    assert await store.history("a") == []
    got = await store.get("job", "a")
    assert got is not None and got.data == {"v": 1}


async def test_complete_with_lost_lease_records_nothing(store: Store, clock) -> None:  # type: ignore[no-untyped-def]
    await store.enqueue("q", "t1", {})
    [lease] = await store.take("q", owner="w1", lease_s=5)
    await clock.advance(6)  # lease expired; another worker takes the task
    [lease2] = await store.take("q", owner="w2", lease_s=5)
    with pytest.raises(LeaseLostError):
        await store.apply(Ack(lease), Put("job", "j", {"result": "from w1"}), Append("j", "done"))
    assert await store.get("job", "j") is None
    assert await store.history("j") == []
    results = await store.apply(Ack(lease2), Put("job", "j", {"result": "from w2"}), Append("j", "done"))
    assert results[0] is None and results[1].data == {"result": "from w2"} and results[2].event == "done"


async def test_json_edge_values_round_trip(store: Store) -> None:
    data = {
        "unicode": "µl • 96-well",
        "nested": [{"a": None}, [1.5, -2, True]],
        "big": 2**53 + 1,
        "neg": -0.25,
    }
    await store.put("job", "edge", data)
    got = await store.get("job", "edge")
    assert got is not None and got.data == data


async def test_values_are_held_as_json(store: Store) -> None:
    # Given data that JSON holds differently (tuples, integer keys)
    await store.put("job", "a", {"pair": (1, 2), "by_n": {3: "x"}})
    await store.append("a", "noted", data={"pair": (1, 2)})
    await store.enqueue("q", "t1", {"pair": (1, 2)})
    # Then every backend gives back what JSON gives back
    got = await store.get("job", "a")
    assert got is not None and got.data == {"pair": [1, 2], "by_n": {"3": "x"}}
    assert (await store.history("a"))[0].data == {"pair": [1, 2]}
    assert (await store.take("q", owner="w", lease_s=5))[0].payload == {"pair": [1, 2]}


async def test_a_value_json_cannot_hold_fails_the_whole_batch(store: Store) -> None:
    with pytest.raises(TypeError):
        await store.apply(
            Put("job", "b", {"ok": True}),
            Enqueue("q", "t1", {"x": 1}),
            Append("b", "noted", data={"bad": {1, 2}}),
        )
    assert await store.get("job", "b") is None
    assert await store.take("q", owner="w", lease_s=10) == []
    assert await store.history("b") == []


async def test_an_integer_beyond_64_bits_is_refused_naming_where_it_is(store: Store) -> None:
    # JSON as every backend holds it has 64-bit integers: a bigger one is refused (not rounded to a float),
    # as invalid input naming its path in the data, and the batch writes nothing
    for big in (2**64, -(2**63) - 1):
        with pytest.raises(UnstorableValueError) as info:
            await store.apply(Put("job", "c", {"ok": 1}), Enqueue("q", "t", {"n": [1, {"deep": big}]}))
        assert info.value.field == "n.1.deep" and str(big) in str(info.value)
        assert isinstance(info.value, (InvalidInputError, TypeError))
    with pytest.raises(UnstorableValueError) as info:
        await store.put("job", "c", {"a": {"b": object()}})
    assert info.value.field == "a.b"
    assert await store.get("job", "c") is None
    assert await store.take("q", owner="w", lease_s=10) == []
    # the edges themselves are held exactly
    await store.put("job", "c", {"lo": -(2**63), "hi": 2**64 - 1})
    got = await store.get("job", "c")
    assert got is not None and got.data == {"lo": -(2**63), "hi": 2**64 - 1}


async def test_results_carry_the_callers_own_objects(store: Store) -> None:
    data, payload, note = {"n": [1]}, {"job": "j"}, {"k": [2]}
    rec, lease, entry = await store.apply(
        Put("job", "j", data),
        Enqueue("q", "s1", payload, lease_owner="e", lease_s=5),
        Append("j", "x", None, note),
    )
    assert rec.data is data and lease.payload is payload and entry.data is note
    # The store kept copies: changing the caller's objects changes nothing stored.
    data["n"].append(9)
    note["k"].append(9)
    got = await store.get("job", "j")
    assert got is not None and got.data == {"n": [1]}
    assert (await store.history("j"))[0].data == {"k": [2]}


async def test_get_many_answers_in_key_order_with_none_for_missing(store: Store) -> None:
    await store.put("job", "j1", {"n": 1}, status="running")
    await store.put("task", "t1", {"n": 2}, group="j1")
    await store.put("job", "j2", {"n": 3})
    got = await store.get_many(
        [("task", "t1"), ("job", "nope"), ("job", "j1"), ("task", "j1"), ("job", "j2")]
    )
    assert [None if r is None else (r.kind, r.id, r.data, r.status, r.group) for r in got] == [
        ("task", "t1", {"n": 2}, None, "j1"),
        None,
        ("job", "j1", {"n": 1}, "running", None),
        None,
        ("job", "j2", {"n": 3}, None, None),
    ]
    assert got[2] == await store.get("job", "j1")
    assert await store.get_many([]) == []
