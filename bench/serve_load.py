"""serve_load: ``fcos serve`` under concurrent clients, with and without dynamic batching, against
TorchServe-style sequential serving, side by side in one run.

Three servers of the same model, each a real ``fcos serve`` subprocess on 127.0.0.1 (``OMP_NUM_THREADS=1``:
one thread per forward pass, as on the project's 2-core machine):

- ``batched``: ``--max-batch 8 --max-delay-ms 10 --max-concurrency 2`` (two workers, each running
  batches of up to 8 concurrent requests);
- ``unbatched``: ``--max-batch 1 --max-concurrency 2`` (two workers, one image per forward pass: the
  service before dynamic batching);
- ``sequential``: ``--max-batch 1 --max-concurrency 1``, one request at a time through one worker, no
  batching: TorchServe's default handler with one worker and ``batch_size`` 1 (the baseline).

Each set runs in fp32 and, on a CPU with native bf16 (AVX512-BF16, AMX), again with ``--half`` on all
three servers (bf16 autocast: on such a CPU the forward pass gains from batching, 1.6x per image at
batch 8 against ~1.1x in fp32; the references are then computed in bf16 too). The rows say which.

At 1, 4, 8 and 16 clients (threads of this process, each with its own keep-alive connection, sending
one request after another), each level bounded in requests and in seconds: throughput (images answered
200 per second), client-side latency p50 / p99, errors (any other status or a dropped connection) and
wrong answers (a response whose detections differ from the image's own, computed alone in this process
by :class:`fcos.predict.Predictor`, beyond the parity tolerances: 0.5 px, 2e-4 in score). The servers
run in alternating order over ``ROUNDS`` rounds (ABC, CBA, ...); each figure is the median over the
rounds and ``range`` gives the lowest and highest. Each row also gives the CPU time per image answered
of the server process and of this process (the load generator), from /proc: they share the cores. ``ours`` is a server's throughput, ``reference`` the
sequential server's at the same clients (ratio > 1: more images per second than the baseline).

The model is the tests' tiny untrained detector (ResNet-18, 32-channel FPN, one conv per head tower,
inputs resized to 256..320 px, biases raised so it returns many boxes), built here: nothing is
downloaded. The images are 4 real photos of tests/assets resized to one size (320x240 JPEG), as a camera
would send: images of one padded shape run as one forward pass. ``forward`` rows give the model alone in
this process, batch 1 against batch 8 per image: the most batching can buy on this CPU.
"""

from __future__ import annotations

import io
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import torch

from bench.common import REPO, emit, time_ms

SERVERS: dict[str, list[str]] = {
    "batched": ["--max-batch", "8", "--max-delay-ms", "10", "--max-concurrency", "2"],
    "unbatched": ["--max-batch", "1", "--max-concurrency", "2"],
    "sequential": ["--max-batch", "1", "--max-concurrency", "1"],
}
CLIENTS = (1, 4, 8, 16)
ROUNDS = 3
IMAGE_SIZE = (320, 240)
BOX_TOL, SCORE_TOL, CONF = 0.5, 2e-4, 0.3


def _checkpoint(folder: Path) -> Path:
    from fcos import FCOS, official
    from fcos.weights.checkpoint import model_checkpoint, save_checkpoint

    torch.manual_seed(0)
    config = official(num_classes=3, backbone="resnet18", **{
        "fpn.channels": 32, "head.norm_groups": 16, "head.num_convs": 1, "input.min_size": 256, "input.max_size": 320})
    model = FCOS(config).eval()
    with torch.no_grad():  # an untrained model that still returns boxes of a visible size
        model.head.cls_logits.bias.uniform_(-3, 0)
        model.head.box_pred.bias.uniform_(1.0, 3.0)
    return save_checkpoint(model_checkpoint(model, ["apple", "banana", "orange"], [1, 2, 3]), folder / "tiny.pt")


def _images(count: int) -> list[bytes]:
    from PIL import Image

    paths = sorted((REPO / "tests" / "assets" / "fruit" / "images").glob("*.jpg"))[:count // 2]
    paths += sorted((REPO / "tests" / "assets" / "raccoon" / "images").glob("*.jpg"))[:count - len(paths)]
    out = []
    for path in paths:
        buffer = io.BytesIO()
        Image.open(path).convert("RGB").resize(IMAGE_SIZE).save(buffer, "JPEG", quality=90)
        out.append(buffer.getvalue())
    return out


def _matches(reference: dict[str, Any], got: list[dict[str, Any]]) -> bool:
    """``got`` (the server's detections at CONF) against the image's own (all scores): every reference
    detection clearly above CONF is there, and every detection returned is one of the reference's."""
    boxes, scores, labels = reference["boxes"], reference["scores"], reference["labels"]
    used = np.zeros(len(scores), dtype=bool)
    for det in got:
        close = (~used & (labels == det["label"]) & (np.abs(boxes - np.array(det["box"])).max(axis=1) <= BOX_TOL)
                 & (np.abs(scores - det["score"]) <= SCORE_TOL))
        if not close.any():
            return False
        used[np.flatnonzero(close)[0]] = True
    return bool(used[scores >= CONF + SCORE_TOL].all())


class _Server:
    """``fcos serve`` on a free loopback port, in a subprocess; ready once ``/ready`` says so."""

    def __init__(self, weights: Path, args: list[str]) -> None:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(sys.path)}
        self.proc = subprocess.Popen([sys.executable, "-m", "fcos", "serve", "--weights", str(weights), "--device", "cpu",
                                      "--port", str(port), *args], env=env, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 120
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"fcos serve exited: {self.proc.stderr.read()[-2000:]}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("fcos serve was not ready within 120 s")
            try:
                if httpx.get(self.url + "/ready", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.communicate()


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far (Linux /proc; 0 elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _load(url: str, images: list[bytes], references: list[dict[str, Any]], clients: int, requests: int,
          max_seconds: float) -> dict[str, Any]:
    """``requests`` uploads from ``clients`` closed-loop clients, stopping early after ``max_seconds``."""
    latencies: list[float] = []
    errors = wrong = 0
    lock = threading.Lock()
    deadline = time.monotonic() + max_seconds

    def client(index: int) -> None:
        nonlocal errors, wrong
        with httpx.Client(base_url=url, timeout=60) as session:
            for k in range(index, requests, clients):
                if time.monotonic() > deadline:
                    return
                which = k % len(images)
                start = time.perf_counter()
                try:
                    response = session.post("/predict", files={"file": ("image.jpg", images[which])})
                except httpx.HTTPError:
                    with lock:
                        errors += 1
                    continue
                elapsed = (time.perf_counter() - start) * 1000
                ok = response.status_code == 200
                right = ok and _matches(references[which], response.json()["detections"])
                with lock:
                    errors += not ok
                    wrong += ok and not right
                    if ok:
                        latencies.append(elapsed)

    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(client, range(clients)))
    seconds = time.perf_counter() - start
    return {"images_per_s": len(latencies) / seconds, "p50_ms": float(np.percentile(latencies, 50)) if latencies else 0.0,
            "p99_ms": float(np.percentile(latencies, 99)) if latencies else 0.0, "answered": len(latencies),
            "errors": errors, "wrong": wrong, "seconds": seconds}


def _precisions() -> tuple[str, ...]:
    from fcos.utils.devices import cpu_has_native_bf16

    return ("fp32", "bf16") if cpu_has_native_bf16() else ("fp32",)


def _predictor(weights: Path, precision: str):
    from fcos.predict import Predictor
    from fcos.predict.options import InferenceOptions

    return Predictor(weights, options=InferenceOptions(half=precision == "bf16"))


def _forward_rows(weights: Path, images: list[bytes], quick: bool, precision: str) -> list[dict[str, Any]]:
    """The model alone in this process (one thread): per-image time at batch 1 and at batch 8."""
    from fcos.predict import read_image

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        predictor = _predictor(weights, precision)
        decoded = [read_image(io.BytesIO(data)) for data in images]
        eight = (decoded * 8)[:8]
        repeat = 1 if quick else 5
        one = time_ms(lambda: predictor.predict_batch(decoded[:1]), warmup=1, repeat=repeat)
        batch = time_ms(lambda: predictor.predict_batch(eight), warmup=1, repeat=repeat) / 8
    finally:
        torch.set_num_threads(threads)
    return [emit("serve_forward_per_image", batch, one, "ms", {"batch": 8, "reference_batch": 1, "threads": 1,
                                                               "image": list(IMAGE_SIZE), "precision": precision})]


def run(quick: bool = False) -> list[dict[str, Any]]:
    with tempfile.TemporaryDirectory(prefix="fcos-serve-load-") as tmp:
        weights = _checkpoint(Path(tmp))
        images = _images(2 if quick else 4)
        return [record for precision in _precisions()[:1 if quick else None]
                for record in _run(weights, images, precision, quick)]


def _run(weights: Path, images: list[bytes], precision: str, quick: bool) -> list[dict[str, Any]]:
    from fcos.predict import read_image

    clients_levels = (1, 2) if quick else CLIENTS
    rounds = 1 if quick else ROUNDS
    flags = ["--half"] if precision == "bf16" else []
    reference = _predictor(weights, precision)
    references = [reference(read_image(io.BytesIO(data)), conf=0.0)[0] for data in images]
    records = _forward_rows(weights, images, quick, precision)
    found: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for r in range(rounds):
        for name in (list(SERVERS) if r % 2 == 0 else list(reversed(SERVERS))):
            server = _Server(weights, SERVERS[name] + flags)
            try:
                _load(server.url, images, references, 8, 8 if quick else 32, 30)  # warm-up: not counted
                for clients in clients_levels:
                    requests = 4 * clients if quick else max(48, 12 * clients)
                    # CPU per image answered, server and load generator: the two share the cores
                    server_cpu, client_cpu = _cpu_seconds(server.proc.pid), _cpu_seconds(os.getpid())
                    result = _load(server.url, images, references, clients, requests, 10 if quick else 60)
                    answered = max(1, result["answered"])
                    result["server_cpu_ms"] = (_cpu_seconds(server.proc.pid) - server_cpu) * 1000 / answered
                    result["client_cpu_ms"] = (_cpu_seconds(os.getpid()) - client_cpu) * 1000 / answered
                    found.setdefault((name, clients), []).append(result)
            finally:
                server.stop()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    for clients in clients_levels:
        baseline = statistics.median(x["images_per_s"] for x in found["sequential", clients])
        for name in SERVERS:
            runs = found[name, clients]
            throughput = [x["images_per_s"] for x in runs]
            records.append(emit(
                "serve_load", statistics.median(throughput), baseline, "images/s",
                {"server": name, "clients": clients, "flags": " ".join(SERVERS[name] + flags), "rounds": rounds,
                 "image": list(IMAGE_SIZE), "omp_threads": 1, "precision": precision}, higher_is_better=True,
                range=[round(min(throughput), 2), round(max(throughput), 2)],
                p50_ms=statistics.median(x["p50_ms"] for x in runs),
                p99_ms=statistics.median(x["p99_ms"] for x in runs),
                p99_range=[round(min(x["p99_ms"] for x in runs), 1), round(max(x["p99_ms"] for x in runs), 1)],
                answered=sum(x["answered"] for x in runs), errors=sum(x["errors"] for x in runs),
                wrong=sum(x["wrong"] for x in runs), load_average=load,
                server_cpu_ms_per_image=statistics.median(x["server_cpu_ms"] for x in runs),
                client_cpu_ms_per_image=statistics.median(x["client_cpu_ms"] for x in runs)))
    if not quick:
        batched, unbatched = found["batched", 8], found["unbatched", 8]
        single_p50 = statistics.median(x["p50_ms"] for x in found["unbatched", 1])
        ratios = [b["images_per_s"] / u["images_per_s"] for b, u in zip(batched, unbatched)]
        records.append(emit(
            "serve_load_target_8_clients", statistics.median(x["images_per_s"] for x in batched),
            statistics.median(x["images_per_s"] for x in unbatched), "images/s",
            {"clients": 8, "target_ratio": 1.5, "target_p99_over_single_p50": 2.0, "precision": precision},
            higher_is_better=True,
            ratio_range=[round(min(ratios), 3), round(max(ratios), 3)],
            p99_ms=statistics.median(x["p99_ms"] for x in batched), single_request_p50_ms=single_p50,
            p99_over_single_p50=statistics.median(x["p99_ms"] for x in batched) / single_p50,
            wrong=sum(x["wrong"] for x in batched + unbatched)))
    return records
