"""The Gradio internals the demo relies on, in one place, checked when the app is built.

Gradio has no per-client limit, no atomic admission and no hook to keep an upload as the file it came
in, so the demo reaches into it here, and only here:

- ``Queue.push`` runs the validator and then appends the event, with awaits in between: requests that
  arrive together were all validated against the same, empty queue. ``serialize_admission`` makes one
  push (queue-size check, validator, append) finish before the next starts, so the counts a validator
  reads include every request admitted before it.
- ``jobs_by_client`` counts the events waiting in ``Queue.event_queue_per_concurrency_id`` and running
  in ``Queue.active_jobs``.
- ``Blocks.validate_inputs`` answers a call sent fewer values than its event has inputs (a raw HTTP call
  may send any list) with a 400 that lists the components' reprs (``<app.UploadedImage object at 0x...>``).
  ``answer_short_calls`` (installed by ``serialize_admission``) fills in the handler's defaults for the
  missing trailing values (the API's optional arguments, as gradio_client fills them) and otherwise
  answers one sentence naming the arguments. It reads ``Blocks.fns`` and each ``BlockFunction``'s
  ``fn``, ``inputs``, ``input_parameter_names``, ``api_name``, ``validator`` and ``is_validator_function``.
- Template components override ``preprocess`` (``RawValue``, ``ReceivedFile``) and call the base
  class's for anything else; ``save_base64_to_cache`` turns an inline ``data:`` upload into a file.

``check_gradio_internals`` fails loudly, naming what moved, when a Gradio upgrade changes any of these;
the app calls it at start-up and a test calls it too.
"""

from __future__ import annotations

import asyncio
import inspect
import weakref
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gradio as gr
from gradio.helpers import Examples  # the class; gr.Examples is the function that makes one


def check_gradio_internals(demo: gr.Blocks) -> None:
    """Raise RuntimeError naming each internal this module uses that the installed Gradio lacks."""
    queue = getattr(demo, "_queue", None)
    needed = {
        "Blocks._queue": queue is not None,
        "Queue.push": callable(getattr(queue, "push", None)),
        "Queue.event_queue_per_concurrency_id": isinstance(
            getattr(queue, "event_queue_per_concurrency_id", None), dict
        ),
        "Queue.active_jobs": isinstance(getattr(queue, "active_jobs", None), list),
        "Queue.max_size": hasattr(queue, "max_size"),
        "Blocks.validate_inputs": callable(getattr(demo, "validate_inputs", None)),
        "Blocks.fns": isinstance(getattr(demo, "fns", None), dict),
        "BlockFunction's fn, inputs, input_parameter_names, api_name, validator, is_validator_function": all(
            hasattr(f, name) for f in getattr(demo, "fns", {}).values() for name in BLOCK_FUNCTION_FIELDS
        ),
        "processing_utils.save_base64_to_cache": callable(getattr(gr.processing_utils, "save_base64_to_cache", None)),
        "utils.get_upload_folder": callable(getattr(gr.utils, "get_upload_folder", None)),
        "utils.is_in_or_equal": callable(getattr(gr.utils, "is_in_or_equal", None)),
    }
    missing = [name for name, present in needed.items() if not present]
    if missing:
        raise RuntimeError(f"this Gradio ({gr.__version__}) lacks what the demo relies on: {', '.join(missing)}")


BLOCK_FUNCTION_FIELDS = ("fn", "inputs", "input_parameter_names", "api_name", "validator", "is_validator_function")

_locks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = weakref.WeakKeyDictionary()


def _lock_for_running_loop() -> asyncio.Lock:
    """One lock per event loop: a relaunched app (tests) runs in a new loop."""
    loop = asyncio.get_running_loop()
    if loop not in _locks:
        _locks[loop] = asyncio.Lock()
    return _locks[loop]


def serialize_admission(demo: gr.Blocks) -> None:
    """Make each ``Queue.push`` (size check, validator, append) atomic with respect to the others, and
    answer a call sent too few values (``answer_short_calls``)."""
    answer_short_calls(demo)
    queue = demo._queue
    push = queue.push
    if getattr(push, "serialized", False):
        return

    async def serialized_push(*args: Any, **kwargs: Any) -> Any:  # as Queue.push (a Gradio internal)
        async with _lock_for_running_loop():
            return await push(*args, **kwargs)

    serialized_push.serialized = True  # type: ignore[attr-defined]
    queue.push = serialized_push  # type: ignore[method-assign]  # deliberate: the patch this module is for


class ShortCall(gr.Error):
    """A call sent too few values: its sentence, as the 400 of an arriving request and as an event's error."""

    def __init__(self, message: str) -> None:
        super().__init__(message, print_exception=False)

    def __str__(self) -> str:  # Queue.push answers str(error); gr.Error's is its repr
        return self.message


def answer_short_calls(demo: gr.Blocks) -> None:
    """Instead of ``Blocks.validate_inputs``' 400 for a call with fewer values than its event's inputs: the
    handler's defaults for the missing trailing values where it has them, else one sentence, e.g. "the
    /upscale API takes (image, scale[, ground_truth, precision, weights, format, size]); got 1 value".
    The values are filled into the call's own list, which preprocessing, the validator and the handler
    all read."""
    validate = demo.validate_inputs
    if getattr(validate, "answers_short_calls", False):
        return

    def validate_inputs(block_fn: Any, inputs: list[Any]) -> None:
        if isinstance(inputs, list) and len(inputs) < len(block_fn.inputs) and not block_fn.batch:
            handler = _handler_of(demo, block_fn)
            names = list(block_fn.input_parameter_names or [None] * len(block_fn.inputs))
            defaults = _defaults(handler.fn)
            missing = names[len(inputs) :]
            if not all(name in defaults for name in missing):
                raise ShortCall(_takes(handler.api_name, names, defaults, len(inputs)))
            inputs.extend(defaults[name] for name in missing)
        validate(block_fn, inputs)

    validate_inputs.answers_short_calls = True  # type: ignore[attr-defined]
    demo.validate_inputs = validate_inputs  # type: ignore[method-assign]


def _handler_of(demo: gr.Blocks, block_fn: Any) -> Any:
    """The event's own handler: for its validator (which Gradio runs as a function of its own), the
    function it validates for, whose arguments the call is for."""
    if block_fn.is_validator_function:
        return next((f for f in demo.fns.values() if f.validator is block_fn.fn), block_fn)
    return block_fn


def _defaults(fn: Callable | None) -> dict[str, Any]:
    if fn is None:
        return {}
    try:
        parameters = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return {}
    return {p.name: p.default for p in parameters if p.default is not inspect.Parameter.empty}


def _takes(api_name: object, names: list[str | None], defaults: dict[str, Any], got: int) -> str:
    words = [name or f"value {n + 1}" for n, name in enumerate(names)]
    required = max((n + 1 for n, name in enumerate(names) if name not in defaults), default=0)
    shown = ", ".join(words[:required]) + (f"[, {', '.join(words[required:])}]" if required < len(words) else "")
    who = f"the /{api_name} API" if isinstance(api_name, str) and api_name else "this event"
    return f"{who} takes ({shown}); got {got} value{'' if got == 1 else 's'}"


def jobs_by_client(demo: gr.Blocks, address_of: Callable[[Any], str]) -> Counter[str]:
    """Events waiting in the queue or running now, per client address (``address_of(request)``)."""
    queue = demo._queue
    waiting = [e for q in queue.event_queue_per_concurrency_id.values() for e in q.queue]
    running = [e for job in queue.active_jobs if job for e in job]
    return Counter(address_of(e.request) for e in waiting + running if e.request is not None)


# --------------------------------------------------------------------------------------------------
# Uploads kept as the files they came in
# --------------------------------------------------------------------------------------------------


def upload_folder() -> Path:
    """Where Gradio keeps the files requests bring (uploads, inline data, cached examples)."""
    return Path(gr.utils.get_upload_folder())


def is_received(path: str | Path) -> bool:
    """True when ``path`` lies in Gradio's upload folder, i.e. came with a request."""
    return gr.utils.is_in_or_equal(Path(path).resolve(), upload_folder())


def example_inputs(examples: Examples) -> set[Path]:
    """The files an Examples block shows in its inputs. Gradio copies them into its upload folder when the
    block is built, and a visitor who clicks an example (then Upscale) sends those copies back."""
    found: set[Path] = set()

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            if isinstance(value.get("path"), str):
                found.add(Path(value["path"]).resolve())
            for inner in value.values():
                walk(inner)
        elif isinstance(value, (list, tuple)):
            for inner in value:
                walk(inner)

    walk(examples.non_none_processed_examples.as_list())
    return found


def save_inline_upload(url: str) -> str:
    """A ``data:`` URL written to Gradio's upload folder; returns the file's path."""
    return gr.processing_utils.save_base64_to_cache(url, str(upload_folder()))


def base_preprocess(component: gr.components.Component, payload: Any) -> Any:
    """What the template's standard component would make of ``payload``."""
    return super(type(component), component).preprocess(payload)
