from peers.progress import Progress


def test_a_line_is_due_once_a_second_with_the_rate_since_the_last() -> None:
    progress = Progress()
    assert not progress.due(10.0)  # starts the clock
    assert not progress.due(10.5)
    assert progress.due(11.0)
    assert progress.rate(30, 11.0) == 30.0
    assert not progress.due(11.9)
    assert progress.due(12.5)
    assert progress.rate(75, 12.5) == 30.0
