"""The public demo against a hostile caller: raw HTTP calls to a live app on 127.0.0.1 that name server
files, smuggle oversized data: URLs, send malformed scales or ask for too much work."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest
from conftest import ROOT, call, data_url, running_app, submit
from sample_files import photo

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
    import app

    monkeypatch.setattr(app, "MAX_FILE_BYTES", 50_000)
    event, message = call(url, [data_url(photo((40, 30)), padding=60_000), 2, None, "auto"])
    assert event == "error" and "the limit is 50,000 bytes" in message


def test_a_data_url_within_the_limit_is_upscaled(url):
    event, payload = call(url, [data_url(photo((40, 30))), 2, None, "auto"])
    assert event == "complete" and json.loads(payload)[1]["width"] == 80


@pytest.mark.parametrize("scale", ["2", None, "abc", [2], "NaN", 2.5, 3.7, 5, True])
def test_a_malformed_scale_names_the_allowed_values(url, scale):
    event, message = call(url, [data_url(photo((40, 30))), scale, None, "auto"])
    assert event == "error" and "scale must be 2, 3 or 4" in message


def test_the_ground_truth_is_optional_in_the_api(url):
    from gradio_client import Client

    info = Client(url, verbose=False).view_api(return_format="dict", print_info=False)
    params = {p["parameter_name"]: p for p in info["named_endpoints"]["/upscale"]["parameters"]}
    assert params["ground_truth"]["parameter_has_default"] and params["ground_truth"]["parameter_default"] is None


def test_self_ensemble_work_is_bounded_with_a_message_that_states_the_limit(tmp_path):
    import app

    photo((1000, 800)).save(tmp_path / "big.png")  # x2: 2000x1600 output pixels, x 8 passes
    with pytest.raises(
        app.gr.Error, match=r"2000x1600 output pixels x 8 passes \(self-ensemble\) = 25,600,000; the limit"
    ):
        app.run_comparison(
            str(tmp_path / "big.png"), scale=2, gt_mode=app.GT_NONE, gt_image=None, weights=app.BUNDLED,
            self_ensemble=True, precision="auto", progress=lambda *a, **k: None,
        )  # fmt: skip


def test_one_client_cannot_queue_more_than_its_share(url):
    import app

    image = data_url(photo((200, 150)))
    answers = []
    for _ in range(app.MAX_JOBS_PER_CLIENT + 1):  # sent at once: the first still runs when the last arrives
        try:
            with urllib.request.urlopen(submit(url, [image, 4, None, "auto"]), timeout=60) as response:
                answers.append(("queued", json.loads(response.read())["event_id"]))
        except urllib.error.HTTPError as err:
            answers.append(("refused", err.read().decode()))
    assert [kind for kind, _ in answers] == ["queued"] * app.MAX_JOBS_PER_CLIENT + ["refused"]
    assert f"you already have {app.MAX_JOBS_PER_CLIENT} requests waiting or running" in answers[-1][1]
    for _, event_id in answers[:-1]:  # the admitted ones still finish
        with urllib.request.urlopen(f"{url}gradio_api/call/upscale/{event_id}", timeout=300) as response:
            assert "event: complete" in response.read().decode()


class FakeRequest:
    def __init__(self, peer: str, forwarded: str = "") -> None:
        self.client = type("Client", (), {"host": peer})()
        self.headers = {"x-forwarded-for": forwarded} if forwarded else {}


def test_behind_a_proxy_the_client_is_the_address_the_proxy_added():
    import app

    assert app.client_address(FakeRequest("10.1.2.3", "6.6.6.6, 203.0.113.7")) == "203.0.113.7"


def test_a_public_peer_cannot_choose_its_address_with_a_header():
    import app

    assert app.client_address(FakeRequest("93.184.216.34", "203.0.113.7")) == "93.184.216.34"
