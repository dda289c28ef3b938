"""The daemon's core: accepts tasks, routes them to upstreams, fans results out.

Everything a gRPC call does is here, in plain Python with plain types, so
service.py only translates messages and errors, and tests can reason about
one object.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import threading
import time
import uuid
from collections.abc import AsyncGenerator, Sequence
from concurrent.futures import Executor, Future
from dataclasses import dataclass, replace

from fxgate_contract.errors import SerializationError
from fxgate_contract.framing import check_packed
from fxgate_contract.states import CancelOutcome, TaskState
from fxgate_contract.strategies import CODE_IDS, DATA_IDS
from gateway import __version__, control, directory, listing
from gateway.config import Settings
from gateway.errors import InvalidRequest, NotFound, TooLarge, shown
from gateway.hub import Hub
from gateway.loglimit import throttled
from gateway.stats import SUBMIT_TASKS, Histogram, Tally
from gateway.store.database import Store
from gateway.store.records import (
    NO_OPTIONS,
    AcceptedIds,
    Completion,
    FunctionRecord,
    GroupInfo,
    GroupSummary,
    NewTask,
    PendingTask,
    TaskEvent,
    TaskOptions,
    TaskSummary,
)
from gateway.task_options import (
    check_cluster_options,
    check_local_options,
    check_options,
    check_registration,
)
from gateway.upstreams.base import ResultSink, Upstream, UpstreamPorts
from gateway.upstreams.cluster.upstream import ClusterUpstream

log = logging.getLogger(__name__)

LOCAL_ALIAS = "local"
REPLAY_PAGE = 2000
# Functions live in their own namespace of uuid5 ids derived from their code.
FUNCTION_NAMESPACE = uuid.UUID("6f1c1f64-7d1e-4b53-9d7e-3f0b1c2a9e11")
# A group the daemon names for a submit that names none, derived from its submit_id,
# so that a retry of that submit finds the same group.
SUBMIT_GROUP_NAMESPACE = uuid.UUID("0b7e3c1a-5f0d-4e8a-9a62-1d4c8f2b7e90")
# Every spelling of a UUID that uuid.UUID reads ("urn:uuid:{...}" is the longest)
# fits in this; a longer id is refused before any work.
MAX_ID_CHARS = 64
# Ids one GetTasks or Cancel may name, and tasks one Submit may carry: far above
# what a client sends (1,024 tasks a call by default), far below what one call
# would make the store and the daemon's memory pay for.
MAX_IDS_PER_CALL = 100_000
MAX_TASKS_PER_SUBMIT = 100_000
# A group's label names it for a person (`fxgate groups`): a name, not a document.
MAX_LABEL_CHARS = 256
# The role a ListEndpoints passes to the service ("owner", "any"): a word, not a document.
MAX_ROLE_CHARS = 64
# result_serializers: import paths of serialization strategies.
MAX_SERIALIZERS = 16
SERIALIZER_PATH = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")


def _canonical_uuid(value: str, what: str) -> str:
    """A UUID in its canonical spelling; InvalidRequest (quoting it bounded) otherwise."""
    if len(value) <= MAX_ID_CHARS and value.isascii():
        try:
            return str(uuid.UUID(value))
        except ValueError:
            pass
    raise InvalidRequest(f"{what} {shown(value)} is not a UUID")


def _check_text(value: str, what: str) -> None:
    """Refuse a NUL character: PostgreSQL's text columns cannot hold one."""
    if "\x00" in value:
        raise InvalidRequest(f"{what} contains a NUL character")


@dataclass(frozen=True)
class Status:
    version: str
    uptime_s: float
    task_groups: int
    tasks: dict[TaskState, int]
    upstreams: list[str]
    quarantined: int
    local_endpoint_id: str
    max_payload_bytes: int
    upstream_status: dict[str, str]
    watchers: int


class Gateway:
    """Owns the store, the hub and the upstreams; one per daemon."""

    def __init__(self, settings: Settings, store: Store, upstreams: dict[str, Upstream]) -> None:
        self.settings = settings
        self.store = store
        self.hub = Hub()
        self.upstreams = upstreams
        self.started = time.time()
        self.local_endpoint_id = ""
        self._functions: dict[str, FunctionRecord] = {}
        self._functions_lock = threading.Lock()
        # For the metrics endpoint (gateway/metrics.py), each under its own lock: tasks
        # per Submit (observed on the call threads), results each upstream reported that
        # were stored (added on the store-writer thread, once per committed batch).
        self.submit_tasks = Histogram(SUBMIT_TASKS)
        self.results_stored = Tally()
        # Cluster endpoints by name and by UUID -> upstream name; written once in start.
        self._clusters: dict[str, str] = {}

    # ------------------------------------------------------------- life
    def start(self) -> None:
        """Open the store, start upstreams and hand them every unfinished task.

        Unfinished tasks are handed over without their payloads, which the
        upstream reads from the store as it sends them: memory does not grow
        with what was queued before the restart.
        """
        self.store.open()
        self.local_endpoint_id = self.store.meta_value(
            "local_endpoint_id", lambda: str(uuid.uuid4())
        )
        for name, upstream in self.upstreams.items():
            if isinstance(upstream, ClusterUpstream):
                if not upstream.endpoint_id:  # made once, kept: clients may hold it
                    upstream.endpoint_id = self.store.meta_value(
                        f"cluster_endpoint_id.{name}", lambda: str(uuid.uuid4())
                    )
                self._clusters[name] = self._clusters[upstream.endpoint_id] = name
        ports = UpstreamPorts(
            self.complete,
            self.function,
            self.store.payloads,
            self.store,
            self.submitted,
            self.running,
        )
        for name, upstream in self.upstreams.items():
            # Nothing runs before its upstream starts: RUNNING from before is queued again.
            self.store.reset_running(name).result()
            upstream.start(replace(ports, sink=self._sink_for(name)))
            resumed = 0
            after = ""
            while page := self.store.unfinished(name, after_id=after):
                upstream.enqueue(page)
                resumed += len(page)
                after = page[-1].task_id
            if resumed:
                log.info("resumed %d unfinished tasks on the %s upstream", resumed, name)

    def stop(self) -> None:
        """Stop upstreams, finish queued writes, end every watch stream."""
        for upstream in self.upstreams.values():
            upstream.stop()
        self.store.close()
        self.hub.close()

    # ---------------------------------------------------------- results
    def _sink_for(self, upstream: str) -> ResultSink:
        """Where one upstream reports results: complete(), counting them as that upstream's."""

        def sink(completions: Sequence[Completion]) -> Future[list[Completion]]:
            return self.complete(completions, upstream=upstream)

        return sink

    def complete(
        self, completions: Sequence[Completion], *, upstream: str = ""
    ) -> Future[list[Completion]]:
        """Commit finished tasks, then publish what changed to the watchers.

        The future resolves after the commit, to the completions that named no
        stored task (the upstream decides whether to keep them). `upstream`:
        the upstream that reported them, whose stored results are counted for
        the metrics; empty for the daemon's own (cancellations).
        """
        out: Future[list[Completion]] = Future()

        def committed(fut: Future[tuple[list[TaskEvent], list[Completion]]]) -> None:
            try:
                events, unknown = fut.result()
            except Exception as exc:  # noqa: BLE001 - handed to the upstream
                throttled(log).error("could not store %d results: %s", len(completions), exc)
                out.set_exception(exc)
                return
            if upstream and events:  # before the watchers hear: they may look at the metrics
                self.results_stored.add(upstream, len(events))
            self.hub.publish(events)
            out.set_result(unknown)

        # committed runs on the store-writer thread, right after the commit.
        self.store.complete(completions).add_done_callback(committed)
        return out

    def submitted(self, group_id: str, upstream_ids: dict[str, str]) -> Future[None]:
        """Record the upstream's ids of a group's tasks; then tell the group's watchers.

        Watchers get a SUBMITTED event per task (seq 0: not a completion), so
        a future learns its upstream task id before its result. Nothing is
        built when nobody watches the group, so the submit path pays nothing
        extra then.
        """
        out: Future[None] = Future()

        def committed(fut: Future[None]) -> None:
            try:
                fut.result()
            except Exception as exc:  # noqa: BLE001 - handed to the upstream
                out.set_exception(exc)
                return
            if self.hub.watched(group_id):
                self.hub.publish(
                    TaskEvent(tid, group_id, TaskState.SUBMITTED, "", "", "", "", up, 0.0, 0)
                    for tid, up in upstream_ids.items()
                )
            out.set_result(None)

        # committed runs on the store-writer thread, right after the commit.
        self.store.mark_submitted(upstream_ids, group_id).add_done_callback(committed)
        return out

    def running(self, started: dict[str, str]) -> Future[None]:
        """Record tasks that started (task id -> group id); then tell their groups' watchers.

        As with SUBMITTED, watchers get a RUNNING event per task (seq 0: it
        finishes nothing), built only for groups someone watches.
        """
        out: Future[None] = Future()

        def committed(fut: Future[int]) -> None:
            try:
                fut.result()
            except Exception as exc:  # noqa: BLE001 - handed to the upstream
                throttled(log).warning("could not record %d started tasks: %s", len(started), exc)
                out.set_exception(exc)
                return
            watched = {g for g in set(started.values()) if self.hub.watched(g)}
            if watched:
                self.hub.publish(
                    TaskEvent(tid, gid, TaskState.RUNNING, "", "", "", "", "", 0.0, 0)
                    for tid, gid in started.items()
                    if gid in watched
                )
            out.set_result(None)

        # committed runs on the store-writer thread, right after the commit.
        self.store.mark_running(started).add_done_callback(committed)
        return out

    # -------------------------------------------------------- functions
    def register_function(self, name: str, code: str, description: str = "", meta: str = "") -> str:
        """A function's id, derived from everything registered with it (the same code with
        another description or another client Python is another function, as at the service)."""
        if not code:
            raise InvalidRequest("function_code is empty")
        _check_text(name, "function_name")
        if len(code) > self.settings.max_payload_bytes:
            raise TooLarge(
                f"function code is {len(code)} bytes, over the limit of "
                f"{self.settings.max_payload_bytes} bytes"
            )
        _check_packed(code, 1, "function_code", CODE_IDS)
        _check_text(code, "function_code")
        check_registration(description, meta)
        digest = hashlib.sha256(code.encode())
        if description or meta:  # code alone keeps the ids earlier versions gave
            digest.update(f"\0{len(description)}:{description}\0{meta}".encode())
        function_id = str(uuid.uuid5(FUNCTION_NAMESPACE, digest.hexdigest()))
        with self._functions_lock:
            known = function_id in self._functions
        if not known:
            record = FunctionRecord(name[:256], code, description, meta)
            self.store.register_function(function_id, record).result()
            with self._functions_lock:
                self._functions[function_id] = record
        return function_id

    def function(self, function_id: str) -> FunctionRecord:
        """A registered function; KeyError if unknown."""
        with self._functions_lock:
            found = self._functions.get(function_id)
        if found is None:
            found = self.store.function_code(function_id)
            if found is None:
                raise KeyError(function_id)
            with self._functions_lock:
                self._functions[function_id] = found
        return found

    # ------------------------------------------------------------ submit
    def route(self, endpoint_id: str) -> tuple[str, str]:
        """(upstream name, canonical endpoint id) for an endpoint id."""
        if endpoint_id == LOCAL_ALIAS:
            return "local", self.local_endpoint_id
        cluster = self._clusters.get(endpoint_id)  # a cluster's name, or its UUID as stored
        if cluster is None and self._clusters:
            try:
                cluster = self._clusters.get(_canonical_uuid(endpoint_id, "endpoint id"))
            except InvalidRequest:
                names = sorted(n for n, u in self.upstreams.items() if n in self._clusters)
                raise NotFound(
                    f"unknown endpoint {shown(endpoint_id)}: not a UUID, 'local' or the "
                    f"name of a cluster endpoint ({', '.join(names)})"
                ) from None
        if cluster is not None:
            upstream = self.upstreams[cluster]
            assert isinstance(upstream, ClusterUpstream)
            return cluster, upstream.endpoint_id
        canonical = _canonical_uuid(endpoint_id, "endpoint id")
        if canonical == self.local_endpoint_id:
            return "local", canonical
        if "globus" in self.upstreams:
            return "globus", canonical
        raise NotFound(
            f"unknown endpoint id {endpoint_id}: this daemon serves only the local endpoint "
            f"('local' or {self.local_endpoint_id}); configure the Globus upstream to reach "
            "Globus Compute endpoints"
        )

    def submit(
        self,
        task_group_id: str,
        endpoint_id: str,
        tasks: Sequence[NewTask],
        submit_id: str,
        result_serializers: Sequence[str],
        options: TaskOptions = NO_OPTIONS,
        label: str = "",
    ) -> Future[tuple[str, list[str]]]:
        """Validate at once (raising), then commit and hand tasks upstream.

        The future resolves to (group id, task ids) after the commit, so a
        caller waits for durability without holding a thread.
        """
        if not tasks:
            raise InvalidRequest("a submit needs at least one task")
        if len(tasks) > MAX_TASKS_PER_SUBMIT:
            raise InvalidRequest(
                f"a submit carries at most {MAX_TASKS_PER_SUBMIT} tasks; this one has {len(tasks)}"
            )
        _check_label(label)
        named = bool(submit_id)
        submit_id = _canonical_uuid(submit_id, "submit_id") if named else str(uuid.uuid4())
        upstream, endpoint = self.route(endpoint_id)
        _check_serializers(result_serializers)
        functions_checked: set[str] = set()
        if options != NO_OPTIONS:
            options = self._shared_options(options, upstream)
        for i, t in enumerate(tasks):
            self._check_task(i, t, upstream, functions_checked)
        if task_group_id:
            group_id = _canonical_uuid(task_group_id, "task group id")
        elif named:  # a retry of this submit must land in the same new group
            group_id = str(uuid.uuid5(SUBMIT_GROUP_NAMESPACE, submit_id))
        else:
            group_id = ""
        # Whether the group exists (and on which upstream) is decided by the
        # store's writer, where concurrent first submits cannot race.
        group = GroupInfo(group_id or str(uuid.uuid4()), upstream, endpoint, None, label)
        serializers = tuple(result_serializers)
        out: Future[tuple[str, list[str]]] = Future()
        # Running, so a caller that goes away cannot cancel it: the commit is
        # under way and its tasks are accepted whether or not anyone hears so.
        out.set_running_or_notify_cancel()

        def committed(accepted: Future[AcceptedIds]) -> None:
            try:
                ids = accepted.result()
            except Exception as exc:  # noqa: BLE001 - the caller's to report
                out.set_exception(exc)
                return
            if not ids.retried:  # a retry's tasks went to the upstream with the first Submit
                pending = self._pending(ids, tasks, group, serializers, options)
                self.upstreams[upstream].enqueue(pending)
            out.set_result((group.id, ids))

        self.submit_tasks.observe(len(tasks))
        # committed runs on the store-writer thread: enqueue must not block (Upstream.enqueue).
        accepted = self.store.accept(group, tasks, submit_id, result_serializers, options)
        accepted.add_done_callback(committed)
        return out

    def _shared_options(self, options: TaskOptions, upstream: str) -> TaskOptions:
        """The one stored object for this option set, checked for the upstream it goes to."""
        # A set seen before was checked then: Submits repeat one set (each
        # carries the client's user_runtime), so most skip the JSON parsing.
        shared = self.store.known_options(options)
        if shared is None:
            check_options(options)
            shared = self.store.share_options(options)  # one object per distinct set
        if upstream == "local":
            check_local_options(shared)
        elif upstream in self._clusters:
            check_cluster_options(shared, upstream)
        return shared

    @staticmethod
    def _pending(
        ids: Sequence[str],
        tasks: Sequence[NewTask],
        group: GroupInfo,
        serializers: tuple[str, ...],
        options: TaskOptions,
    ) -> list[PendingTask]:
        """Accepted tasks as an upstream takes them; one object per distinct function id."""
        functions: dict[str, str] = {}
        return [
            PendingTask(
                tid,
                group.id,
                group.endpoint_id,
                functions.setdefault(t.function_id, t.function_id),
                t.payload,
                serializers,
                options=options,
            )
            for tid, t in zip(ids, tasks, strict=True)
        ]

    def _check_task(self, index: int, task: NewTask, upstream: str, checked: set[str]) -> None:
        """Refuse a task whose payload or function is unusable; `checked`: function ids
        already found good in this submit (each is looked up once, not once per task)."""
        limit = self.settings.max_payload_bytes
        if len(task.payload) > limit:
            raise TooLarge(
                f"task {index}: payload is {len(task.payload)} bytes, over the limit of "
                f"{limit} bytes"
            )
        if task.function_id not in checked:
            self._check_function(index, task.function_id, upstream)
            checked.add(task.function_id)
        _check_packed(task.payload, 2, f"task {index}: payload", DATA_IDS)
        _check_text(task.payload, f"task {index}: payload")

    def _check_function(self, index: int, function_id: str, upstream: str) -> None:
        unknown = NotFound(
            f"task {index}: unknown function id {shown(function_id)}; register it first"
        )
        try:  # function ids are canonical UUIDs: anything else is not looked up
            if _canonical_uuid(function_id, "function id") != function_id:
                raise unknown
            self.function(function_id)
        except InvalidRequest:
            raise unknown from None
        except KeyError:
            # One fxgate never registered: on Globus, the service's own function id,
            # passed through as it is (the Globus upstream sends unknown ids unchanged).
            if upstream != "globus":
                raise NotFound(
                    f"task {index}: unknown function id {shown(function_id)}: not "
                    "registered with fxgate (register it first); a Globus Compute function "
                    f"id runs only on a Globus endpoint, and this is the {upstream} endpoint"
                ) from None

    # ------------------------------------------------------------- reads
    def group(self, group_id: str) -> GroupInfo:
        """A group by fxgate's id or by the id its upstream (Globus) gave it."""
        canonical = _canonical_uuid(group_id, "task group id")
        found = self.store.group(canonical) or self.store.group_by_upstream_id(canonical)
        if found is None:
            raise NotFound(f"unknown task group {group_id}")
        return found

    def task_states(self, group_id: str) -> tuple[GroupInfo, list[tuple[str, int]], dict[str, str]]:
        """The group, (task id, state) of its tasks, and the upstream ids known so far."""
        group = self.group(group_id)
        upstream_ids = self.store.upstream_task_ids(group.id) if group.upstream_group_id else {}
        return group, self.store.task_states(group.id), upstream_ids

    async def watch(
        self, group_id: str, after_seq: int, reads: Executor
    ) -> AsyncGenerator[tuple[list[TaskEvent], bool], None]:
        """Yield (events, replay_done): every stored event after after_seq, then live.

        A stream begins with a SUBMITTED or RUNNING event (seq 0) for each
        task submitted (Globus) or running (local) and not finished, so a
        watcher that connected later still learns upstream ids and starts;
        later ones come live. It ends with NotFound when the group is released.
        Runs on the server's event loop; store reads go to `reads` so that a
        slow database never stalls the other streams. A stream that fell
        behind its bounded live buffer reads from the store again: the seq
        order makes that exact, with nothing missed and nothing sent twice.
        """
        loop = asyncio.get_running_loop()
        group = await loop.run_in_executor(reads, self.group, group_id)
        sub = self.hub.subscribe(group.id, loop)
        last = after_seq  # the seq of the last event this stream yielded
        replayed = False
        try:
            # Released between the lookup and the subscription: end_group came too early.
            if await loop.run_in_executor(reads, self.store.group, group.id) is None:
                raise NotFound(f"task group {group.id} was released")
            # upstream ids assigned (Globus), or tasks started (local), before this stream began
            began = self.store.running_events if group.upstream == "local" else None
            after_id = ""
            while page := await loop.run_in_executor(
                reads, began or self.store.submitted_events, group.id, after_id, REPLAY_PAGE
            ):
                after_id = page[-1].task_id
                yield page, False
            while True:  # one turn: read the store up to now, then live until behind
                page = await loop.run_in_executor(
                    reads, self.store.events_after, group.id, last, REPLAY_PAGE
                )
                if page:
                    last = page[-1].seq
                if len(page) == REPLAY_PAGE:  # more stored after this page
                    yield page, False
                    continue
                if page or not replayed:
                    yield page, not replayed
                    replayed = True
                while (batch := await sub.next_batch()) is not None:
                    events, behind = batch
                    if behind:
                        break  # dropped: read them from the store
                    # seq 0: a SUBMITTED or RUNNING event, outside the seq order (see the hub)
                    fresh = [e for e in events if e.seq > last or not e.seq]
                    if fresh:
                        last = _last_seq(fresh, last)
                        yield fresh, False
                else:
                    return  # the hub closed
        finally:
            sub.close()

    def tasks(self, task_ids: Sequence[str], omit_unknown: bool = False) -> list[TaskEvent]:
        """One event per distinct task named, in the order the ids were first named.

        A task may be named by fxgate's id or by its upstream (Globus) id; ids
        not found as fxgate's are looked up as upstream ids. Unknown ids are
        refused (NotFound), or left out with omit_unknown.
        """
        if len(task_ids) > MAX_IDS_PER_CALL:
            raise InvalidRequest(
                f"a call names at most {MAX_IDS_PER_CALL} task ids; this one names {len(task_ids)}"
            )
        ids = list(dict.fromkeys(_canonical_uuid(t, "task id") for t in task_ids))
        found = {e.task_id: e for e in self.store.tasks(ids)}
        missing = [t for t in ids if t not in found]
        if missing:
            found.update((e.upstream_task_id, e) for e in self.store.tasks_by_upstream_id(missing))
            missing = [t for t in missing if t not in found]
        if missing and not omit_unknown:
            more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
            raise NotFound(f"unknown task ids: {', '.join(missing[:5])}{more}")
        events = (found[t] for t in ids if t in found)
        return list({e.task_id: e for e in events}.values())  # a task named both ways: once

    def cancel(self, task_ids: Sequence[str]) -> list[str]:
        """Cancel tasks (running local ones are stopped); the ids now CANCELLED, sorted."""
        found = self.cancel_tasks(task_ids, stop_running=True)
        return sorted(r.task_id for r in found if r.outcome == CancelOutcome.CANCELLED)

    def cancel_tasks(
        self, task_ids: Sequence[str], stop_running: bool = True
    ) -> list[control.CancelResult]:
        """What a cancel did to each distinct task named (gateway/control.py)."""
        if len(task_ids) > MAX_IDS_PER_CALL:
            raise InvalidRequest(
                f"a call names at most {MAX_IDS_PER_CALL} task ids; this one names {len(task_ids)}"
            )
        return control.cancel(self, task_ids, stop_running)

    def release(self, group_id: str, cancel_unfinished: bool = False) -> int:
        """Forget a group whose tasks all finished; the count of tasks released."""
        return self.release_group(group_id, cancel_unfinished)[0]

    def release_group(self, group_id: str, cancel_unfinished: bool) -> tuple[int, int]:
        """(tasks released, tasks cancelled first): see gateway/control.py."""
        return control.release(self, group_id, cancel_unfinished)

    def list_groups(
        self, page_size: int, page_token: str, group_id: str = ""
    ) -> tuple[list[GroupSummary], str]:
        """A page of task groups, newest first, and the next page's token; given a group
        id (fxgate's or the upstream's), that group alone (NotFound if unknown)."""
        only = self.group(group_id).id if group_id else ""
        return listing.task_groups(self.store, page_size, page_token, only)

    def list_tasks(
        self, group_id: str, state: int, page_size: int, page_token: str
    ) -> tuple[GroupInfo, list[TaskSummary], str]:
        """The group, a page of its tasks (state 0: all), and the next page's token."""
        group = self.group(group_id)
        tasks, token = listing.group_tasks(self.store, group.id, state, page_size, page_token)
        return group, tasks, token

    def collect_garbage(self, dry_run: bool) -> tuple[float, dict[str, int]]:
        """The retention sweep: (cutoff, {group id: tasks}) of the finished groups untouched
        since cutoff, released unless dry_run. The retention thread runs it hourly."""
        cutoff = time.time() - self.settings.retention_days * 86400
        if dry_run:
            return cutoff, self.store.expirable(cutoff)
        return cutoff, self.store.expire(cutoff).result()

    # ----------------------------------------------------------- lookups
    def endpoint_document(self, endpoint_id: str, metadata: bool) -> directory.JSON:
        """An endpoint's status (or metadata) document, as the SDK's Client returns it."""
        upstream, endpoint = self.route(endpoint_id)
        if upstream == "local":
            if metadata:
                return directory.local_metadata(endpoint, self.settings.local_workers)
            return directory.local_status(self.upstreams.get("local"))
        if upstream in self._clusters:
            if metadata:
                return directory.cluster_metadata(endpoint, upstream)
            return directory.local_status(self.upstreams[upstream])
        service = self._service()
        assert service is not None  # route() sends nothing to an upstream that is absent
        if metadata:
            return service.endpoint_metadata(endpoint)
        return service.endpoint_status(endpoint)

    def endpoints(self, role: str) -> directory.JSON:
        """The local endpoint, then the service's endpoints (GET /v2/endpoints)."""
        if len(role) > MAX_ROLE_CHARS:
            raise InvalidRequest(f"role {shown(role)} is longer than {MAX_ROLE_CHARS} characters")
        _check_text(role, "role")
        listed: list[directory.JSON] = [directory.local_listing(self.local_endpoint_id)]
        listed += [
            directory.cluster_listing(u.endpoint_id, u.name)
            for u in self.upstreams.values()
            if isinstance(u, ClusterUpstream)
        ]
        service = self._service()
        if service is not None:
            found = service.endpoints(role)
            listed += found if isinstance(found, list) else [found]
        return listed

    def function_document(self, function_id: str) -> directory.JSON:
        """A function's record: fxgate's own, else the Globus Compute service's."""
        canonical = _canonical_uuid(function_id, "function id")
        return directory.function_record(canonical, self.function, self._service())

    def _service(self) -> directory.ServiceDirectory | None:
        found = self.upstreams.get("globus")
        return found if isinstance(found, directory.ServiceDirectory) else None

    def status(self) -> Status:
        return Status(
            version=__version__,
            uptime_s=time.time() - self.started,
            task_groups=self.store.group_count(),
            tasks=self.store.state_counts(),
            upstreams=sorted(self.upstreams),
            quarantined=self.store.quarantine_count(),
            local_endpoint_id=self.local_endpoint_id,
            max_payload_bytes=self.settings.max_payload_bytes,
            upstream_status={name: u.describe() for name, u in self.upstreams.items()},
            watchers=self.hub.watcher_count(),
        )


def _last_seq(events: Sequence[TaskEvent], last: int) -> int:
    """The seq of the last terminal event among events (SUBMITTED ones carry 0), else last."""
    for e in reversed(events):
        if e.seq:
            return e.seq
    return last


def _check_label(label: str) -> None:
    if len(label) > MAX_LABEL_CHARS:
        raise InvalidRequest(f"label {shown(label)} is longer than {MAX_LABEL_CHARS} characters")
    _check_text(label, "label")


def _check_serializers(paths: Sequence[str]) -> None:
    """result_serializers: a few import paths (stored one a line, so no newline in one)."""
    if len(paths) > MAX_SERIALIZERS:
        raise InvalidRequest(
            f"result_serializers holds {len(paths)} entries; at most {MAX_SERIALIZERS} are allowed"
        )
    for path in paths:
        if len(path) > 256 or not SERIALIZER_PATH.fullmatch(path):
            raise InvalidRequest(f"result_serializers: {shown(path)} is not an import path")


def _check_packed(text: str, pieces: int, what: str, strategy_ids: frozenset[str]) -> None:
    """The shape of a packed buffer, checked without deserializing anything in it."""
    try:
        check_packed(text, pieces, strategy_ids)
    except SerializationError as exc:
        raise InvalidRequest(f"{what} is not a packed Globus Compute buffer: {exc}") from None
