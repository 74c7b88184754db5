"""The symbolic process behind r1lab.grading.verify: answers, kills on time, survives, recovers."""

from __future__ import annotations

import multiprocessing
import time

import pytest

from r1lab.grading import verify
from r1lab.grading.verify_worker import REPLY_GRACE_S, SymbolicProcess

SLOW = "(x+1)^{999}"  # sympy needs ~10 s to compare this with x+1


@pytest.fixture(scope="module")
def proc():
    p = SymbolicProcess()
    assert p.warm_up()
    yield p
    p.close()


def test_compares_symbolically(proc):
    assert proc.equal("x^2-1", "(x-1)(x+1)", 5.0) is True
    assert proc.equal("(1,2]", "(1,2)", 5.0) is False
    assert proc.equal("\\frac{\\sqrt{2}}{2}", "\\sqrt{2}/2", 5.0) is True


def test_a_timeout_kills_only_that_comparison(proc):
    zygote = proc._proc.pid
    start = time.perf_counter()
    assert proc.equal(SLOW, "x+1", 0.5) is None
    assert time.perf_counter() - start < 0.5 + REPLY_GRACE_S
    start = time.perf_counter()
    assert proc.equal("x+1", "1+x", 5.0) is True
    assert time.perf_counter() - start < 1.0  # no restart was needed
    assert proc._proc.pid == zygote


def test_a_dead_process_is_replaced(proc):
    proc._proc.kill()
    proc._proc.wait()
    assert proc.equal("2x", "x+x", 30.0) is True


def test_a_parse_failure_is_not_equal(proc):
    assert proc.equal("\\frac{", "}}", 5.0) is False


def _grade_in_worker(pair):
    return verify.answers_equal(*pair, timeout=30.0)


def test_works_inside_a_daemonic_pool_worker():
    # multiprocessing.Pool workers are daemonic and may not start multiprocessing children; the
    # symbolic process is a plain subprocess, so grading there still has its limit.
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        assert pool.map(_grade_in_worker, [("\\frac{1}{\\sqrt{3}}", "\\frac{\\sqrt{3}}{3}"), ("\\sin x", "\\cos x")]) == [True, False]
