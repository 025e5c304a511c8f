"""The public demo against a hostile caller: raw HTTP calls to a live app on 127.0.0.1 that name server
files, smuggle oversized data: URLs, send malformed scales or ask for too much work."""

from __future__ import annotations

import ipaddress
import json
import threading
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest
from conftest import ROOT, call, data_url, limited, running_app, submit
from sample_files import photo

from demo import clients
from mdsr import serving
from mdsr.sizing import Target

EXAMPLES = ROOT / "examples"


@pytest.fixture(scope="module")
def url():
    with running_app() as address:
        yield address


@pytest.mark.parametrize("path", [str(EXAMPLES / "astronaut_lr_x4.png"), "/etc/hostname", "/nonexistent.png", "/tmp"])
def test_a_server_path_as_the_image_is_refused_without_saying_whether_it_exists(url, path):
    event, message = call(url, [{"path": path}, 2, None, "auto"])
    assert event == "error" and "only files uploaded with the request" in message


def test_a_server_path_as_the_ground_truth_is_refused(url):
    event, message = call(url, [data_url(photo((40, 30))), 2, {"path": str(EXAMPLES / "chelsea.png")}, "auto"])
    assert event == "error" and "only files uploaded with the request" in message


def test_a_data_url_over_the_byte_limit_is_refused(url, monkeypatch):

    limited(monkeypatch, file_bytes=50_000)
    event, message = call(url, [data_url(photo((40, 30)), padding=60_000), 2, None, "auto"])
    assert event == "error" and "the limit is 50,000 bytes" in message


def test_a_data_url_within_the_limit_is_upscaled(url):
    event, payload = call(url, [data_url(photo((40, 30))), 2, None, "auto"])
    assert event == "complete" and json.loads(payload)[1]["width"] == 80


@pytest.mark.parametrize("scale", ["2", None, "abc", [2], "NaN", True, 0, 1.05, 8.5, 100])
def test_a_malformed_scale_names_the_allowed_values(url, scale):
    event, message = call(url, [data_url(photo((40, 30))), scale, None, "auto"])
    assert event == "error" and "the scale must be" in message and "from 1.1 to 8" in message


def test_the_ground_truth_is_optional_in_the_api(url):
    from gradio_client import Client

    info = Client(url, verbose=False).view_api(return_format="dict", print_info=False)
    params = {p["parameter_name"]: p for p in info["named_endpoints"]["/upscale"]["parameters"]}
    assert params["ground_truth"]["parameter_has_default"] and params["ground_truth"]["parameter_default"] is None


def test_self_ensemble_work_is_bounded_with_a_message_that_states_the_limit(tmp_path):
    photo((1000, 800)).save(tmp_path / "big.png")  # x2: 2000x1600 output pixels, x 8 passes
    request = serving.Request((serving.Item("big.png", str(tmp_path / "big.png")),), Target(factor=2), self_ensemble=True)
    with pytest.raises(serving.RefusedError, match=r"2000x1600 output pixels x 8 passes \(self-ensemble\) = 25,600,000; the limit"):
        serving.admit(request, serving.DEMO_LIMITS, resident=450)


def test_one_client_cannot_queue_more_than_its_share(url):
    import app

    image = data_url(photo((200, 150)))
    answers = []
    for _ in range(app.LIMITS.jobs_per_client + 1):  # sent at once: the first still runs when the last arrives
        try:
            with urllib.request.urlopen(submit(url, [image, 4, None, "auto"]), timeout=600) as response:
                answers.append(("queued", json.loads(response.read())["event_id"]))
        except urllib.error.HTTPError as err:
            answers.append(("refused", err.read().decode()))
    assert [kind for kind, _ in answers] == ["queued"] * app.LIMITS.jobs_per_client + ["refused"]
    assert f"you already have {app.LIMITS.jobs_per_client} requests waiting or running" in answers[-1][1]
    for _, event_id in answers[:-1]:  # the admitted ones still finish
        with urllib.request.urlopen(f"{url}gradio_api/call/upscale/{event_id}", timeout=1200) as response:
            assert "event: complete" in response.read().decode()


def burst(url: str, bodies: list[tuple[list, str]]) -> list[tuple[str, str]]:
    """Send every (data, X-Forwarded-For) at the same moment from its own thread; ("queued", event id) or
    ("refused", message) for each."""
    barrier = threading.Barrier(len(bodies))

    def send(body: tuple[list, str]) -> tuple[str, str]:
        request = submit(url, body[0])
        request.add_header("X-Forwarded-For", body[1])
        barrier.wait()
        try:
            with urllib.request.urlopen(request, timeout=1200) as response:
                return "queued", json.loads(response.read())["event_id"]
        except urllib.error.HTTPError as err:
            return "refused", err.read().decode()

    with ThreadPoolExecutor(len(bodies)) as pool:
        return list(pool.map(send, bodies))


def wait_for(url: str, event_ids: list[str]) -> None:
    for event_id in event_ids:
        with urllib.request.urlopen(f"{url}gradio_api/call/upscale/{event_id}", timeout=1200) as response:
            assert "event: complete" in response.read().decode()


@pytest.fixture
def busy_app(monkeypatch):
    """A fresh app whose model is busy with one slow request from 198.51.100.1 while a test sends more;
    requests say who they are for with X-Forwarded-For, believed from this machine's loopback proxy."""
    import app

    monkeypatch.setattr(app, "trusted_proxies", lambda: (ipaddress.ip_network("127.0.0.0/8"),))
    with running_app() as address:
        slow = burst(address, [([data_url(photo((400, 300))), 4, None, "fp32"], "198.51.100.1")])
        yield address
        wait_for(address, [slow[0][1]])


def test_simultaneous_requests_from_one_client_are_admitted_up_to_its_share(busy_app):
    import app

    small = [data_url(photo((32, 24))), 2, None, "auto"]
    answers = burst(busy_app, [(small, "198.51.100.1")] * 16)
    queued = [event for kind, event in answers if kind == "queued"]
    assert len(queued) == app.LIMITS.jobs_per_client - 1  # the slow request holds one of its places
    refused = [message for kind, message in answers if kind == "refused"]
    assert all(f"you already have {app.LIMITS.jobs_per_client} requests waiting or running" in m for m in refused)
    wait_for(busy_app, queued)


def test_simultaneous_requests_from_many_clients_are_admitted_up_to_the_queue_size(busy_app):
    import app

    small = [data_url(photo((32, 24))), 2, None, "auto"]
    answers = burst(busy_app, [(small, f"203.0.113.{n}") for n in range(1, 25)])
    queued = [event for kind, event in answers if kind == "queued"]
    assert len(queued) == app.LIMITS.jobs - 1
    assert all("the demo is busy" in message for kind, message in answers if kind == "refused")
    wait_for(busy_app, queued)


def test_off_a_space_a_local_caller_cannot_take_other_addresses_with_x_forwarded_for(monkeypatch):
    import app

    monkeypatch.setattr(app, "trusted_proxies", lambda: ())  # off a Space, MDSR_TRUSTED_PROXIES unset
    small = [data_url(photo((32, 24))), 2, None, "auto"]
    with running_app() as url:
        answers = burst(url, [(small, f"203.0.113.{n}") for n in range(1, app.LIMITS.jobs_per_client + 3)])
        queued = [event for kind, event in answers if kind == "queued"]
        assert len(queued) <= app.LIMITS.jobs_per_client  # all from 127.0.0.1, whatever the header says
        wait_for(url, queued)


LOOPBACK = (ipaddress.ip_network("127.0.0.0/8"),)
SPACE_PROXY = clients.trusted_proxies({"SPACE_ID": "someone/mdsr"})


def test_behind_a_trusted_proxy_the_client_is_the_address_the_proxy_added():
    assert clients.client_address("10.1.2.3", "6.6.6.6, 203.0.113.7", SPACE_PROXY) == "203.0.113.7"


def test_a_peer_that_is_no_trusted_proxy_cannot_choose_its_address_with_a_header():
    assert clients.client_address("93.184.216.34", "203.0.113.7", SPACE_PROXY) == "93.184.216.34"
    assert clients.client_address("10.1.2.3", "203.0.113.7", ()) == "10.1.2.3"  # a LAN peer, no proxy configured


def test_only_the_space_proxy_or_configured_proxies_are_trusted():
    assert clients.trusted_proxies({}) == ()
    assert clients.trusted_proxies({"MDSR_TRUSTED_PROXIES": "192.0.2.7, 2001:db8::/32"}) == (
        ipaddress.ip_network("192.0.2.7/32"),
        ipaddress.ip_network("2001:db8::/32"),
    )
    with pytest.raises(ValueError, match="MDSR_TRUSTED_PROXIES: 'proxy.local' is not an address or network"):
        clients.trusted_proxies({"MDSR_TRUSTED_PROXIES": "proxy.local"})


def test_a_malformed_proxy_setting_stops_the_app_at_start_up_before_anything_loads(monkeypatch):
    import app

    monkeypatch.setenv("MDSR_TRUSTED_PROXIES", "proxy.local")
    monkeypatch.setattr(app, "STORE", None)  # warm_up must not reach the weights
    app.trusted_proxies.cache_clear()
    try:
        with pytest.raises(ValueError, match="MDSR_TRUSTED_PROXIES: 'proxy.local'"):
            app.warm_up()
    finally:
        app.trusted_proxies.cache_clear()


def test_hops_of_trusted_proxies_are_skipped_from_the_right():
    assert clients.client_address("127.0.0.1", "203.0.113.9, 127.0.0.5", LOOPBACK) == "203.0.113.9"


def test_the_gradio_internals_the_demo_relies_on_are_present():
    import app
    from demo.gradio_adapter import check_gradio_internals

    check_gradio_internals(app.demo)
    assert getattr(app.demo._queue.push, "serialized", False)


def test_no_rest_route_skips_the_queue_and_its_admission():
    """Gradio's /gradio_api/run/ route would call the handler directly, past the queue's per-client share
    and the admission check: it is closed (queue(api_open=False)), while /call/ (the queue) answers."""
    body = json.dumps({"data": [data_url(photo((32, 24))), 2, None, "auto", "bundled", "png", None]}).encode()
    with running_app() as url:  # its own server: busy_app's relaunch closes the module's
        request = urllib.request.Request(f"{url}gradio_api/run/upscale", body, headers={"Content-Type": "application/json"})
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=600)
        assert refused.value.code in (403, 404, 405)
        event, _ = call(url, [data_url(photo((32, 24))), 2, None, "auto"])
        assert event == "complete"
