"""The PostgreSQL store's group-commit planner (pure): each call checked in order against what the calls
before it left, a refused call changing nothing, and the batch reduced to its net writes."""

from __future__ import annotations

import math

import pytest

from podium.errors import ConflictError, LeaseLostError
from podium.store import Ack, Append, Delete, Dequeue, Enqueue, Lease, Put, Wake
from podium.store.base import Op, dump_json
from podium.store.pg_batch import BatchCall, Fallback, HeldRow, RecordRow, plan_batch, predict


def call(*ops: Op, now: float = 100.0) -> BatchCall:
    blobs = [
        dump_json(op.data)
        if isinstance(op, Put)
        else dump_json(op.payload)
        if isinstance(op, Enqueue)
        else None
        for op in ops
    ]
    return BatchCall(ops, blobs, now)


def lease(id: str, token: int) -> Lease:
    return Lease("q", id, {}, 0, 1, token, "w", 130.0, 90.0)


def test_versions_chain_through_the_batch_and_a_stale_call_fails_alone() -> None:
    plan = plan_batch(
        [
            call(Put("job", "a", {"v": 2}, expected_version=1)),
            call(Put("job", "a", {"v": 3}, expected_version=1), Append("a", "lost")),  # stale now
            call(Put("job", "a", {"v": 3}, expected_version=2), Append("a", "kept")),
            call(Put("job", "b", {}, expected_version=0)),
        ],
        {("job", "a"): RecordRow(1, 50.0)},
        {},
    )
    first, stale, third, fourth = plan.outcomes
    assert isinstance(first, list) and first[0].version == 2 and first[0].created_at == 50.0
    assert isinstance(stale, ConflictError) and stale.actual == 2
    assert isinstance(third, list) and third[0].version == 3
    assert isinstance(fourth, list) and fourth[0].version == 1 and fourth[0].created_at == 100.0
    # Net writes: one update of a (at version 3), one insert of b, only the kept history line
    assert [(r[1], r[2]) for r in plan.record_updates] == [("a", 3)]
    assert [(r[1], r[2]) for r in plan.record_inserts] == [("b", 1)]
    assert [row[1] for _, _, row in plan.appends] == ["kept"]


def test_queue_items_enqueue_idempotently_and_acks_need_the_live_lease() -> None:
    plan = plan_batch(
        [
            call(Enqueue("q", "new", {"x": 1}), Enqueue("q", "old", {})),
            call(Enqueue("q", "new", {"x": 2})),
            call(Ack(lease("held", 7)), Put("job", "j", {"done": True})),
            call(Ack(lease("held", 7))),  # acked already in this batch
            call(Ack(lease("expired", 3))),
            call(Dequeue("q", "old"), Dequeue("q", "never")),
        ],
        {},
        {
            ("q", "old"): HeldRow(False, 0, 90.0),
            ("q", "held"): HeldRow(True, 7, 130.0),
            ("q", "expired"): HeldRow(True, 3, 99.0),
        },
    )
    enq, again, ack, twice, expired, deq = plan.outcomes
    assert enq == [True, False] and again == [False]
    assert isinstance(ack, list) and ack[0] is None
    assert isinstance(twice, LeaseLostError) and isinstance(expired, LeaseLostError)
    assert deq == [True, False]
    assert sorted(plan.queue_deletes) == [("q", "held"), ("q", "old")]
    assert [item.key for item in plan.queue_inserts] == [("q", "new")]
    assert plan.queues_to_notify == {"q"}


def test_delete_then_create_again_starts_at_version_one() -> None:
    plan = plan_batch(
        [call(Delete("job", "a", expected_version=4)), call(Put("job", "a", {}, expected_version=0))],
        {("job", "a"): RecordRow(4, 10.0)},
        {},
    )
    assert plan.outcomes[0] == [True]
    [update] = plan.record_updates
    assert update[2] == 1 and update[6] == 100.0  # version 1, created now: the row is reused in place


def test_results_get_database_numbers_after_the_writes() -> None:
    plan = plan_batch(
        [call(Enqueue("q", "s1", {}, lease_owner="e", lease_s=5), Append("j", "a"), Append("j", "b"))], {}, {}
    )
    plan.fill_tokens({("q", "s1"): 42})
    plan.fill_seqs([11, 10])
    [results] = plan.outcomes
    assert isinstance(results, list)
    assert results[0].token == 42 and results[0].expires_at == 105.0
    assert [results[1].seq, results[2].seq] == [10, 11]


def test_a_pre_leased_item_removed_in_the_same_batch_falls_back() -> None:
    with pytest.raises(Fallback):
        plan_batch(
            [call(Enqueue("q", "s1", {}, lease_owner="e", lease_s=5)), call(Dequeue("q", "s1"))], {}, {}
        )


# -- planning from what the operations expect (no read first) ------------------------------------------------


def test_predict_takes_each_row_as_its_first_operation_expects_it() -> None:
    calls = [
        call(Put("job", "a", {}, expected_version=3), Enqueue("q", "new", {}), Append("a", "x")),
        call(
            Put("job", "a", {}, expected_version=4), Ack(lease("held", 7))
        ),  # a: chained, not predicted again
        call(Put("job", "b", {}, expected_version=0), Dequeue("q", "old"), Wake("job-end:a")),
    ]
    guess = predict(calls)
    assert guess is not None
    assert guess.records == {("job", "a"): RecordRow(3, guess.records[("job", "a")].created_at)}
    assert math.isnan(guess.records[("job", "a")].created_at)  # the write returns the stored one
    assert guess.items == {("q", "held"): HeldRow(True, 7, math.inf), ("q", "old"): HeldRow(False, 0, 0.0)}
    assert guess.dequeued == [("q", "old")]
    # planned from it: a chains 3 -> 5 as one update, b is an insert, the item a new one, two items go
    plan = plan_batch(calls, guess.records, guess.items)
    assert all(isinstance(o, list) for o in plan.outcomes)
    assert [(r[1], r[2]) for r in plan.record_updates] == [("a", 5)]
    assert [(r[1], r[2]) for r in plan.record_inserts] == [("b", 1)]
    assert sorted(plan.queue_deletes) == [("q", "held"), ("q", "old")]
    assert [i.key for i in plan.queue_inserts] == [("q", "new")]


@pytest.mark.parametrize(
    "ops",
    [
        [Put("job", "a", {})],  # no version named: the row must be read
        [Delete("job", "a", expected_version=1)],
        [Enqueue("q", "i", {}), Dequeue("q", "i")],  # one item, two operations
        [Ack(lease("i", 1)), Enqueue("q", "i", {})],
    ],
    ids=["unversioned-put", "delete", "enqueue-dequeue", "ack-enqueue"],
)
def test_predict_declines_what_the_operations_do_not_say(ops: list[Op]) -> None:
    assert predict([call(*ops[:1]), call(*ops[1:])]) is None
