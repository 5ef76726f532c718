"""When `rdv status` calls a query ready (rdv/progress.py): past its first micro-batches with records,
whose time goes to starting workers and compiling, once its batch time has settled."""

from rdv.progress import READY_AFTER, settled


def test_a_query_is_not_ready_before_its_first_micro_batches_with_records():
    assert not settled([])
    assert not settled([300] * (READY_AFTER - 1))
    assert settled([300] * READY_AFTER)


def test_a_query_whose_batches_still_take_several_times_the_fastest_has_not_settled():
    cold = [9000, 4000, 900, 2500]  # workers starting, the JIT compiling
    assert not settled(cold)
    assert settled([*cold, 1200])
