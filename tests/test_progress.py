"""The trainer's progress bar before the first loss window. (The demo recipe trained for one
epoch with ``train.max_epoch=1``, its schedule clipped to fit, runs from the installed wheel in
``tests/test_package.py``, beside the README's custom-data commands.)"""
from mindyolox.training.trainer import progress_postfix


def test_progress_bar_shows_no_loss_before_the_first_log_window():
    """Issue 26 point 7: the bar showed ``loss nan lr 0.00e+00`` until the first log line."""
    assert progress_postfix({"total": float("nan"), "lr": 0.0}) == "loss \u2013 lr \u2013"
    assert progress_postfix({"total": 3.214, "lr": 0.01, "step": 19}) == "loss 3.21 lr 1.00e-02"
