"""A bounded load check of the demo: N clients x M requests of a 256x256 photo at x2, through the raw API.

Starts `python app.py` on a free local port (127.0.0.1 only), sends the requests from N threads (each
client one request at a time, as a person or a script would), and prints p50/p95 latency, refusals,
the server's peak RSS and the growth of Gradio's cache folder. Stops by itself.

    .venv/bin/python benchmarks/load_check.py [--clients 8] [--requests 4]
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

from PIL import Image
from skimage import data

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def photo_data_url(offset: int) -> dict:
    """A 256x256 crop of scikit-image's coffee photo (CC0), a different one per request."""
    image = Image.fromarray(data.coffee()).crop((offset, 50, offset + 256, 306))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return {
        "url": "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode(),
        "meta": {"_type": "gradio.FileData"},
    }


def one_request(url: str, offset: int, client: int) -> tuple[str, float, str]:
    started = time.perf_counter()
    body = json.dumps({"data": [photo_data_url(offset), 2, None, "auto", "auto"]}).encode()
    # Every thread connects from 127.0.0.1, which main() tells the app to trust as a proxy
    # (MDSR_TRUSTED_PROXIES), so each simulated client names its own address (a header value: no traffic
    # leaves the machine). Without it, all clients would be one, and share one client's part of the queue.
    headers = {"Content-Type": "application/json", "X-Forwarded-For": f"192.0.2.{client + 1}"}
    request = urllib.request.Request(f"{url}gradio_api/call/upscale", body, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=600) as response:
            event_id = json.loads(response.read())["event_id"]
        with urllib.request.urlopen(f"{url}gradio_api/call/upscale/{event_id}", timeout=600) as response:
            stream = response.read().decode()
    except urllib.error.HTTPError as err:
        return "refused", time.perf_counter() - started, err.read().decode()[:200]
    kind = "complete" if "event: complete" in stream else "error"
    return kind, time.perf_counter() - started, "" if kind == "complete" else stream[-200:]


def peak_rss_mb(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM")) / 1024


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) if folder.exists() else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--requests", type=int, default=4)
    args = parser.parse_args()
    port = free_port()
    own = tempfile.TemporaryDirectory(prefix="load-check-")  # the app's uploads apart from any other app's
    cache = Path(os.environ.get("GRADIO_TEMP_DIR", own.name))
    env = {
        **os.environ,
        "GRADIO_TEMP_DIR": str(cache),
        "GRADIO_EXAMPLES_CACHE": str(cache / "examples"),
        "MDSR_TRUSTED_PROXIES": "127.0.0.1",
        "GRADIO_SERVER_NAME": "127.0.0.1",
        "GRADIO_SERVER_PORT": str(port),
        "GRADIO_ANALYTICS_ENABLED": "False",
    }
    server = subprocess.Popen(
        [sys.executable, "app.py"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                urllib.request.urlopen(url, timeout=2).close()
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise SystemExit("load_check: the app did not start") from None
                time.sleep(0.5)
        disk_before = folder_bytes(cache)
        results: list[tuple[str, float, str]] = []
        lock = threading.Lock()

        def client(n: int) -> None:
            for r in range(args.requests):
                outcome = one_request(url, 20 * n + 5 * r, n)
                with lock:
                    results.append(outcome)

        started = time.perf_counter()
        threads = [threading.Thread(target=client, args=(n,)) for n in range(args.clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.perf_counter() - started
        rss = peak_rss_mb(server.pid)
        disk_growth = folder_bytes(cache) - disk_before
    finally:
        server.terminate()
        server.wait(timeout=30)
        own.cleanup()
    done = sorted(t for kind, t, _ in results if kind == "complete")
    refused = [m for kind, _, m in results if kind != "complete"]
    q = statistics.quantiles(done, n=20) if len(done) >= 2 else [float("nan")] * 19
    print(f"\n{args.clients} clients x {args.requests} requests (256x256 photo, x2, precision auto) in {wall:.0f} s")
    print(
        "| answered | refused or failed | p50 latency (s) | p95 latency (s) | server peak RSS (MB) | cache growth (MB) |"
    )
    print("| --- | --- | --- | --- | --- | --- |")
    p50 = statistics.median(done) if done else float("nan")
    print(f"| {len(done)} | {len(refused)} | {p50:.1f} | {q[18]:.1f} | {rss:.0f} | {disk_growth / 1e6:.1f} |")
    for message in refused[:3]:
        print("refusal:", message)


if __name__ == "__main__":
    main()
