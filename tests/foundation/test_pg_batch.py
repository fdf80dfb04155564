"""The PostgreSQL store's group-commit planner (pure): each call checked in order against what the calls
before it left, a refused call changing nothing, and the batch reduced to its net writes."""

from __future__ import annotations

import pytest

from podium.errors import ConflictError, LeaseLostError
from podium.store import Ack, Append, Delete, Dequeue, Enqueue, Lease, Put
from podium.store.base import Op, dump_json
from podium.store.pg_batch import BatchCall, BatchPlan, Fallback, HeldRow, RecordRow, guess_rows, plan_batch


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


def _summary(plan: BatchPlan) -> tuple[object, ...]:
    """What a plan decides: each call's results or error, and the net writes (tokens and seqs are filled
    from the database later in both ways of planning)."""
    outcomes = [
        (type(o).__name__, getattr(o, "actual", None)) if isinstance(o, BaseException) else list(o)
        for o in plan.outcomes
    ]
    return (
        outcomes,
        sorted(plan.record_inserts),
        sorted(plan.record_updates),
        sorted(plan.record_deletes),
        sorted(plan.queue_deletes),
        sorted((i.key, i.leased) for i in plan.queue_inserts),
        [row for _, _, row in plan.appends],
        plan.queues_to_notify,
    )


GUESSED_BATCHES = [
    # versions chain through the batch; a stale call fails alone
    [
        call(Put("job", "a", {"v": 2}, expected_version=1)),
        call(Put("job", "a", {"v": 3}, expected_version=1), Append("a", "lost")),
        call(Put("job", "a", {"v": 3}, expected_version=2), Append("a", "kept")),
        call(Put("job", "b", {}, expected_version=0), Enqueue("q", "b", {})),
    ],
    # a task's result (its item removed) whose call fails (stale after the first), then an ack of that item
    [
        call(Put("job", "j", {}, expected_version=5)),
        call(Put("job", "j", {}, expected_version=5), Dequeue("q", "x"), Append("j", "done")),
        call(Ack(lease("x", 7)), Put("job", "k", {}, expected_version=2)),
        call(Ack(lease("x", 7)), now=120.0),
    ],
    # an enqueue that may find its item, a delete expecting a version, a claim and its result together
    [
        call(Enqueue("q", "t1", {}), Put("task", "t", {}, expected_version=0)),
        call(Delete("job", "old", expected_version=3), Ack(lease("y", 9))),
        call(Put("task", "t", {"r": 1}, expected_version=1), Dequeue("q", "t1")),
    ],
]
REAL_ROWS: list[tuple[dict[tuple[str, str], RecordRow], dict[tuple[str, str], HeldRow]]] = [
    ({}, {}),
    ({("job", "a"): RecordRow(1, 10.0)}, {}),
    ({("job", "a"): RecordRow(2, 10.0)}, {}),
    (
        {("job", "a"): RecordRow(1, 10.0), ("job", "b"): RecordRow(1, 11.0)},
        {("q", "b"): HeldRow(False, 0, 0.0)},
    ),
    (
        {("job", "j"): RecordRow(4, 10.0), ("job", "k"): RecordRow(2, 12.0)},
        {("q", "x"): HeldRow(True, 7, 130.0)},
    ),
    (
        {("job", "j"): RecordRow(5, 10.0), ("job", "k"): RecordRow(2, 12.0)},
        {("q", "x"): HeldRow(True, 7, 130.0)},
    ),
    (
        {("job", "j"): RecordRow(4, 10.0), ("job", "k"): RecordRow(2, 12.0)},
        {("q", "x"): HeldRow(True, 7, 110.0)},
    ),
    (
        {("job", "j"): RecordRow(4, 10.0), ("job", "k"): RecordRow(2, 12.0)},
        {("q", "x"): HeldRow(True, 8, 130.0)},
    ),
    ({("job", "old"): RecordRow(3, 1.0)}, {("q", "y"): HeldRow(True, 9, 130.0)}),
    (
        {("job", "old"): RecordRow(3, 1.0)},
        {("q", "y"): HeldRow(True, 9, 130.0), ("q", "t1"): HeldRow(False, 0, 0.0)},
    ),
    (
        {("job", "old"): RecordRow(3, 1.0), ("task", "t"): RecordRow(1, 2.0)},
        {("q", "y"): HeldRow(True, 9, 130.0)},
    ),
]


@pytest.mark.parametrize("batch", range(len(GUESSED_BATCHES)))
def test_a_plan_on_guessed_rows_that_hold_is_the_plan_on_the_rows(batch: int) -> None:
    calls = GUESSED_BATCHES[batch]
    guess = guess_rows(calls)
    assert guess is not None
    held = 0
    for records, items in REAL_ROWS:
        # rows the batch does not name do not matter to it
        records = {k: v for k, v in records.items() if k in guess.record_versions}
        items = {k: v for k, v in items.items() if k in guess.item_states}
        if not guess.holds(records, items):
            continue
        held += 1
        guessed = plan_batch(calls, guess.records, guess.items)
        guessed.fill_created(
            {key: row.created_at for key, row in records.items() if row.created_at is not None}
        )
        for i, row in enumerate(guessed.record_updates):
            if row[6] is None:  # the write keeps the stored created_at
                guessed.record_updates[i] = (*row[:6], records[(row[0], row[1])].created_at, row[7])
        assert _summary(guessed) == _summary(plan_batch(calls, records, items))
    assert held  # (some rows were as guessed)


def test_no_guess_for_a_write_that_does_not_say_which_version_it_expects() -> None:
    assert guess_rows([call(Put("job", "a", {}))]) is None
    assert guess_rows([call(Put("job", "a", {}, expected_version=1)), call(Delete("job", "b"))]) is None


def test_guessed_rows_do_not_hold_when_the_store_moved_on() -> None:
    guess = guess_rows(
        [call(Put("job", "a", {}, expected_version=1), Enqueue("q", "n", {}), Ack(lease("x", 7)))]
    )
    assert guess is not None
    rows = {("job", "a"): RecordRow(1, 5.0)}
    assert guess.holds(rows, {("q", "x"): HeldRow(True, 7, 130.0)})
    assert not guess.holds({("job", "a"): RecordRow(2, 5.0)}, {("q", "x"): HeldRow(True, 7, 130.0)})
    assert not guess.holds({}, {("q", "x"): HeldRow(True, 7, 130.0)})  # no record
    assert not guess.holds(rows, {("q", "x"): HeldRow(True, 7, 130.0), ("q", "n"): HeldRow(False, 0, 0.0)})
    assert not guess.holds(rows, {("q", "x"): HeldRow(True, 7, 100.0)})  # the lease ran out (now 100)
    assert not guess.holds(rows, {("q", "x"): HeldRow(True, 6, 130.0)})  # taken over
    assert not guess.holds(rows, {})  # gone
