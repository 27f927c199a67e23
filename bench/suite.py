"""The scenarios: each run of ours and raw alternates (so that drift hits both), on fresh keys,
and the table shows the median over runs."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from typing import Any

import redis.asyncio as aioredis

from bench import crash, declarative, embedded, memory, ours, placement, raw, slow_calls
from bench import metrics as metrics_bench
from bench.report import Row
from bench.serve import Served
from bench.workload import (
    as_plain,
    encode_entries,
    make_actions,
    median,
    new_prefix,
    percentile,
    raw_client,
    raw_stream,
)

__all__ = ["SCENARIOS", "SMOKE", "Sizes", "Suite", "server_version"]

SEQ_BLOCK = 50  # sequential pseudo-sync calls of one side before the other side's turn

Measure = Callable[[], Awaitable[Any]]


@dataclass(frozen=True)
class Sizes:
    runs: int = 3
    drain: int = 30_000  # pre-loaded entries drained per run
    e2e: int = 30_000  # actions through producer + pool per run
    send: int = 10_000  # awaited sends per run
    batch: int = 50_000  # actions sent with send_actions_async per run
    chunk: int = 100  # actions per send_actions_async call / pipeline
    calls: int = 3_000  # sequential pseudo-sync calls per run (after the warm-up)
    warmup: int = 200
    in_flight_calls: int = 20_000  # pseudo-sync calls per run with `in_flight` callers
    in_flight: int = 100
    ps_workers: int = 1  # workers (ours) / loops (raw) answering pseudo-sync calls
    memory: int = 1_000_000  # actions for the RSS scenario (one run)
    memory_workers: int = 4
    embedded_calls: int = 2_000  # sequential pseudo-sync calls on memory:// (after the warm-up)
    embedded_drain: int = 1_000  # pre-loaded actions drained on memory://
    embedded_idle_s: float = 2.0  # idle pool watched for its CPU use
    embedded_workers: int = 4
    queued_calls: int = 100  # pseudo-sync calls queued behind a slow handler
    queued_timeout_s: float = 1.5  # their timeout
    slow_handler_s: float = 0.02  # the slow handler (queued calls, SIGKILL)
    crash_actions: int = 150  # backlog of the SIGKILL scenario
    crash_kill_after: int = 40  # handled actions before the SIGKILL (mid-batch)
    metrics_drain: int = 30_000  # pre-loaded actions drained with metrics on / off
    processes_drain: int = 60_000  # actions drained by run --processes 2 / 1
    cluster: int = 100_000  # actions per run of the cluster scenario (drain and end-to-end)
    cluster_runs: int = 5  # its runs (its shorter ones swing too much on a small machine)


SMOKE = Sizes(
    runs=1,
    drain=500,
    e2e=500,
    send=200,
    batch=500,
    calls=100,
    warmup=10,
    in_flight_calls=300,
    memory=5_000,
    embedded_calls=100,
    embedded_idle_s=0.5,
    crash_actions=60,
    crash_kill_after=20,
    metrics_drain=500,
    processes_drain=500,
    cluster=500,
    cluster_runs=1,
)

EMBEDDED_P50_MS = 5.0  # budget of a pseudo-sync round trip on memory://
EMBEDDED_DRAIN_MS = 1000.0  # the drain is measured against a second
EMBEDDED_IDLE_CORE = 1.0  # idle CPU as a share of one core


class Suite:
    def __init__(
        self,
        url: str,
        sizes: Sizes,
        uvloop: bool,
        log: Callable[[str], None],
        redis_pid: int | None = None,
    ) -> None:
        self.url = url
        self.sizes = sizes
        self.uvloop = uvloop
        self.log = log
        self.redis_pid = redis_pid
        self.placement = placement.plan()

    async def _flush(self) -> None:
        redis = raw_client(self.url)
        try:
            await redis.flushdb()
        finally:
            await redis.aclose()

    async def _runs(self, measures: dict[str, Measure], flush: bool = True) -> dict[str, list[Any]]:
        """Run every measure once per run, in turn; return each one's results."""
        results: dict[str, list[Any]] = {name: [] for name in measures}
        for run in range(self.sizes.runs):
            for name, measure in measures.items():
                if flush:
                    await self._flush()
                results[name].append(await measure())
                self.log(f"  run {run + 1}/{self.sizes.runs} {name}: {_short(results[name][-1])}")
        return results

    async def drain(self) -> list[Row]:
        s = self.sizes
        self.log(f"drain: {s.drain} pre-loaded actions")
        entries = encode_entries(make_actions(s.drain))
        url = self.url

        def ours_drain(workers: int) -> Measure:
            return lambda: ours.drain(url, new_prefix(), entries, workers)

        def raw_drain(loops: int, per_message_ack: bool = False) -> Measure:
            return lambda: raw.drain(url, raw_stream(new_prefix()), entries, loops, per_message_ack)

        r = await self._runs(
            {
                "ours_1": ours_drain(1),
                "raw_1": raw_drain(1),
                "ours_4": ours_drain(4),
                "raw_4": raw_drain(4),
                "raw_ack_each": raw_drain(1, per_message_ack=True),
            }
        )
        m = {name: median(values) for name, values in r.items()}
        return [
            Row(
                "drain_1",
                "drain, 1 worker / raw loop, batch XACK",
                "msg/s",
                m["ours_1"],
                m["raw_1"],
                target=0.40,
                detail={"runs": r},
            ),
            Row(
                "drain_4",
                "drain, 4 workers in 1 process / 4 raw loops",
                "msg/s",
                m["ours_4"],
                m["raw_4"],
                target=0.40,
            ),
            Row(
                "drain_ref_ack_each",
                "drain, 1 worker / raw loop, XACK each (ref)",
                "msg/s",
                m["ours_1"],
                m["raw_ack_each"],
            ),
        ]

    async def end_to_end(self) -> list[Row]:
        s = self.sizes
        self.log(f"end-to-end: {s.e2e} actions, producer ({s.chunk}/call) and 1 worker at once")
        actions = make_actions(s.e2e)
        docs = as_plain(actions)
        url = self.url
        r = await self._runs(
            {
                "ours": lambda: ours.end_to_end(url, new_prefix(), actions, s.chunk),
                "raw": lambda: raw.end_to_end(url, raw_stream(new_prefix()), docs, s.chunk),
            }
        )
        return [
            Row(
                "end_to_end",
                f"end-to-end, producer ({s.chunk}/call) + 1 worker",
                "msg/s",
                median(r["ours"]),
                median(r["raw"]),
                detail={"runs": r},
            ),
        ]

    async def send(self) -> list[Row]:
        s = self.sizes
        self.log(f"send: {s.send} awaited one by one, {s.batch} in calls of {s.chunk}")
        awaited = make_actions(s.send)
        batch = make_actions(s.batch)
        awaited_docs, batch_docs = as_plain(awaited), as_plain(batch)
        url = self.url
        r = await self._runs(
            {
                "ours_awaited": lambda: ours.send_awaited(url, new_prefix(), awaited),
                "raw_awaited": lambda: raw.send_awaited(
                    url, raw_stream(new_prefix()), awaited_docs
                ),
                "ours_batch": lambda: ours.send_batched(url, new_prefix(), batch, s.chunk),
                "raw_batch": lambda: raw.send_pipelined(
                    url, raw_stream(new_prefix()), batch_docs, s.chunk
                ),
            }
        )
        return [
            Row(
                "send_awaited",
                "send_action_async awaited / XADD awaited",
                "msg/s",
                median(r["ours_awaited"]),
                median(r["raw_awaited"]),
                target=0.80,
                detail={"runs": {k: v for k, v in r.items() if "awaited" in k}},
            ),
            Row(
                "send_batch",
                f"send_actions_async ({s.chunk}/call) / pipelined XADD",
                "msg/s",
                median(r["ours_batch"]),
                median(r["raw_batch"]),
                target=0.50,
                detail={"runs": {k: v for k, v in r.items() if "batch" in k}},
            ),
        ]

    async def pseudo_sync(self) -> list[Row]:
        """Both worker processes run side by side; ours and raw take turns."""
        s = self.sizes
        self.log(
            f"pseudo-sync: {s.calls} sequential calls, {s.in_flight_calls} with {s.in_flight} "
            f"in flight; workers in another process ({s.ps_workers} each)"
        )
        await self._flush()
        url, prefix = self.url, new_prefix()
        stream = raw_stream(prefix)
        uvloop, workers = self.uvloop, s.ps_workers
        where = self.placement
        self.log(f"  sequential calls pinned: {where.describe()}" if where else "  not pinned")
        async with (
            Served("ours", url, prefix, uvloop=uvloop, workers=workers) as ours_worker,
            Served("raw", url, prefix, uvloop=uvloop, workers=workers) as raw_worker,
        ):
            worker_pids = (ours_worker.pid, raw_worker.pid)

            async def sequential() -> dict[str, list[float]]:
                with placement.pinned(where, self.redis_pid, worker_pids):
                    return await self._sequential(prefix)

            r = await self._runs(
                {
                    "seq": sequential,
                    "ours_in_flight": lambda: ours.pseudo_sync_in_flight(
                        url, prefix, make_actions(s.in_flight_calls), s.in_flight
                    ),
                    "raw_in_flight": lambda: raw.pseudo_sync_in_flight(
                        url, stream, as_plain(make_actions(s.in_flight_calls)), s.in_flight
                    ),
                },
                flush=False,
            )
        seq = {side: [run[side] for run in r["seq"]] for side in ("ours", "raw")}
        ms = {
            side: {
                "p50": median([percentile(run, 0.50) * 1000 for run in runs]),
                "p99": median([percentile(run, 0.99) * 1000 for run in runs]),
            }
            for side, runs in seq.items()
        }
        throughput = {k: v for k, v in r.items() if "in_flight" in k}
        return [
            Row(
                "pseudo_sync_p50",
                "pseudo-sync sequential p50",
                "ms",
                ms["ours"]["p50"],
                ms["raw"]["p50"],
                target=1.5,
                lower_is_better=True,
                detail={
                    "p50_runs_ms": {
                        side: [percentile(run, 0.5) * 1000 for run in runs]
                        for side, runs in seq.items()
                    },
                    "block": SEQ_BLOCK,
                    "pinned": where.describe() if where else None,
                },
            ),
            Row(
                "pseudo_sync_p99",
                "pseudo-sync sequential p99",
                "ms",
                ms["ours"]["p99"],
                ms["raw"]["p99"],
                lower_is_better=True,
            ),
            Row(
                "pseudo_sync_in_flight",
                f"pseudo-sync, {s.in_flight} in flight",
                "call/s",
                median(r["ours_in_flight"]),
                median(r["raw_in_flight"]),
                target=0.70,
                detail={"runs": throughput},
            ),
        ]

    async def _sequential(self, prefix: str) -> dict[str, list[float]]:
        """Sequential calls of ours and raw, alternating in blocks of ``SEQ_BLOCK`` calls so
        that both see the same machine load; latencies (s) after the warm-up."""
        s, url = self.sizes, self.url
        actions = make_actions(s.warmup + s.calls)
        docs = as_plain(make_actions(s.warmup + s.calls))
        latencies: dict[str, list[float]] = {"ours": [], "raw": []}
        async with ours.caller(url, prefix) as client, raw.caller(url, raw_stream(prefix)) as rc:
            await ours.sequential_calls(client, actions[: s.warmup])
            await raw.sequential_calls(rc, docs[: s.warmup])
            for i in range(s.warmup, s.warmup + s.calls, SEQ_BLOCK):
                latencies["ours"] += await ours.sequential_calls(client, actions[i : i + SEQ_BLOCK])
                latencies["raw"] += await raw.sequential_calls(rc, docs[i : i + SEQ_BLOCK])
        return latencies

    async def memory(self) -> list[Row]:
        s = self.sizes
        self.log(f"memory: {s.memory} actions through a {s.memory_workers}-worker process")
        await self._flush()
        result = await memory.measure(self.url, s.memory, s.memory_workers, self.uvloop)
        await self._flush()
        label = f"worker RSS, {s.memory:,} actions ({s.memory_workers} workers)"
        return [
            Row(
                "memory",
                label,
                "MiB",
                result["end_mb"],
                None,
                target=1.10,
                lower_is_better=True,
                ratio=result["end_over_start"],
                ratio_of="end/start",
                detail=result,
            ),
        ]

    async def embedded(self) -> list[Row]:
        """memory://: no server process, every figure against its budget (no raw side)."""
        s = self.sizes
        self.log(
            f"embedded memory://: {s.embedded_calls} sequential pseudo-sync calls, "
            f"{s.embedded_drain} actions drained, idle pool for {s.embedded_idle_s:g}s "
            f"({s.embedded_workers} workers)"
        )
        workers = s.embedded_workers
        r = await self._runs(
            {
                "pseudo_sync": lambda: embedded.pseudo_sync_latencies(
                    s.embedded_calls, s.warmup, workers
                ),
                "drain": lambda: embedded.drain_rate(s.embedded_drain, workers),
                "idle": lambda: embedded.idle_cpu(s.embedded_idle_s, workers),
            },
            flush=False,
        )
        p50 = median([percentile(run, 0.50) * 1000 for run in r["pseudo_sync"]])
        p99 = median([percentile(run, 0.99) * 1000 for run in r["pseudo_sync"]])
        drain_ms = s.embedded_drain / median(r["drain"]) * 1000
        idle_ms = median([run["cpu_ms"] for run in r["idle"]])
        idle_share = idle_ms / 1000 / s.embedded_idle_s / EMBEDDED_IDLE_CORE
        return [
            Row(
                "embedded_pseudo_sync_p50",
                "memory:// pseudo-sync sequential p50",
                "ms",
                p50,
                None,
                target=1.0,
                lower_is_better=True,
                ratio=p50 / EMBEDDED_P50_MS,
                ratio_of=f"of {EMBEDDED_P50_MS:g} ms",
                detail={"p50_runs_ms": [percentile(run, 0.5) * 1000 for run in r["pseudo_sync"]]},
            ),
            Row(
                "embedded_pseudo_sync_p99",
                "memory:// pseudo-sync sequential p99",
                "ms",
                p99,
                None,
                lower_is_better=True,
                ratio=p99 / EMBEDDED_P50_MS,
                ratio_of=f"of {EMBEDDED_P50_MS:g} ms",
            ),
            Row(
                "embedded_drain",
                f"memory:// drain of {s.embedded_drain:,} actions ({workers} workers)",
                "ms",
                drain_ms,
                None,
                target=0.25,
                lower_is_better=True,
                ratio=drain_ms / EMBEDDED_DRAIN_MS,
                ratio_of="of 1 s",
                detail={"runs_msg_per_s": r["drain"]},
            ),
            Row(
                "embedded_idle_cpu",
                f"memory:// idle pool CPU over {s.embedded_idle_s:g} s ({workers} workers)",
                "ms",
                idle_ms,
                None,
                target=0.05,
                lower_is_better=True,
                ratio=idle_share,
                ratio_of="of a core",
                detail={"runs": r["idle"]},
            ),
        ]

    async def slow_calls(self) -> list[Row]:
        """Pseudo-sync calls queued behind a slow handler: how many are answered in time."""
        s = self.sizes
        handler_ms, timeout = s.slow_handler_s * 1000, s.queued_timeout_s
        self.log(
            f"slow calls: {s.queued_calls} pseudo-sync calls ({timeout:g} s timeout) queued "
            f"behind a {handler_ms:g} ms handler, 1 worker, batch 100, concurrency 1"
        )
        url = self.url
        r = await self._runs(
            {
                "queued": lambda: slow_calls.queued_calls(
                    url, new_prefix(), s.queued_calls, s.slow_handler_s, timeout
                )
            }
        )
        runs = r["queued"]
        servable = min(s.queued_calls, round(timeout / s.slow_handler_s))
        answered = median([run["answered"] for run in runs])
        first = median([run["first_settled_ms"] for run in runs])
        label = f"{s.queued_calls} pseudo-sync calls queued behind a {handler_ms:g} ms handler"
        return [
            Row(
                "slow_calls_answered",
                f"{label}: answered within {timeout:g} s",
                "calls",
                answered,
                None,
                target=0.75,
                ratio=answered / servable,
                ratio_of=f"of {servable} servable",
                detail={"runs": runs},
            ),
            Row(
                "slow_calls_first_reply",
                f"{label}: first reply",
                "ms",
                first,
                None,
                target=0.10,
                lower_is_better=True,
                ratio=first / (timeout * 1000),
                ratio_of=f"of {timeout:g} s",
            ),
        ]

    async def sigkill(self) -> list[Row]:
        """A worker process SIGKILLed mid-batch with 20 ms handlers; a second one finishes."""
        s = self.sizes
        self.log(
            f"sigkill: {s.crash_actions} actions, {s.slow_handler_s * 1000:g} ms handlers, "
            f"worker process SIGKILLed after {s.crash_kill_after}, a second one finishes"
        )
        url, uvloop = self.url, self.uvloop
        r = await self._runs(
            {
                "crash": lambda: crash.sigkill_duplicates(
                    url,
                    new_prefix(),
                    s.crash_actions,
                    s.crash_kill_after,
                    s.slow_handler_s,
                    uvloop=uvloop,
                )
            }
        )
        runs = r["crash"]
        duplicates = median([run["duplicates"] for run in runs])
        at_kill = median([run["handled_at_kill"] for run in runs])
        lost = max(run["lost"] for run in runs)  # any loss counts, not the median
        return [
            Row(
                "sigkill_duplicates",
                f"SIGKILL mid-batch, {s.slow_handler_s * 1000:g} ms handlers: duplicate runs",
                "runs",
                duplicates,
                None,
                target=0.10,
                lower_is_better=True,
                ratio=duplicates / at_kill,
                ratio_of=f"of {at_kill:g} handled before",
                detail={"runs": runs},
            ),
            Row(
                "sigkill_lost",
                f"SIGKILL mid-batch, {s.slow_handler_s * 1000:g} ms handlers: lost actions",
                "actions",
                lost,
                None,
                target=0.0,
                lower_is_better=True,
                ratio=lost / s.crash_actions,
                ratio_of="of all",
                detail={"lost_runs": [run["lost"] for run in runs]},
            ),
        ]

    async def cluster(self) -> list[Row]:
        """Drain and end-to-end on a local 3-master cluster, P = 1 and 6 (see bench/cluster.py).
        It starts a cluster of its own, so it runs only when asked for (``--only cluster``)."""
        from bench import cluster

        sizes = self.sizes
        return await cluster.rows(self.url, sizes.cluster, sizes.cluster_runs, 2, self.log)

    async def run(self, only: set[str] | None = None) -> list[Row]:
        scenarios: dict[str, Callable[[], Awaitable[list[Row]]]] = {
            "drain": self.drain,
            "end_to_end": self.end_to_end,
            "send": self.send,
            "pseudo_sync": self.pseudo_sync,
            "memory": self.memory,
            "embedded": self.embedded,
            "slow_calls": self.slow_calls,
            "sigkill": self.sigkill,
            "declarative": lambda: declarative.scenario(self),
            "metrics": lambda: metrics_bench.scenario_metrics(self),
            "processes": lambda: metrics_bench.scenario_processes(self),
            "cluster": self.cluster,
        }
        rows: list[Row] = []
        for name, scenario in scenarios.items():
            if (only is None and name != "cluster") or (only is not None and name in only):
                rows += await scenario()
        return rows


SCENARIOS = (
    "drain",
    "end_to_end",
    "send",
    "pseudo_sync",
    "memory",
    "embedded",
    "slow_calls",
    "sigkill",
    "declarative",
    "metrics",
    "processes",
    "cluster",
)


def sizes_dict(sizes: Sizes) -> dict[str, Any]:
    return asdict(sizes)


def _short(value: Any) -> str:
    if isinstance(value, dict):
        return ", ".join(
            f"{k} {v:.1f}" if k.endswith("_ms") and isinstance(v, float) else f"{k} {_short(v)}"
            for k, v in value.items()
        )
    if value is None or isinstance(value, bool | int | str):
        return str(value)
    if isinstance(value, list):
        return f"p50 {percentile(value, 0.5) * 1000:.3f} ms over {len(value)} calls"
    return f"{value:,.0f}/s"


async def server_version(redis: aioredis.Redis) -> str:
    info = await redis.info("server")
    return str(info.get("redis_version"))
