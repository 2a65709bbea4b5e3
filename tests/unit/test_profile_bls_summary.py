"""benchmarks.profile_bls: py-spy's raw samples summarised by thread group."""

from benchmarks.profile_bls import summarise_samples, thread_group


def test_sender_threads_are_one_group_and_other_names_stay():
    assert thread_group("bls-send-0") == thread_group("bls-send-11") == "bls-send-*"
    assert thread_group("bls-generation-loop") == "bls-generation-loop"
    assert thread_group("Thread-1 (_poll_wrapper)") == "Thread-1 (_poll_wrapper)"


def test_samples_by_group_with_self_and_inclusive_shares():
    raw = [
        "thread (101): bls-send-0;run (a.py:1);send (b.py:2) 6",
        "thread (102): bls-send-1;run (a.py:1);wait (c.py:3) 2",
        "thread (200): bls-generation-loop;loop (d.py:1);read (e.py:9) 3",
        "thread (200): bls-generation-loop;loop (d.py:1) 1",
        "not a sample line",
    ]
    groups, names = summarise_samples(raw)
    assert names == {101: "bls-send-0", 102: "bls-send-1", 200: "bls-generation-loop"}
    senders = groups["bls-send-*"]
    assert senders.samples == 8
    assert senders.top(senders.own, 2) == [("send (b.py:2)", 0.75), ("wait (c.py:3)", 0.25)]
    assert senders.top(senders.inclusive, 1) == [("run (a.py:1)", 1.0)]
    loop = groups["bls-generation-loop"]
    assert (
        loop.samples == 4
        and loop.own["loop (d.py:1)"] == 1
        and loop.inclusive["loop (d.py:1)"] == 4
    )


def test_hexadecimal_thread_ids():
    _, names = summarise_samples(["thread (0x1f): MainThread;main (m.py:1) 1"])
    assert names == {31: "MainThread"}
