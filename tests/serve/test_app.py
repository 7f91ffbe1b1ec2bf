"""The prediction web service: results, every kind of bad request, bounded concurrency, and the upload
page driven end to end in headless Chromium. All traffic stays on 127.0.0.1."""

import io
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import uvicorn
from fastapi.testclient import TestClient
from PIL import Image

from deploy_helpers import CLASS_NAMES, assert_same_detections, free_port, real_images, uvicorn_thread
from fcos.export import export_onnx
from fcos.predict import Predictor, read_image
from fcos.serve import create_app


def png(width, height, mode="RGB"):
    buffer = io.BytesIO()
    Image.new(mode, (width, height)).save(buffer, "PNG")
    return buffer.getvalue()


def upload(client, data, name="image.jpg", url="/predict", **fields):
    return client.post(url, files={"file": (name, data, "application/octet-stream")}, data=fields)


class FakePredictor:
    """Stands in for Predictor where only the server's behaviour matters: sleeps, counts overlap."""

    backend = "fake"
    class_names = CLASS_NAMES

    def __init__(self, delay):
        self.delay = delay
        self.lock = threading.Lock()
        self.running = self.max_running = self.calls = 0

    def __call__(self, image, conf=None):
        with self.lock:
            self.running += 1
            self.calls += 1
            self.max_running = max(self.max_running, self.running)
        try:
            time.sleep(self.delay)
            return [{"boxes": np.array([[1, 2, 30, 40]], np.float32), "scores": np.array([0.9], np.float32),
                     "labels": np.array([2]), "names": ["orange"]}]
        finally:
            with self.lock:
                self.running -= 1


def wait_ready(client, timeout=30.0):
    """Until the warm-up forward pass has run (it calls the predictor once)."""
    deadline = time.monotonic() + timeout
    while client.get("/ready").status_code != 200:
        assert time.monotonic() < deadline, "not ready"
        time.sleep(0.02)


@pytest.fixture(scope="module")
def client(checkpoint):
    with TestClient(create_app(checkpoint, max_upload_mb=1)) as c:
        yield c


@pytest.fixture(scope="module")
def photo(shared_data):
    path = real_images(shared_data, 2)[1]
    return path, path.read_bytes()


def test_health_and_self_contained_page(client):
    health = client.get("/health").json()
    assert health["status"] == "ok" and health["classes"] == CLASS_NAMES and health["backend"] == "torch"
    for path in ("/health", "/ready"):  # HEAD, as load balancers probe: GET's status, no body
        head = client.head(path)
        assert head.status_code == client.get(path).status_code != 405 and head.content == b""
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    html = page.text
    for needed in ('type="file"', "<canvas", 'type="range"', "data-boxes", 'fetch("predict"'):
        assert needed in html
    for external in ("http://", "https://", "<link", "src=", "@import"):
        assert external not in html  # no external JS, CSS, fonts or images


def test_predict_returns_the_predictors_detections(client, checkpoint, photo):
    path, data = photo
    response = upload(client, data, path.name)
    assert response.status_code == 200
    body = response.json()
    image = read_image(path)
    assert (body["width"], body["height"]) == image.size
    (expected,) = Predictor(checkpoint)(image, conf=0.3)  # the server's default conf
    detections = body["detections"]
    assert len(detections) == len(expected["scores"]) > 0
    for det, box, score, label in zip(detections, expected["boxes"], expected["scores"], expected["labels"]):
        assert set(det) == {"box", "score", "label", "name"}
        assert np.allclose(det["box"], box, atol=0.01) and abs(det["score"] - score) < 1e-4
        assert det["label"] == label and det["name"] == CLASS_NAMES[label]


def test_conf_from_form_or_query(client, photo):
    _, data = photo
    everything = upload(client, data, conf="0").json()["detections"]
    conf = float(np.median([d["score"] for d in everything]))
    by_form = upload(client, data, conf=str(conf)).json()["detections"]
    by_query = upload(client, data, url=f"/predict?conf={conf}").json()["detections"]
    assert by_form == by_query and 0 < len(by_form) < len(everything)
    assert all(d["score"] >= conf for d in by_form)
    for bad in ({"conf": "abc"}, {"conf": "1.5"}):
        response = upload(client, data, **bad)
        assert response.status_code == 422 and "conf" in response.json()["detail"]
    response = upload(client, data, url="/predict?conf=-1")
    assert response.status_code == 422 and "conf" in response.json()["detail"]


@pytest.mark.parametrize(
    ("case", "status", "message"),
    [
        ("not_an_image", 415, "not an image"),
        ("truncated", 400, "truncated"),
        ("empty_body", 400, "multipart/form-data"),
        ("empty_file", 400, "empty upload"),
        ("wrong_field", 400, "'file' field"),
        ("one_pixel", 422, "at least 16 px"),
        ("too_many_pixels", 413, "the limit is 40,000,000"),
        ("decompression_bomb", 413, "too many pixels"),
        ("too_large", 413, "the limit is 1 MB"),
    ],
)
def test_bad_requests_get_clear_4xx_and_the_service_keeps_working(client, photo, case, status, message):
    _, data = photo
    if case == "not_an_image":
        response = upload(client, b"%PDF-1.4 definitely not a picture", "doc.pdf")
    elif case == "truncated":
        response = upload(client, data[: len(data) // 2])
    elif case == "empty_body":
        response = client.post("/predict")
    elif case == "empty_file":
        response = upload(client, b"")
    elif case == "wrong_field":
        response = client.post("/predict", files={"image": ("a.jpg", data, "image/jpeg")})
    elif case == "one_pixel":
        response = upload(client, png(1, 1), "dot.png")
    elif case == "too_many_pixels":  # 49 MP: over max_pixels, under Pillow's own bomb limit
        response = upload(client, png(7000, 7000, "1"), "big.png")
    elif case == "decompression_bomb":  # 400 MP in a 48 kB file: Pillow refuses to open it
        response = upload(client, png(20000, 20000, "1"), "bomb.png")
    else:
        response = upload(client, os.urandom(2 * 1024 * 1024))
    assert response.status_code == status, response.text
    assert message in response.json()["detail"]
    assert upload(client, data).status_code == 200  # still serving


def test_default_upload_limit_is_20_mb(checkpoint):
    with TestClient(create_app(FakePredictor(0.0))) as c:
        response = upload(c, b"\0" * (21 * 1024 * 1024))
        assert response.status_code == 413 and "20 MB" in response.json()["detail"]
        assert upload(c, png(64, 64)).status_code == 200


def test_concurrency_is_bounded_and_requests_wait_their_turn():
    fake = FakePredictor(0.3)
    app = create_app(fake, max_concurrency=2, queue_timeout_s=30)
    with TestClient(app) as c, ThreadPoolExecutor(6) as pool:
        wait_ready(c)
        fake.calls = 0
        statuses = list(pool.map(lambda _: upload(c, png(64, 64)).status_code, range(6)))
    assert statuses == [200] * 6 and fake.calls == 6
    assert fake.max_running == 2 and app.state.queue.max_active == 2 and app.state.queue.active == 0


def test_full_queue_gets_503_then_recovers():
    fake = FakePredictor(1.5)
    with TestClient(create_app(fake, max_concurrency=1, queue_timeout_s=0.2)) as c, ThreadPoolExecutor(2) as pool:
        first = pool.submit(upload, c, png(64, 64))
        time.sleep(0.3)
        second = upload(c, png(64, 64))
        assert second.status_code == 503 and "busy" in second.json()["detail"] and second.headers["retry-after"]
        assert first.result().status_code == 200
        fake.delay = 0.0
        assert upload(c, png(64, 64)).status_code == 200


def test_full_queue_refuses_at_once():
    """Beyond max_queue waiting requests, one more gets 503 without waiting (a flood is refused, not buffered)."""
    gate = threading.Event()  # the running inference holds its slot until the gate opens

    class Gated(FakePredictor):
        armed = False

        def __call__(self, image, conf=None):
            if self.armed:
                gate.wait(60)
            return super().__call__(image, conf)

    fake = Gated(0.0)
    app = create_app(fake, max_concurrency=1, max_queue=1, queue_timeout_s=60)
    with TestClient(app) as c, ThreadPoolExecutor(2) as pool:
        wait_ready(c)
        fake.armed, fake.calls = True, 0
        running = pool.submit(upload, c, png(64, 64))
        while app.state.queue.active == 0:
            time.sleep(0.01)
        waiting = pool.submit(upload, c, png(64, 64))
        while app.state.queue.waiting == 0:
            time.sleep(0.01)
        refused = upload(c, png(64, 64))  # answered while the gate is shut: it did not wait for a slot
        assert not running.done() and not waiting.done()
        assert refused.status_code == 503 and refused.headers["retry-after"]
        assert "1 requests already wait for 1 inference slots" in refused.json()["detail"]
        gate.set()
        assert running.result().status_code == waiting.result().status_code == 200
    assert fake.calls == 2 and app.state.queue.waiting == app.state.queue.active == 0


def test_event_loop_stays_responsive_during_inference():
    fake = FakePredictor(1.5)
    with TestClient(create_app(fake)) as c, ThreadPoolExecutor(1) as pool:
        slow = pool.submit(upload, c, png(64, 64))
        time.sleep(0.2)
        health = c.get("/health").json()
        # /health answered while the inference still runs: a blocked event loop would answer only after it
        assert health["active"] == 1 and not slow.done()
        assert slow.result().status_code == 200


# --- a real server on 127.0.0.1 -------------------------------------------------------------------


@pytest.fixture(scope="module")
def live_server(checkpoint):
    port = free_port()
    config = uvicorn.Config(create_app(checkpoint, max_upload_mb=1), host="127.0.0.1", port=port, log_level="warning")
    with uvicorn_thread(config):
        yield f"http://127.0.0.1:{port}"


def raw_request(base, head: bytes, body_chunks=()):
    """Send a hand-made request; stop sending as soon as the server answers. -> (status, bytes sent)."""
    host, port = base.removeprefix("http://").split(":")
    sent = 0
    with socket.create_connection((host, int(port)), timeout=10) as conn:
        conn.sendall(head)
        for chunk in body_chunks:
            conn.settimeout(0.0)
            try:
                if conn.recv(1, socket.MSG_PEEK):
                    break  # the answer is already there
            except BlockingIOError:
                pass
            conn.settimeout(10)
            try:
                conn.sendall(chunk)
            except (BrokenPipeError, ConnectionResetError):
                break
            sent += len(chunk)
        conn.settimeout(10)
        reply = b""
        while True:
            head_end = reply.find(b"\r\n\r\n")
            if head_end >= 0:
                length = int(reply.lower().split(b"content-length:")[1].split(b"\r\n")[0])
                if len(reply) >= head_end + 4 + length:
                    break
            data = conn.recv(65536)
            if not data:
                break
            reply += data
    return int(reply.split(b" ", 2)[1]), sent, reply


def test_declared_oversized_body_is_refused_before_reading(live_server):
    head = (b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: multipart/form-data; boundary=x\r\n"
            b"Content-Length: 104857600\r\n\r\n")
    status, _, reply = raw_request(live_server, head)
    assert status == 413 and b"the limit is 1 MB" in reply


def test_streamed_body_is_cut_off_at_the_limit(live_server):
    head = (b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: multipart/form-data; boundary=x\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n")
    part = b"--x\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.jpg\"\r\n\r\n"
    chunk = b"%x\r\n%s\r\n" % (64 * 1024, b"\0" * 64 * 1024)
    chunks = [b"%x\r\n%s\r\n" % (len(part), part)] + [chunk] * 1600  # would be 100 MB
    status, sent, _ = raw_request(live_server, head, chunks)
    assert status == 413
    assert sent < 20 * 1024 * 1024  # the server answered and stopped reading long before the end


def test_serve_cli_with_an_onnx_model(checkpoint, photo, tmp_path):
    import httpx

    onnx_path = export_onnx(checkpoint, tmp_path / "model.onnx")
    port = free_port()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    server = subprocess.Popen([sys.executable, "-m", "fcos", "serve", "--weights", str(onnx_path), "--port", str(port)],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        base, deadline = f"http://127.0.0.1:{port}", time.monotonic() + 60
        while True:
            assert server.poll() is None, server.stderr.read().decode()[-2000:]
            assert time.monotonic() < deadline, "fcos serve did not start"
            try:
                health = httpx.get(base + "/health", timeout=2).json()
                break
            except httpx.TransportError:
                time.sleep(0.2)
        assert health["backend"] == "onnxruntime" and health["classes"] == CLASS_NAMES
        path, data = photo
        body = httpx.post(base + "/predict", files={"file": (path.name, data)}, data={"conf": "0"}, timeout=60).json()
    finally:
        server.terminate()
        server.wait(10)
    got = {"boxes": np.array([d["box"] for d in body["detections"]]), "scores": np.array([d["score"] for d in body["detections"]]),
           "labels": np.array([d["label"] for d in body["detections"]])}
    assert_same_detections(Predictor(checkpoint)(read_image(path))[0], got, box_tol=0.5, score_tol=2e-4)


# --- the page in a real browser -------------------------------------------------------------------

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"


def ensure_chromium():
    """Debian's chromium + chromium-driver; installed here when running as root with apt-get."""
    if os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER):
        return
    if os.geteuid() == 0 and shutil.which("apt-get"):
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        install = ["apt-get", "install", "-y", "-q", "chromium", "chromium-driver"]
        if subprocess.run(install, env=env, capture_output=True, timeout=1200).returncode != 0:
            subprocess.run(["apt-get", "update", "-q"], env=env, capture_output=True, timeout=600)
            subprocess.run(install, env=env, capture_output=True, timeout=1200)
    if not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)):
        pytest.skip("headless Chromium is not available and could not be installed: "
                    "apt-get install -y chromium chromium-driver")


@pytest.fixture(scope="module")
def browser():
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is in the dev extra")
    ensure_chromium()
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,900",
                 "--no-proxy-server", "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-default-apps", "--disable-extensions", "--no-first-run", "--disable-domain-reliability",
                 "--disable-client-side-phishing-detection", "--metrics-recording-only"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
    yield driver
    driver.quit()


@pytest.mark.slow
def test_browser_upload_draws_boxes_and_the_slider_filters(browser, live_server, shared_data, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    image = real_images(shared_data, 20)[11]  # a raccoon photo
    browser.get(live_server + "/")
    browser.find_element(By.ID, "file").send_keys(str(image))
    body = browser.find_element(By.TAG_NAME, "body")
    WebDriverWait(browser, 60).until(lambda _: body.get_attribute("data-state") in ("done", "error"))
    assert body.get_attribute("data-state") == "done", browser.find_element(By.ID, "status").text
    canvas = browser.find_element(By.ID, "canvas")
    drawn = int(canvas.get_attribute("data-boxes"))
    assert drawn > 0 and len(browser.find_elements(By.CSS_SELECTOR, "#rows tr")) == drawn
    assert "detections" in browser.find_element(By.ID, "status").text
    width, height = Image.open(image).size
    assert int(canvas.get_attribute("width")) == width and int(canvas.get_attribute("height")) == height
    # Boxes are really on the canvas: its pixels differ from the plain photo's.
    pixels = browser.execute_script(
        "const c = document.getElementById('canvas');"
        "return Array.from(c.getContext('2d').getImageData(0, 0, c.width, c.height).data.filter((_, i) => i % 4 != 3));"
    )
    drawn_pixels = np.array(pixels, dtype=np.int16).reshape(height, width, 3)
    photo_pixels = np.asarray(read_image(image), dtype=np.int16)
    assert (np.abs(drawn_pixels - photo_pixels).max(-1) > 60).mean() > 0.005

    # The slider re-filters on the client: a higher threshold shows fewer boxes, no new request needed.
    scores = sorted(browser.execute_script("return state.result.detections.map((d) => d.score);"), reverse=True)
    threshold = np.ceil(scores[7] * 100) / 100  # the slider's 0.01 steps; about the 8 best boxes stay
    browser.execute_script(
        "const s = document.getElementById('conf'); s.value = arguments[0]; s.dispatchEvent(new Event('input'));",
        str(threshold),
    )
    fewer = int(canvas.get_attribute("data-boxes"))
    assert fewer == sum(s >= threshold for s in scores) and 0 < fewer < drawn, (fewer, drawn)
    shot = tmp_path / "serve_screenshot.png"
    assert browser.save_screenshot(str(shot)) and Image.open(shot).size[0] > 0
    print(f"screenshot: {shot}")  # for a person to look at (pytest -s)

    # An error from the server is shown on the page too.
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not an image at all")
    browser.find_element(By.ID, "file").send_keys(str(broken))
    WebDriverWait(browser, 30).until(lambda _: body.get_attribute("data-state") == "error")
    assert "not an image" in browser.find_element(By.ID, "status").text


@pytest.mark.slow
def test_browser_page_asks_for_the_key_and_sends_it(browser, checkpoint, shared_data):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    key = "browser-test-key-0123456789"
    port = free_port()
    app = create_app(checkpoint, api_key=key)
    with uvicorn_thread(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")):
        image = real_images(shared_data, 20)[11]
        browser.get(f"http://127.0.0.1:{port}/")
        body = browser.find_element(By.TAG_NAME, "body")
        box = browser.find_element(By.ID, "keyBox")
        WebDriverWait(browser, 10).until(lambda _: box.is_displayed())  # /health said a key is needed
        browser.find_element(By.ID, "file").send_keys(str(image))
        WebDriverWait(browser, 60).until(lambda _: body.get_attribute("data-state") == "error")
        assert "missing API key" in browser.find_element(By.ID, "status").text
        browser.find_element(By.ID, "key").send_keys(key)
        browser.execute_script("document.getElementById('file').value = '';")
        browser.find_element(By.ID, "file").send_keys(str(image))
        WebDriverWait(browser, 60).until(lambda _: body.get_attribute("data-state") in ("done", "error"))
        assert body.get_attribute("data-state") == "done", browser.find_element(By.ID, "status").text
        assert int(browser.find_element(By.ID, "canvas").get_attribute("data-boxes")) > 0
        stored = browser.execute_script("return [localStorage.length, sessionStorage.length, document.cookie];")
        assert stored == [0, 0, ""] and key not in browser.current_url
