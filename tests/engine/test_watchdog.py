"""The hang watchdog: which rank it names, and when. Two watchdogs (ranks 0 and 1) share one in-memory
store; ``poll(now)`` takes the time, so the verdicts are checked at exact instants without sleeping.
A rank "does nothing" between two polls by not calling progress()."""

from __future__ import annotations

import threading
import time

import torch.distributed as dist

from fcos.engine.watchdog import Watchdog

TIMEOUT = 10.0


def pair(world: int = 2) -> list[Watchdog]:
    store = dist.HashStore()
    return [Watchdog(store, rank, world, TIMEOUT) for rank in range(world)]


def poll_all(dogs: list[Watchdog], now: float) -> list[list[str]]:
    return [dog.poll(now) for dog in dogs]


def test_a_stuck_rank_is_named_by_every_rank_itself_included():
    w0, w1 = dogs = pair()
    w1.progress("after_step at update 3")
    poll_all(dogs, 0.0)
    poll_all(dogs, 0.0)  # both have seen both
    for t in (2.0, 4.0, 6.0, 8.0, 10.0):  # rank 0 keeps working, rank 1 does nothing after update 3
        w0.progress(f"after_step at update {t:g}")
        assert poll_all(dogs, t) == [[], []]
    w0.progress("after_step at update 12")
    expected = ["rank 1 has made no progress for 12 s outside collectives (its last progress: after_step at update 3)"]
    assert poll_all(dogs, 12.0) == [expected, expected]
    assert (w0.stuck_here, w1.stuck_here) == (False, True)


def test_the_rank_that_does_not_arrive_is_blamed_not_the_one_waiting_for_it():
    w0, w1 = dogs = pair()
    poll_all(dogs, 0.0)
    poll_all(dogs, 0.0)
    with w1.waiting():  # rank 1 waits in a collective that rank 0, stuck elsewhere, never enters
        assert poll_all(dogs, 9.0) == [[], []]
        messages = poll_all(dogs, 30.0)
    assert messages[0] == messages[1] == [
        "rank 0 has made no progress for 30 s outside collectives (its last progress: start of training)"]


def test_time_spent_waiting_is_not_charged_after_the_collective():
    w0, w1 = dogs = pair()
    poll_all(dogs, 0.0)
    poll_all(dogs, 0.0)
    with w1.waiting():
        for t in range(1, 10):
            w0.progress(f"update {t}")
            assert poll_all(dogs, float(t)) == [[], []]
    # Rank 1 left the collective after 9 s and publishes that at 10 s, which rank 0 reads at 11 s (it
    # polls first): the clocks for rank 1 start there, not at 0 s.
    for t in range(10, 21):
        w0.progress(f"update {t}")
        assert poll_all(dogs, float(t)) == [[], []]
    w0.progress("update 22")
    assert poll_all(dogs, 22.0) == [
        ["rank 1 has made no progress for 11 s outside collectives (its last progress: start of training)"],
        ["rank 1 has made no progress for 12 s outside collectives (its last progress: start of training)"]]


def test_a_silent_heartbeat_is_a_hang_even_inside_a_collective():
    # A stopped process (SIGSTOP) publishes nothing more, wherever it was: here inside a collective.
    w0, w1 = pair()
    with w1.waiting():
        w1.poll(0.0)
    w0.poll(0.0)
    for t in (5.0, 10.0):
        w0.progress(f"update {t:g}")
        assert w0.poll(t) == []
    w0.progress("update 11")
    assert w0.poll(11.0) == ["rank 1 is not responding: no heartbeat for 11 s (stopped, frozen or gone; "
                             "its last progress: start of training)"]


def test_finished_ranks_and_ranks_not_started_yet():
    w0, w1, w2 = dogs = pair(world=3)
    w2.poll(0.0)
    w2.stop()  # finished: it publishes that it is done, and nobody waits for its heartbeat any more
    w0.poll(0.0)
    for t in (4.0, 8.0):
        w0.progress(f"update {t:g}")
        assert w0.poll(t) == []  # rank 1 has not published yet: not a hang before the timeout
    w0.progress("update 11")
    assert w0.poll(11.0) == ["rank 1 never started its heartbeat (10 s)"]
    del dogs


def test_the_thread_reports_a_stuck_rank_and_only_then():
    store = dist.HashStore()
    reports: dict[int, list[str]] = {}
    reported = threading.Event()

    def on_hang(rank):
        def record(messages):
            reports[rank] = messages
            reported.set()
        return record

    dogs = [Watchdog(store, r, 2, 0.5, interval=0.02, on_hang=on_hang(r)).start() for r in range(2)]
    try:
        for i in range(10):  # both make progress: nothing to report
            for dog in dogs:
                dog.progress(f"update {i}")
            time.sleep(0.05)
        assert not reported.is_set()
        start = time.monotonic()
        while time.monotonic() - start < 10 and len(reports) < 2:  # rank 1 stops; rank 0 goes on
            dogs[0].progress("update")
            time.sleep(0.02)
        assert time.monotonic() - start >= 0.4  # the timeout, less the last sleep before start
    finally:
        for dog in dogs:
            dog.stop()
    assert set(reports) == {0, 1}
    assert all(m[0].startswith("rank 1 has made no progress for ") and m[0].endswith("(its last progress: update 9)")
               for m in reports.values())


def test_the_first_verdict_is_the_one_every_rank_reports():
    w0, w1 = dogs = pair()
    poll_all(dogs, 0.0)
    poll_all(dogs, 0.0)
    # Rank 1 finds itself stuck at 12 s by its clock; rank 0's clock saw rank 1 act later, so on its own
    # it would not call the hang yet. After rank 1's verdict it reports the same words.
    w0.progress("update 1")
    verdict = w1.poll(12.0)
    assert verdict and w0.poll(1.0) != verdict
    assert w1.stuck_here
    assert w1.publish_verdict(verdict, w1.stuck)
    assert not w1.publish_verdict(["a later verdict"])  # the first one stays
    assert w0.poll(2.0) == verdict and not w0.stuck_here


def test_a_stuck_rank_that_reads_the_verdict_knows_it_is_the_one_named():
    # Rank 0 finds rank 1 stuck first; rank 1 (whose main thread is stuck) reads the verdict and must
    # still print where it is stuck.
    w0, w1 = dogs = pair()
    w1.progress("after_step at update 3")
    poll_all(dogs, 0.0)
    poll_all(dogs, 0.0)
    w0.progress("update 4")
    verdict = w0.poll(12.0)
    assert w0.stuck == [1] and not w0.stuck_here
    assert w0.publish_verdict(verdict, w0.stuck)
    assert w1.poll(0.5) == verdict and w1.stuck_here


def test_the_first_finder_waits_for_the_others_to_read_its_verdict_within_the_grace():
    # Without torchrun the store lives in rank 0's process: if rank 0 found the hang and exited at once,
    # the stuck rank could no longer read which rank was named (it would report the store as gone).
    store = dist.HashStore()
    w0, w1 = dogs = [Watchdog(store, rank, 2, 0.5, interval=0.02) for rank in range(2)]  # grace 1.06 s
    poll_all(dogs, 0.0)
    assert w0.publish_verdict(["rank 1 has made no progress for 1 s outside collectives"])
    start = time.monotonic()
    assert not w0.await_readers()  # rank 1 has not polled: bounded wait, then go on
    assert w0.grace - 0.05 <= time.monotonic() - start < w0.grace + 1.0
    assert w1.poll(0.1) == ["rank 1 has made no progress for 1 s outside collectives"]
    assert not w1.stuck_here  # published without naming stuck ranks
    start = time.monotonic()
    assert w0.await_readers() and time.monotonic() - start < 0.5  # read: no wait


def test_the_first_finder_does_not_wait_for_ranks_that_are_done():
    store = dist.HashStore()
    w0, w1 = dogs = [Watchdog(store, rank, 2, 0.5, interval=0.02) for rank in range(2)]
    w1.stop()  # rank 1 finished its run
    poll_all(dogs, 0.0)
    assert w0.publish_verdict(["rank 0 has made no progress for 1 s outside collectives"])
    start = time.monotonic()
    assert w0.await_readers() and time.monotonic() - start < 0.5


def test_a_collective_that_fails_waits_for_the_verdict_then_raises():
    store = dist.HashStore()
    reports: list[list[str]] = []
    dog = Watchdog(store, 0, 2, 0.5, interval=0.02, on_hang=reports.append).start()
    other = Watchdog(store, 1, 2, 0.5)
    try:
        other.publish_verdict(["rank 1 has made no progress for 5 s outside collectives"])
        start = time.monotonic()
        try:
            with dog.waiting():
                raise RuntimeError("Connection closed by peer")  # what gloo raises when the peer exits
        except RuntimeError:
            pass
        else:
            raise AssertionError("the collective's error must propagate after the grace period")
        assert time.monotonic() - start >= dog.grace - 0.05
    finally:
        dog.stop()
    assert reports == [["rank 1 has made no progress for 5 s outside collectives"]]


def test_the_runs_own_errors_in_a_collective_do_not_wait_for_a_verdict():
    class RunError(RuntimeError):  # as NonFiniteLossError: raised by the run, not by the backend
        pass

    dog = Watchdog(dist.HashStore(), 0, 2, 30.0)  # grace 4 s
    start = time.monotonic()
    try:
        with dog.waiting():
            raise RunError("non-finite loss")
    except RunError:
        pass
    assert time.monotonic() - start < 1.0
