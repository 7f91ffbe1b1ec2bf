"""A bounded load test for ``fcos serve``: concurrent clients send valid images mixed with hostile uploads
and every answer is checked against the status its input deserves. Used by tests/serve/test_load.py;
also runnable on its own against a running server, to measure latency on a quiet machine:

    fcos serve --weights best.pt --port 8000 --max-upload-mb 1 &
    python tests/serve/serve_load.py --url http://127.0.0.1:8000 --images photos/*.jpg --pid $!
"""

from __future__ import annotations

import argparse
import io
import json
import random
import struct
import threading
import time
import zlib
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

BUSY = 503  # a valid image may be refused while every inference slot is taken


@dataclass(frozen=True)
class Payload:
    name: str
    data: bytes
    expected: frozenset[int]  # the statuses this input deserves
    valid: bool = False


@dataclass
class LoadResult:
    statuses: dict[str, Counter] = field(default_factory=lambda: defaultdict(Counter))
    wrong: list[str] = field(default_factory=list)  # "payload: status body"
    dropped: list[str] = field(default_factory=list)  # transport errors: reset, closed, timed out
    detections: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))  # image -> distinct answers
    latencies_ms: list[float] = field(default_factory=list)  # valid requests answered 200, as the client saw them
    inference_ms: list[float] = field(default_factory=list)  # their model time, as the server measured it
    rss_mb: list[tuple[int, float]] = field(default_factory=list)  # (requests done, server RSS)
    requests: int = 0
    seconds: float = 0.0

    def summary(self) -> dict:
        def pct(values: list[float], q: float) -> float:
            return round(float(np.percentile(values, q)), 1) if values else float("nan")

        return {"requests": self.requests, "seconds": round(self.seconds, 2), "valid_200": len(self.latencies_ms),
                "p50_ms": pct(self.latencies_ms, 50), "p99_ms": pct(self.latencies_ms, 99),
                "inference_p50_ms": pct(self.inference_ms, 50), "inference_p99_ms": pct(self.inference_ms, 99),
                "wrong": len(self.wrong), "dropped": len(self.dropped),
                "statuses": {name: dict(c) for name, c in sorted(self.statuses.items())}}


def _png_header(width: int, height: int) -> bytes:
    """A PNG declaring width x height 1-bit pixels, holding a few rows: a decompression bomb's header."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = zlib.compress(b"".join(b"\0" + bytes((width + 7) // 8) for _ in range(16)))
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", rows) + chunk(b"IEND", b"")


def payloads(images: list[bytes], max_upload_bytes: int) -> list[Payload]:
    """The valid ``images`` and one of each hostile upload."""
    one_pixel = io.BytesIO()
    Image.new("RGB", (1, 1), (200, 10, 10)).save(one_pixel, "PNG")
    first = images[0]
    valid = [Payload(f"image{i}", data, frozenset({200, BUSY}), valid=True) for i, data in enumerate(images)]
    return valid + [
        Payload("truncated", first[: len(first) // 2], frozenset({400})),
        Payload("empty", b"", frozenset({400})),
        Payload("not_an_image", b"%PDF-1.4\n" + bytes(range(256)) * 16, frozenset({415})),
        Payload("one_pixel", one_pixel.getvalue(), frozenset({422})),
        Payload("bomb_40000x40000", _png_header(40_000, 40_000), frozenset({413})),
        Payload("oversized", first + bytes(max_upload_bytes + 1), frozenset({413})),
    ]


def _rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS")) / 1024


def run_load(url: str, mix: list[Payload], *, clients: int = 8, requests: int = 320, seed: int = 0,
             pid: int | None = None, timeout: float = 60.0) -> LoadResult:
    """``requests`` uploads from ``clients`` threads (each its own keep-alive connection), drawn from ``mix``
    with valid images as often as all hostile kinds together. Samples the server's RSS when ``pid`` is given."""
    rng = random.Random(seed)
    valid = [p for p in mix if p.valid]
    hostile = [p for p in mix if not p.valid]
    plan = [rng.choice(valid) if rng.random() < 0.5 else rng.choice(hostile) for _ in range(requests)]
    result = LoadResult(requests=requests)
    lock = threading.Lock()
    done = 0

    def client(share: list[Payload]) -> None:
        nonlocal done
        with httpx.Client(base_url=url, timeout=timeout) as session:
            for payload in share:
                start = time.perf_counter()
                try:
                    response = session.post("/predict", files={"file": (f"{payload.name}.img", payload.data)})
                except httpx.HTTPError as exc:
                    with lock:
                        result.dropped.append(f"{payload.name}: {type(exc).__name__}: {exc}")
                    continue
                elapsed = (time.perf_counter() - start) * 1000
                with lock:
                    done += 1
                    result.statuses[payload.name][response.status_code] += 1
                    if response.status_code not in payload.expected:
                        result.wrong.append(f"{payload.name}: {response.status_code} {response.text[:200]}")
                    elif payload.valid and response.status_code == 200:
                        body = response.json()
                        result.latencies_ms.append(elapsed)
                        result.inference_ms.append(body["inference_ms"])
                        result.detections[payload.name].add(json.dumps(body["detections"]))

    stop = threading.Event()

    def sample_rss() -> None:
        while not stop.is_set():
            result.rss_mb.append((done, _rss_mb(pid)))
            stop.wait(0.2)

    sampler = threading.Thread(target=sample_rss, daemon=True) if pid else None
    if sampler:
        sampler.start()
    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(client, [plan[i::clients] for i in range(clients)]))
    result.seconds = time.perf_counter() - start
    stop.set()
    if sampler:
        sampler.join()
        result.rss_mb.append((done, _rss_mb(pid)))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--images", nargs="+", required=True, help="valid image files to send")
    parser.add_argument("--max-upload-mb", type=float, default=1.0, help="the server's --max-upload-mb")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--requests", type=int, default=320)
    parser.add_argument("--warmup", type=int, default=48)
    parser.add_argument("--pid", type=int, help="the server's process id, to sample its RSS")
    args = parser.parse_args()
    mix = payloads([Path(p).read_bytes() for p in args.images], int(args.max_upload_mb * 2**20))
    run_load(args.url, mix, clients=args.clients, requests=args.warmup, seed=1)
    result = run_load(args.url, mix, clients=args.clients, requests=args.requests, pid=args.pid)
    print(json.dumps({**result.summary(), "rss_mb": [result.rss_mb[0][1], result.rss_mb[-1][1]] if result.rss_mb else None}))


if __name__ == "__main__":
    main()
