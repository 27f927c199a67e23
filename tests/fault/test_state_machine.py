"""A hypothesis state machine over the real engine pieces on the real server.

Rules publish actions, read them into workers, run them (succeeding or failing), claim due
retries, renew leases, crash or stop workers, reclaim a dead consumer's entries, trim the
stream below what was delivered (as an operator would), and tidy it. The engine's own steps
are called one at a time (``_read``, ``_run_one``/``_settle``/``_flush``,
``_claim_due_retries``, ``LeaseKeeper.renew``/``release_all``, ``Reclaimer.reclaim_once``,
``tidy_stream``), so every interleaving hypothesis finds is reproducible.

Invariants: an action never vanishes unless the test trimmed it; delivery counts never
decrease (except by one for what a graceful hand-back gives back unstarted); tidying never
drops an entry a group still needs. At the end, after a drain, each
action is in exactly one of: handled (once), dead-lettered (once), or trimmed-and-reported,
and the number reported as ``deleted_while_pending`` is exactly the number trimmed unhandled.
"""

from __future__ import annotations

import asyncio
import json
import os
from typing import Any

import redis.asyncio as aioredis
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from common import BaseRedisClient, BaseWorker, DomainAction
from common.testing import RedisServer, unique_settings
from common.workers.hygiene import tidy_stream
from common.workers.outcome import Delivery
from common.workers.recovery import Reclaimer
from tests.fault.harness import report

MAX_RETRIES = 3
# The visibility timeout is long, so that no live worker's entry could be claimed within an
# example (the reclaimer is shown only the dead consumers' entries: see DeadOnly). Leases
# renew on a short period, so that renewals do happen (and meet trimmed entries).
VISIBILITY_S = 60.0
LEASE_MS = 30

# What the examples reached, summed over a run (printed, so that a reader sees the machine
# did get to trims, reports, dead letters and crashes).
TALLY = {
    "examples": 0,
    "published": 0,
    "handled": 0,
    "dead_lettered": 0,
    "trimmed": 0,
    "reported_deleted": 0,
    "crashes": 0,
}


class PropWorker(BaseWorker):
    """Runs ``prop.do``: succeeds or fails as the machine says, and records successes."""

    outcome_ok = True
    handled: list[str]

    async def _handle_prop_do(self, action: DomainAction) -> dict[str, Any]:
        if not PropWorker.outcome_ok:
            raise RuntimeError("told to fail")
        PropWorker.handled.append(str(action.action_id))
        return {}


class DeadOnly(Reclaimer):
    """The reclaimer as it behaves once the dead consumers' entries have gone idle past the
    visibility timeout and the live ones' have not: it sees only the dead ones'. (Aging them
    with XCLAIM IDLE is no way to get there: Redis 7 drops a deleted entry from the pending
    list when it is claimed, so the reclaimer would never meet a trimmed one.) Its target is
    chosen by the machine, since its workers are not running."""

    def __init__(self, target: PropWorker, dead: set[str]) -> None:
        super().__init__([target])
        self.visibility_ms = 0
        self.dead = dead

    def _target(self) -> PropWorker | None:  # type: ignore[override]
        return self.workers[0]  # type: ignore[return-value]

    def _accepts(self, worker: Any) -> bool:
        return True  # the machine's workers are driven step by step, never "running"

    async def _claim_page(self, target: Any, page: Any) -> int:
        mine = [p for p in page if p["consumer"].decode() in self.dead]
        return await super()._claim_page(target, mine) if mine else 0


class Streams(RuleBasedStateMachine):
    server_url = ""

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.settings = unique_settings(
            redis_url=self.server_url,
            service_name="prop",
            visibility_timeout_s=VISIBILITY_S,
            max_retries=MAX_RETRIES,
            retry_initial_delay_s=0.0,
            retry_max_delay_s=0.0,
            retry_jitter=0.0,
            stream_maxlen=5,
            consumer_idle_timeout_s=0.001,
        )
        self.redis: aioredis.Redis = aioredis.Redis.from_url(self.server_url)
        self.client = BaseRedisClient("api", self.redis, self.settings)
        PropWorker.handled = []
        self.workers: list[PropWorker] = []
        self.queues: dict[str, list[Delivery]] = {}  # consumer -> deliveries to run
        self.every_worker: list[PropWorker] = []  # live and dead, for their counters
        self.dead: set[str] = set()  # consumer names of crashed or stopped workers
        self.published: dict[str, bytes] = {}  # action id -> entry id
        self.trimmed: set[str] = set()  # action ids the test trimmed away
        self.counts: dict[bytes, int] = {}  # highest delivery count seen per entry
        self.attempts: dict[bytes, int] = {}  # highest Delivery.attempt seen per entry

    def run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(coro)

    # -- helpers -----------------------------------------------------------------------------

    def _new_worker(self) -> None:
        worker = PropWorker(self.settings, self.redis, f"w{len(self.every_worker)}")
        worker.leases.visibility_ms = LEASE_MS
        self.run(worker.initialize())
        self.workers.append(worker)
        self.every_worker.append(worker)
        self.queues[worker.consumer] = []

    def _pick(self, index: int) -> PropWorker:
        return self.workers[index % len(self.workers)]

    def _queue(self, worker: PropWorker, deliveries: list[Delivery]) -> None:
        for d in deliveries:
            assert d.attempt >= self.attempts.get(d.entry_id, 0), "attempt went down"
            self.attempts[d.entry_id] = d.attempt
        self.queues[worker.consumer].extend(deliveries)

    def _take_intake(self) -> None:
        for w in self.workers:
            if w.intake:
                self._queue(w, w.intake)
                w.intake = []

    async def _pending(self) -> list[dict[str, Any]]:
        w = self.workers[0]
        return list(await self.redis.xpending_range(w.stream, w.group, "-", "+", 10_000))

    async def _run(self, worker: PropWorker, ok: bool) -> None:
        delivery = self.queues[worker.consumer].pop(0)
        PropWorker.outcome_ok = ok
        worker._settle(delivery, await worker._run_one(delivery))
        await worker._flush()

    # -- rules -------------------------------------------------------------------------------

    @initialize(n=st.integers(1, 3))
    def start(self, n: int) -> None:
        for _ in range(n):
            self._new_worker()

    @rule(n=st.integers(1, 6))
    def publish(self, n: int) -> None:
        actions = [DomainAction(action_type="prop.do") for _ in range(n)]
        ids = self.run(self.client.send_actions_async(actions))
        for action, entry_id in zip(actions, ids, strict=True):
            self.published[str(action.action_id)] = entry_id.encode()

    @rule(w=st.integers(0, 7), count=st.integers(1, 4))
    def read(self, w: int, count: int) -> None:
        worker = self._pick(w)
        self._queue(worker, self.run(worker._read(count, 1)))

    @precondition(lambda self: any(self.queues[w.consumer] for w in self.workers))
    @rule(w=st.integers(0, 7), outcomes=st.lists(st.booleans(), min_size=1, max_size=4))
    def process(self, w: int, outcomes: list[bool]) -> None:
        busy = [x for x in self.workers if self.queues[x.consumer]]
        worker = busy[w % len(busy)]
        for ok in outcomes:
            if self.queues[worker.consumer]:
                self.run(self._run(worker, ok))

    @rule(w=st.integers(0, 7))
    def retry(self, w: int) -> None:
        worker = self._pick(w)
        self._queue(worker, self.run(worker._claim_due_retries()))

    @precondition(lambda self: any(self.queues[w.consumer] for w in self.workers))
    @rule(w=st.integers(0, 7))
    def fail_and_retry(self, w: int) -> None:
        """A poison action: fail, claim the retry, fail again, until the budget is spent."""
        busy = [x for x in self.workers if self.queues[x.consumer]]
        worker = busy[w % len(busy)]
        for _ in range(MAX_RETRIES):
            if not self.queues[worker.consumer]:
                break
            self.run(self._run(worker, False))
            self._queue(worker, self.run(worker._claim_due_retries()))

    @rule(w=st.integers(0, 7))
    def renew(self, w: int) -> None:
        self.run(self._pick(w).leases.renew())

    @rule(w=st.integers(0, 7), graceful=st.booleans())
    def crash(self, w: int, graceful: bool) -> None:
        worker = self._pick(w)
        if graceful:
            # A graceful hand-back gives back the delivery of what was read but never
            # started (so it costs no attempt): those counts go down by one, by design.
            for d in self.queues[worker.consumer]:
                if not d.started:
                    self.counts[d.entry_id] = d.attempt - 1
                    self.attempts[d.entry_id] = d.attempt - 1
            self.run(worker.leases.release_all())
        self.workers.remove(worker)
        self.dead.add(worker.consumer)
        del self.queues[worker.consumer]
        self._new_worker()

    @rule(w=st.integers(0, 7))
    def reclaim(self, w: int) -> None:
        target = self._pick(w)
        self.run(DeadOnly(target, self.dead).reclaim_once())
        self._take_intake()

    @rule(keep=st.integers(0, 2))
    def trim_delivered(self, keep: int) -> None:
        """An operator trims below the last delivered entry (never what is undelivered)."""
        w = self.workers[0]
        groups = self.run(self.redis.xinfo_groups(w.stream))
        last = groups[0]["last-delivered-id"]
        delivered = [e for e in self.run(self.redis.xrange(w.stream, "-", last))]
        if len(delivered) <= keep:
            return
        cut = delivered[len(delivered) - keep][0] if keep else None
        if cut is None:
            ms, seq = last.decode().split("-")
            cut = f"{ms}-{int(seq) + 1}".encode()
        self.run(self.redis.xtrim(w.stream, minid=cut, approximate=False))
        gone = {e for e, _ in delivered if _id(e) < _id(cut)}
        self.trimmed |= {a for a, e in self.published.items() if e in gone}

    @rule()
    def tidy(self) -> None:
        w = self.workers[0]
        before = {e for e, _ in self.run(self.redis.xrange(w.stream))}
        self.run(
            tidy_stream(self.redis, self.settings, w.stream, {x.consumer for x in self.workers})
        )
        after = {e for e, _ in self.run(self.redis.xrange(w.stream))}
        needed = {p["message_id"] for p in self.run(self._pending())}
        last = self.run(self.redis.xinfo_groups(w.stream))[0]["last-delivered-id"]
        needed |= {e for e in before if _id(e) > _id(last)}
        assert not (needed & before) - after, "tidy_stream dropped an entry still needed"
        self.trimmed |= {a for a, e in self.published.items() if e in before - after}

    # -- invariants --------------------------------------------------------------------------

    @invariant()
    def delivery_counts_never_decrease(self) -> None:
        if not self.workers:
            return
        for p in self.run(self._pending()):
            entry, n = p["message_id"], p["times_delivered"]
            assert n >= self.counts.get(entry, 0), f"delivery count of {entry!r} went down"
            self.counts[entry] = n

    @invariant()
    def nothing_vanishes_untrimmed(self) -> None:
        if not self.workers:
            return
        w = self.workers[0]
        in_stream = {e for e, _ in self.run(self.redis.xrange(w.stream))}
        pending = {p["message_id"] for p in self.run(self._pending())}
        handled, dead = set(PropWorker.handled), self._dead_lettered()
        for aid, entry in self.published.items():
            assert (
                aid in handled
                or aid in dead
                or entry in in_stream
                or entry in pending
                or aid in self.trimmed
            ), f"action {aid} vanished"

    def _dead_lettered(self) -> list[str]:
        w = self.workers[0]
        records = self.run(self.redis.xrange(w.dead_letter_stream_name))
        return [json.loads(f[b"original"])["action_id"] for _, f in records]

    # -- the end -----------------------------------------------------------------------------

    def _drain(self) -> None:
        for _ in range(50):
            self._take_intake()
            for w in list(self.workers):
                while self.queues[w.consumer]:
                    self.run(self._run(w, True))
                self._queue(w, self.run(w._claim_due_retries()))
                self._queue(w, self.run(w._read(100, 1)))
            self.run(DeadOnly(self.workers[0], self.dead).reclaim_once())
            self._take_intake()
            if (
                not any(self.queues.values())
                and not any(w._retries for w in self.workers)
                and not self.run(self._pending())
            ):
                return
        raise AssertionError("the drain did not settle")

    def teardown(self) -> None:
        try:
            if self.workers:
                self._drain()
                self._final_check()
        finally:
            self.run(self.client.close())
            self.run(self.redis.aclose())
            self.loop.close()

    def _final_check(self) -> None:
        handled_runs = PropWorker.handled
        handled = set(handled_runs)
        dead_runs = self._dead_lettered()
        dead = set(dead_runs)
        assert len(handled_runs) == len(handled), "an action was handled twice"
        assert len(dead_runs) == len(dead), "an action was dead-lettered twice"
        assert not handled & dead, "an action was both handled and dead-lettered"
        assert not self.run(self._pending())
        unaccounted = set(self.published) - handled - dead
        assert unaccounted <= self.trimmed, "actions lost without being trimmed"
        reported = sum(w.stats.deleted_while_pending for w in self.every_worker)
        for key, n in (
            ("examples", 1),
            ("published", len(self.published)),
            ("handled", len(handled)),
            ("dead_lettered", len(dead)),
            ("trimmed", len(self.trimmed)),
            ("reported_deleted", reported),
            ("crashes", len(self.dead)),
        ):
            TALLY[key] += n
        assert reported == len(unaccounted), (
            f"{len(unaccounted)} trimmed actions were never handled, "
            f"but {reported} were reported deleted while pending"
        )


def _id(entry_id: bytes) -> tuple[int, int]:
    ms, _, seq = entry_id.decode().partition("-")
    return int(ms), int(seq)


def test_streams_state_machine(redis_server: RedisServer) -> None:
    """40 random programs of up to 40 steps (about 20 s). A failure prints its program as
    found: shrinking it on a real server takes minutes, so it only runs when asked for with
    ``FAULT_SHRINK=1``."""
    Streams.server_url = redis_server.url
    phases = [Phase.explicit, Phase.reuse, Phase.generate]
    if os.environ.get("FAULT_SHRINK"):
        phases.append(Phase.shrink)
    run_state_machine_as_test(
        Streams,
        settings=settings(
            max_examples=40,
            stateful_step_count=40,
            deadline=None,
            database=None,
            phases=phases,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )
    report("state machine", **TALLY)
