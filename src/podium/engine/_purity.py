"""Which handlers are pure decisions: safe to run before the previous transition is written.

The engine may run a *pure* handler inside the write that leads to its state (the start handler inside
``create_job``'s write, the next state's handler inside a task result's write), which saves one durable
write per such step. A pure handler can only compute from what it is given and tell ``actions`` what to
do, so running it early (or again, after a crash) has no effect outside the job's own records.

The check is conservative and reads the bytecode once per handler: a plain function (``def`` or
``async def``) that never awaits, imports, touches globals other than a few side-effect-free builtins,
closes over outer variables, or reaches ``data_stores``; attribute names must come from :data:`_ATTRS`
(the action methods, the context's fields, read/update methods of dicts, lists and strings). Anything
else runs as an ordinary step. Injected values other than ``actions``/``context``/``client`` are JSON
data, so the allowed attribute names cannot reach anything outside the job.
"""

from __future__ import annotations

import dis
import inspect
import types
from collections.abc import Callable
from typing import Any

__all__ = ["is_pure"]

_BUILTINS = frozenset(
    {
        "None", "True", "False", "len", "str", "int", "float", "bool", "dict", "list", "tuple", "set",
        "frozenset", "min", "max", "sum", "sorted", "reversed", "abs", "round", "isinstance", "range",
        "enumerate", "zip", "any", "all",
    }
)  # fmt: skip
_ATTRS = frozenset(
    {
        # ActionFactory
        "go_to", "dispatch_task", "dispatch_parallel", "await_human_approval", "run_blueprint",
        "send_event", "update_context",
        # JobContext / ClientConfig fields
        "job_id", "current_state", "initial_data", "state_history", "client", "actions",
        "aggregation_results", "webhook_url", "token", "plan", "params",
        # dict / list / str methods
        "get", "keys", "values", "items", "copy", "update", "setdefault", "pop", "append", "extend",
        "insert", "index", "count", "format", "join", "split", "strip", "lower", "upper", "startswith",
        "endswith", "replace",
    }
)  # fmt: skip
_PARAMS_FORBIDDEN = frozenset({"data_stores", "task_files", "tracing_context", "policy"})
_OPS_FORBIDDEN = frozenset(
    {
        "GET_AWAITABLE", "SEND", "GET_AITER", "GET_ANEXT", "BEFORE_ASYNC_WITH", "BEFORE_WITH",
        "IMPORT_NAME", "IMPORT_FROM", "IMPORT_STAR", "STORE_GLOBAL", "DELETE_GLOBAL", "LOAD_CLASSDEREF",
        "SETUP_ANNOTATIONS", "PRINT_EXPR",
    }
)  # fmt: skip
_GLOBAL_OPS = frozenset({"LOAD_GLOBAL", "LOAD_NAME", "STORE_NAME", "DELETE_NAME"})
_ATTR_OPS = frozenset({"LOAD_ATTR", "LOAD_METHOD", "STORE_ATTR", "DELETE_ATTR"})


def is_pure(fn: Callable[..., Any], params: tuple[tuple[str, Any], ...] = ()) -> bool:
    """Whether ``fn`` (with its injected ``params``) is a pure decision; see the module docstring."""
    if not isinstance(fn, types.FunctionType) or fn.__code__.co_freevars:
        return False
    if fn.__code__.co_flags & (inspect.CO_GENERATOR | inspect.CO_ASYNC_GENERATOR):
        return False
    if any(name in _PARAMS_FORBIDDEN for name, _ in params):
        return False
    return _code_pure(fn.__code__)


def _code_pure(code: types.CodeType) -> bool:
    for ins in dis.get_instructions(code):
        op = ins.opname
        if op in _OPS_FORBIDDEN:
            return False
        if op in _GLOBAL_OPS and ins.argval not in _BUILTINS:
            return False
        if op in _ATTR_OPS and ins.argval not in _ATTRS:
            return False
    return all(_code_pure(c) for c in code.co_consts if isinstance(c, types.CodeType))
