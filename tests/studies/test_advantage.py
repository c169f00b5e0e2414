"""The advantage rule shared by the noise and design-space studies."""

from studies.advantage import kept_from, keeps_advantage


def test_a_setting_keeps_the_advantage_below_adams_loss_without_fallbacks() -> None:
    assert keeps_advantage(0.4, 0.5, 0)
    assert not keeps_advantage(0.5, 0.5, 0)  # a tie is no advantage
    assert not keeps_advantage(0.1, 0.5, 1)  # a fallback means the device alone did not train


def test_the_run_starts_at_the_most_favourable_end_and_ends_at_the_first_loss() -> None:
    widths = [(4, False), (6, True), (8, False), (10, True), (12, True)]
    assert kept_from(widths, descending=True) == 10  # 6 regaining it after 8 lost it does not count
    errors = [(0.01, True), (0.03, True), (0.1, False), (0.3, True)]
    assert kept_from(errors, descending=False) == 0.03
    assert kept_from([(0.01, False), (0.1, True)], descending=False) is None
    assert kept_from([], descending=True) is None
