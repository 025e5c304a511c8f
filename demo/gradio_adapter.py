"""The Gradio internals the demo relies on, in one place, checked when the app is built.

Gradio has no per-client limit, no atomic admission and no hook to keep an upload as the file it came
in, so the demo reaches into it here, and only here:

- ``Queue.push`` runs the validator and then appends the event, with awaits in between: requests that
  arrive together were all validated against the same, empty queue. ``serialize_admission`` makes one
  push (queue-size check, validator, append) finish before the next starts, so the counts a validator
  reads include every request admitted before it.
- ``jobs_by_client`` counts the events waiting in ``Queue.event_queue_per_concurrency_id`` and running
  in ``Queue.active_jobs``.
- Template components override ``preprocess`` (``RawValue``, ``ReceivedFile``) and call the base
  class's for anything else; ``save_base64_to_cache`` turns an inline ``data:`` upload into a file.

``check_gradio_internals`` fails loudly, naming what moved, when a Gradio upgrade changes any of these;
the app calls it at start-up and a test calls it too.
"""

from __future__ import annotations

import asyncio
import weakref
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gradio as gr


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
        "processing_utils.save_base64_to_cache": callable(getattr(gr.processing_utils, "save_base64_to_cache", None)),
        "utils.get_upload_folder": callable(getattr(gr.utils, "get_upload_folder", None)),
        "utils.is_in_or_equal": callable(getattr(gr.utils, "is_in_or_equal", None)),
    }
    missing = [name for name, present in needed.items() if not present]
    if missing:
        raise RuntimeError(f"this Gradio ({gr.__version__}) lacks what the demo relies on: {', '.join(missing)}")


_locks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = weakref.WeakKeyDictionary()


def _lock_for_running_loop() -> asyncio.Lock:
    """One lock per event loop: a relaunched app (tests) runs in a new loop."""
    loop = asyncio.get_running_loop()
    if loop not in _locks:
        _locks[loop] = asyncio.Lock()
    return _locks[loop]


def serialize_admission(demo: gr.Blocks) -> None:
    """Make each ``Queue.push`` (size check, validator, append) atomic with respect to the others."""
    queue = demo._queue
    push = queue.push
    if getattr(push, "serialized", False):
        return

    async def serialized_push(*args: Any, **kwargs: Any):
        async with _lock_for_running_loop():
            return await push(*args, **kwargs)

    serialized_push.serialized = True  # type: ignore[attr-defined]
    queue.push = serialized_push


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


def save_inline_upload(url: str) -> str:
    """A ``data:`` URL written to Gradio's upload folder; returns the file's path."""
    return gr.processing_utils.save_base64_to_cache(url, str(upload_folder()))


def base_preprocess(component: gr.components.Component, payload: Any) -> Any:
    """What the template's standard component would make of ``payload``."""
    return type(component).__base__.preprocess(component, payload)
