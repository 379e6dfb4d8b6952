"""Where an import's CPU goes: parsing NDJSON lines, validating every resource with
fhir.resources, mapping and cleaning households. `Readers` runs these pure functions either in
a pool of worker processes (the registry worker: `REGISTRY_IMPORT_PROCESSES`, the machine's
cores by default), so that the worker's event loop and PostgreSQL keep working meanwhile and
a chunk is read on every core, or in the calling process (`processes=0`: the tests' in-process
worker). Both give the same answers: plain tuples (`import_records.to_wire`), cheap to send
between processes.

Each reader process builds the cleaning rules once from a `RulesSource`, freezes what it
imported out of the garbage collector's reach (the collector otherwise walks the ~150,000
objects of the loaded modules several times per chunk) and exits when its parent dies (a
SIGKILLed worker leaves no reader behind).
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import signal
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from datetime import date
from functools import partial
from multiprocessing import get_context
from typing import Any, TypeVar

from registry.cleaning import CleaningRules
from registry.fhir import ACCEPTED_TYPES, label, member_references
from registry.import_records import WireRecord, csv_record, fhir_record, storage_problem, to_wire
from registry.reference import RulesSource

T = TypeVar("T")
NdjsonVerdict = tuple[str | None, str | None, list[dict[str, Any]] | None]
_rules: CleaningRules | None = None  # a reader process's own


class Readers:
    """Runs the reading functions below in `processes` worker processes, or here (0)."""

    def __init__(
        self, rules: CleaningRules, source: RulesSource | None = None, processes: int = 0
    ) -> None:
        self.rules = rules
        self.source = source
        self.processes = processes if source is not None else 0
        self._pool: ProcessPoolExecutor | None = None

    @property
    def slices(self) -> int:
        """How many parts a batch is cut into (one per process)."""
        return max(1, self.processes)

    async def run(self, function: Callable[..., T], *arguments: Any) -> T:
        """`function(rules, *arguments)`, in a reader process when there are any."""
        if not self.processes:
            return function(self.rules, *arguments)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor(), _call, function, arguments)

    async def run_sliced(
        self, function: Callable[..., list[T]], items: Sequence[Any], *arguments: Any
    ) -> list[T]:
        """`function(rules, part, *arguments)` over `items` cut into one part per process,
        concatenated in order."""
        size = -(-len(items) // self.slices)
        parts = [items[start : start + size] for start in range(0, len(items), size or 1)]
        answers = await asyncio.gather(*(self.run(function, part, *arguments) for part in parts))
        return [item for answer in answers for item in answer]

    def _executor(self) -> ProcessPoolExecutor:
        if self._pool is None:
            start: Callable[[], object] = partial(_start_reader, self.source, os.getpid())
            self._pool = ProcessPoolExecutor(
                self.processes, mp_context=get_context("spawn"), initializer=start
            )
        return self._pool

    def close(self) -> None:
        """Stops the reader processes (the next run starts new ones)."""
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None


def _start_reader(source: RulesSource | None, parent: int) -> None:
    global _rules
    assert source is not None
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when readers stop
    _rules = source.build()
    threading.Thread(target=_exit_with, args=(parent,), daemon=True).start()
    gc.freeze()


def _exit_with(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(1)
    os._exit(0)


def _call(function: Callable[..., T], arguments: tuple[Any, ...]) -> T:
    assert _rules is not None
    return function(_rules, *arguments)


# --- what the readers run ---------------------------------------------------------------------


def ndjson_verdicts(rules: CleaningRules, lines: Sequence[tuple[int, str]]) -> list[NdjsonVerdict]:
    """Per NDJSON line: (resource type, id, None) for a Group, Patient or RelatedPerson to
    stage, else (None, id or None, the errors of its report line): malformed JSON, another
    resource type, text PostgreSQL cannot store."""
    return [ndjson_verdict(number, line) for number, line in lines]


def ndjson_verdict(line_number: int, line: str) -> NdjsonVerdict:
    where = f"line {line_number}"
    try:
        resource = json.loads(line)
    except ValueError as error:
        return None, None, [{"field": where, "code": "malformed-json", "message": str(error)[:200]}]
    if not isinstance(resource, dict) or resource.get("resourceType") not in ACCEPTED_TYPES:
        kind = (
            resource.get("resourceType") if isinstance(resource, dict) else type(resource).__name__
        )
        message = f"{kind!r} is not accepted: one of {', '.join(ACCEPTED_TYPES)}"
        return (
            None,
            None,
            [{"field": f"{where}.resourceType", "code": "wrong-resource-type", "message": message}],
        )
    source_id = resource.get("id") if isinstance(resource.get("id"), str) else None
    bad = storage_problem(resource) if "\\u" in line else None
    if bad is not None or (source_id is not None and len(source_id) > 64):
        problem = {
            "field": f"{label(resource)[:80]}.{bad or 'id'}",
            "code": "control-character" if bad else "invalid-id",
            "message": "contains NUL or a lone surrogate" if bad else "id too long",
        }
        return None, source_id and source_id[:64], [problem]
    return str(resource["resourceType"]), source_id, None


def fhir_wire_records(
    rules: CleaningRules,
    groups: Sequence[tuple[int, int, str]],
    staged: Mapping[str, str],
    today: date,
) -> list[WireRecord]:
    """Groups (position, line, JSON) read with the staged resources they reference
    (`Patient/<id>` or `RelatedPerson/<id>` -> JSON)."""
    resources = {reference: json.loads(text) for reference, text in staged.items()}
    records = []
    for position, line, text in groups:
        group = json.loads(text)
        referenced = [resources[ref] for ref in member_references(group) if ref in resources]
        records.append(
            to_wire(fhir_record(position, line, group, resources.get, referenced, rules, today))
        )
    return records


def csv_wire_records(
    rules: CleaningRules,
    households: Sequence[tuple[int, int, str]],
    today: date,
    default_currency: str,
) -> list[WireRecord]:
    """Staged CSV households (position, line, JSON of their lines and rows)."""
    records = []
    for position, _, text in households:
        body = json.loads(text)
        records.append(
            to_wire(
                csv_record(position, body["lines"], body["rows"], rules, today, default_currency)
            )
        )
    return records
