from edge.timeouts import MAX_EXIT_AFTER_S, exit_timeout, median_gap


def test_median_is_the_upper_one_of_an_even_count() -> None:
    assert median_gap([30]) == 30
    assert median_gap([40, 10, 30, 20]) == 30
    assert median_gap([10, 500, 20]) == 20


def test_the_timeout_is_three_medians_within_bounds() -> None:
    assert exit_timeout([], 120) == 120
    assert exit_timeout([20, 30, 25], 120) == 120
    assert exit_timeout([100, 130, 110], 120) == 330
    assert exit_timeout([400, 300], 120) == MAX_EXIT_AFTER_S
    assert exit_timeout([400], 900) == 900  # a minimum above the maximum wins
