"""SIGTERM within a job's wait: an exception the cleanup sees, only inside the block, only in the main thread."""

import os
import signal
import threading

import pytest

from omnifm_monai.flare.process_tree import sigterm_raises_exit


def test_sigterm_inside_the_block_raises_exit_143_and_the_previous_handler_comes_back():
    # Prepare: a handler that records, standing for whatever the process had before
    received = []
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: received.append(signum))
    try:
        # Execute and assert: inside, SIGTERM is an exception the caller's `except` can clean up after
        with pytest.raises(SystemExit) as raised, sigterm_raises_exit():
            os.kill(os.getpid(), signal.SIGTERM)
            raise AssertionError("SIGTERM did not raise inside the block")
        assert raised.value.code == 128 + signal.SIGTERM and received == []
        os.kill(os.getpid(), signal.SIGTERM)  # after the block: the earlier handler again
        assert received == [signal.SIGTERM]
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_outside_the_main_thread_the_block_runs_unchanged():
    # Python sets signal handlers only in the main thread: elsewhere the block must not fail
    ran, errors = [], []

    def in_a_thread():
        try:
            with sigterm_raises_exit():
                ran.append(signal.getsignal(signal.SIGTERM))
        except Exception as e:  # noqa: BLE001 - the assertion below reports it
            errors.append(e)

    before = signal.getsignal(signal.SIGTERM)
    thread = threading.Thread(target=in_a_thread)
    thread.start()
    thread.join()
    assert errors == [] and ran == [before]
