"""Dynamic batching: each image answered as if alone, a bad image fails only its own request, nothing
lost or answered twice, back-pressure (503 + Retry-After), timeouts (504), draining at shutdown, and the
metrics that report it all (parsed with prometheus_client's own parser)."""

import asyncio
import io
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from test_app import CLASS_NAMES, png, upload, wait_ready

from deploy_helpers import assert_same_detections, real_images
from fcos.predict import Predictor, read_image
from fcos.serve import create_app
from fcos.serve.batching import BatchQueue, QueueFullError, QueueTimeoutError, RequestTimeoutError


def jpeg(image, size=None):
    buffer = io.BytesIO()
    (image.resize(size) if size else image).save(buffer, "JPEG", quality=92)
    return buffer.getvalue()


class BatchFake:
    """A predictor with ``predict_batch`` whose one box tells which image it saw (its width and height)."""

    backend = "fake"
    class_names = CLASS_NAMES

    def __init__(self, delay=0.0, refuse_width=None):
        self.delay, self.refuse_width = delay, refuse_width
        self.batches, self.attempts = [], []
        self.lock = threading.Lock()

    def predict_batch(self, images, conf=None):
        self.attempts.append(len(images))
        if any(image.width == self.refuse_width for image in images):
            raise ValueError(f"cannot take an image {self.refuse_width} px wide")
        with self.lock:
            self.batches.append(len(images))
        time.sleep(self.delay)
        return [{"boxes": np.array([[0, 0, image.width, image.height]], np.float32), "scores": np.array([0.9], np.float32),
                 "labels": np.array([1]), "names": ["banana"]} for image in images]


def metrics(client, headers=None):
    text = client.get("/metrics", headers=headers or {}).text
    return {s.name + str(sorted(s.labels.items())): s.value for f in text_string_to_metric_families(text) for s in f.samples}


# --- the queue itself ------------------------------------------------------------------------------


def test_queue_answers_every_item_exactly_once_under_concurrency():
    runs = []

    def run_batch(items):
        runs.append(list(items))
        time.sleep(0.002)
        return [item * 10 if item % 7 else ValueError(f"item {item}") for item in items]

    queue = BatchQueue(run_batch, max_batch=8, max_delay_s=0.005, max_queue=1000, workers=2)

    async def main():
        async def one(i):
            await asyncio.sleep(random.random() * 0.05)
            try:
                return await queue.submit(i, timeout_s=30)
            except ValueError as exc:
                return str(exc)

        return await asyncio.gather(*(one(i) for i in range(300)))

    random.seed(0)
    answers = asyncio.run(main())
    queue.close()
    assert answers == [i * 10 if i % 7 else f"item {i}" for i in range(300)]
    ran = sorted(item for batch in runs for item in batch)
    assert ran == list(range(300))  # each run once: none lost, none twice
    assert max(map(len, runs)) <= 8 and len(runs) < 300  # batched, within the limit
    assert queue.active == queue.waiting == 0


def test_queue_waits_to_fill_a_batch_only_while_another_runs():
    gate, batches = threading.Event(), []

    def run_batch(items):
        batches.append(list(items))
        if items == ["first"]:
            gate.wait(30)
        return items

    queue = BatchQueue(run_batch, max_batch=8, max_delay_s=0.3, max_queue=100, workers=2)
    start = time.monotonic()
    first = queue.put("first")  # nothing runs: it leaves at once instead of waiting 0.3 s for company
    while queue.active == 0:
        time.sleep(0.001)
    assert time.monotonic() - start < 0.2
    others = [queue.put(x) for x in "abc"]  # "first" runs: the second worker waits for more, up to 0.3 s
    time.sleep(0.05)
    assert queue.active == 1
    gate.set()
    assert [job.future.result(5) for job in (first, *others)] == ["first", "a", "b", "c"]
    queue.close()
    assert batches == [["first"], ["a", "b", "c"]]


def test_queue_full_timeout_and_drain():
    gate = threading.Event()
    ran = []

    def run_batch(items):
        gate.wait(30)
        ran.extend(items)
        return items

    queue = BatchQueue(run_batch, max_batch=2, max_delay_s=0.0, max_queue=2, workers=1)

    async def main():
        first = asyncio.ensure_future(queue.submit("a", timeout_s=30))
        while queue.active == 0:
            await asyncio.sleep(0.01)
        waiting = [asyncio.ensure_future(queue.submit(x, timeout_s=30)) for x in "bc"]
        await asyncio.sleep(0.05)
        with pytest.raises(QueueFullError):
            queue.put("d")
        with pytest.raises(QueueTimeoutError):  # not started in time: withdrawn, never run
            queue.max_queue = 3
            await queue.submit("e", timeout_s=30, queue_timeout_s=0.1)
        gate.set()
        return await asyncio.gather(first, *waiting)

    assert asyncio.run(main()) == ["a", "b", "c"]
    queue.close()
    assert "e" not in ran and sorted(ran) == ["a", "b", "c"]

    slow = BatchQueue(lambda items: time.sleep(0.5) or items, workers=1)
    with pytest.raises(RequestTimeoutError):
        asyncio.run(slow.submit("x", timeout_s=0.1))
    jobs = [slow.put(i) for i in range(5)]
    slow.close()  # drains: every queued item is run before the workers stop
    assert [job.future.result(0) for job in jobs] == list(range(5))


# --- the service -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def photos(shared_data):
    return [read_image(path) for path in real_images(shared_data, 3)]


def test_same_detections_alone_and_inside_batches_of_mixed_sizes(checkpoint, photos):
    """The same image sent alone and among others of other sizes: the same detections (PyTorch groups the
    batch by padded input shape; each image keeps its own padding)."""
    reference = Predictor(checkpoint)
    sizes = [(320, 240), (320, 240), (256, 256), (300, 200), (320, 240), (240, 320)]
    images = [jpeg(photos[i % 3], size) for i, size in enumerate(sizes)]
    expected = [reference(read_image(io.BytesIO(data)), conf=0.0)[0] for data in images]
    app = create_app(checkpoint, max_batch=6, max_delay_ms=300, max_concurrency=1)
    with TestClient(app) as c, ThreadPoolExecutor(len(images)) as pool:
        wait_ready(c)
        alone = [upload(c, data, conf="0").json() for data in images[:2]]
        together = list(pool.map(lambda data: upload(c, data, conf="0").json(), images))
        stats = metrics(c)
    assert [a["batch"] for a in alone] == [1, 1] and max(t["batch"] for t in together) > 1
    for body, want in zip(alone + together, expected[:2] + expected):
        got = {"boxes": np.array([d["box"] for d in body["detections"]]).reshape(-1, 4),
               "scores": np.array([d["score"] for d in body["detections"]]),
               "labels": np.array([d["label"] for d in body["detections"]])}
        assert len(got["scores"]) > 0
        assert_same_detections(want, got, box_tol=0.5, score_tol=2e-4)
    assert stats["fcos_batch_size_count[]"] < len(images) + 2  # fewer forward passes than images
    assert stats["fcos_model_load_seconds[]"] > 0 and stats["fcos_ready[]"] == 1


def test_bad_images_in_a_batch_fail_only_their_own_request():
    fake = BatchFake(delay=0.05, refuse_width=77)
    good = [png(64 + i, 48) for i in range(4)]
    bad = {"truncated": (png(200, 100)[:60], 400), "refused": (png(77, 40), 422)}
    app = create_app(fake, max_batch=8, max_delay_ms=200, max_concurrency=1)
    with TestClient(app) as c, ThreadPoolExecutor(6) as pool:
        wait_ready(c)
        sent = good + [data for data, _ in bad.values()]
        random.Random(1).shuffle(sent)
        responses = list(pool.map(lambda data: upload(c, data), sent))
    for data, response in zip(sent, responses):
        if data in good:
            width = 64 + good.index(data)
            assert response.status_code == 200 and response.json()["detections"][0]["box"] == [0, 0, width, 48]
        else:
            status = next(s for d, s in bad.values() if d == data)
            assert response.status_code == status, response.text
    # the batch held several requests; the refused image made it run them one by one, each its own answer
    assert max(fake.attempts) > 1


def test_no_request_lost_or_answered_twice_and_each_gets_its_own():
    fake = BatchFake(delay=0.01)
    widths = list(range(40, 80))
    app = create_app(fake, max_batch=8, max_delay_ms=5, max_concurrency=2)
    with TestClient(app) as c, ThreadPoolExecutor(16) as pool:
        wait_ready(c)
        bodies = list(pool.map(lambda w: upload(c, png(w, 32)).json(), widths))
        stats = metrics(c)
    assert [b["detections"][0]["box"][2] for b in bodies] == widths
    assert sum(fake.batches) == len(widths) + 1  # and the warm-up
    assert stats["fcos_requests_total[('route', '/predict'), ('status', '200')]"] == len(widths)
    assert stats["fcos_batch_size_sum[]"] == len(widths) + 0  # the warm-up is not a served batch
    assert stats["fcos_queue_depth[]"] == 0


def test_full_queue_gets_503_with_retry_after_and_timeout_gets_504():
    fake = BatchFake(delay=1.0)
    app = create_app(fake, max_batch=2, max_delay_ms=0, max_concurrency=1, max_queue=2, timeout_s=0.3)
    with TestClient(app) as c, ThreadPoolExecutor(6) as pool:
        wait_ready(c)
        responses = list(pool.map(lambda _: upload(c, png(64, 64)), range(6)))
        statuses = sorted(r.status_code for r in responses)
        stats = metrics(c)
    assert 503 in statuses and 504 in statuses and set(statuses) <= {503, 504}, statuses
    for response in responses:
        if response.status_code == 503:
            assert response.headers["retry-after"] and "busy" in response.json()["detail"]
        else:
            assert "not answered within 0.3 s" in response.json()["detail"]
    assert stats["fcos_requests_total[('route', '/predict'), ('status', '503')]"] == statuses.count(503)


def test_ready_waits_for_the_warm_up_and_metrics_are_per_app():
    gate = threading.Event()

    class Slow(BatchFake):
        def predict_batch(self, images, conf=None):
            gate.wait(30)
            return super().predict_batch(images, conf)

    with TestClient(create_app(Slow())) as first, TestClient(create_app(BatchFake())) as second:
        assert first.get("/ready").status_code == 503 and first.get("/health").json()["ready"] is False
        assert metrics(first)["fcos_ready[]"] == 0
        gate.set()
        wait_ready(first)
        wait_ready(second)
        for _ in range(3):
            assert upload(first, png(64, 64)).status_code == 200
        assert metrics(first)["fcos_requests_total[('route', '/predict'), ('status', '200')]"] == 3
        assert "fcos_requests_total[('route', '/predict'), ('status', '200')]" not in metrics(second)
