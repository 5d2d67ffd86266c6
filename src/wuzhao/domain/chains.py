"""Chains of calls, and the loop rule that stops a chain calling one function forever.

Every call belongs to a chain: a call a client makes starts one; a call made
because of another one — a trigger firing on what a function wrote or
published, a destination record, a function invoking another through the
in-function API — continues the chain of the call that caused it. The chain
travels with the call (in ``AsyncCall.origin`` for queued calls, next to the
running invocation for in-function calls), so the rule needs no shared state
and survives restarts with the queue.

The rule: a chain may call the same function at most ``limit`` times
(``FunctionConfig.max_chain_calls``, 16 by default, as on Lambda); the next
call is not made but recorded as ``RecursiveLoop``. A function may opt out
(``recursive_loop: "allow"``). Counting is along the path of causes: fan-out
branches count separately, so a function invoked by 1,000 independent events,
or a pipeline A -> B -> C, is never stopped, while a cycle is, wherever it
closes.
"""

from __future__ import annotations

import uuid
from typing import Any

import msgspec

from wuzhao.domain.functions import FunctionConfig
from wuzhao.errors import RecursiveLoop

DEFAULT_LIMIT = FunctionConfig().max_chain_calls  # 16, as on Lambda
MAX_TRACKED = 256  # functions counted per chain: a path through more is a pipeline, not a loop


class Chain(msgspec.Struct, frozen=True):
    id: str
    hop: int = 0  # calls before this one along the path
    counts: dict[str, int] = msgspec.field(default_factory=dict)  # function -> calls of it so far

    def to_origin(self) -> dict[str, Any]:
        return {"chain": self.id, "hop": self.hop, "counts": dict(self.counts)}


def start(function: str, chain_id: str | None = None) -> Chain:
    """The chain of a call a client made to ``function``."""
    return Chain(id=chain_id or str(uuid.uuid4()), hop=0, counts={function: 1})


def extend(chain: Chain, function: str, *, limit: int | None) -> Chain:
    """The chain of a call to ``function`` caused by a call of ``chain``.

    Raises :class:`RecursiveLoop` when ``function`` was already called ``limit``
    times along it (``limit`` None: the function opted out).
    """
    seen = chain.counts.get(function, 0)
    if limit is not None and seen >= limit:
        raise RecursiveLoop(
            f"function {function!r} was called {seen} times in one chain of calls (chain {chain.id}); "
            f"the limit is {limit}: this looks like a loop, so the next call was not made"
        )
    counts = dict(chain.counts)
    if function in counts or len(counts) < MAX_TRACKED:
        counts[function] = seen + 1
    return Chain(id=chain.id, hop=chain.hop + 1, counts=counts)


def limit_of(config: FunctionConfig) -> int | None:
    """The ``limit`` that ``extend`` applies to calls of a function: None when it opted out."""
    return None if config.recursive_loop == "allow" else config.max_chain_calls


def from_origin(origin: dict[str, Any], call_id: str, function: str) -> Chain:
    """The chain a queued call carries; a call with none (older data) starts its own."""
    chain_id = origin.get("chain")
    if not isinstance(chain_id, str):
        return start(function, call_id)
    raw = origin.get("counts")
    counts = {str(k): int(v) for k, v in raw.items() if isinstance(v, int)} if isinstance(raw, dict) else {}
    hop = origin.get("hop")
    return Chain(id=chain_id, hop=hop if isinstance(hop, int) else 0, counts=counts or {function: 1})
