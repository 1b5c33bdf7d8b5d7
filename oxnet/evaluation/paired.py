"""Paired per-seed differences between two rows: the mean with a Student-t interval, and its verdict."""

import statistics

__all__ = ["interval_text", "paired_t_interval", "verdict"]


def paired_t_interval(diffs, level=0.95):
    """``(mean, low, high)``: the mean of paired per-seed differences (None entries skipped) and its
    two-sided ``level`` confidence interval (Student's t with n - 1 degrees of freedom); None for
    fewer than 2 pairs."""
    from scipy import stats

    diffs = [d for d in diffs if d is not None]
    if len(diffs) < 2:
        return None
    mean = statistics.mean(diffs)
    half = stats.t.ppf(0.5 + level / 2, len(diffs) - 1) * statistics.stdev(diffs) / len(diffs) ** 0.5
    return mean, mean - half, mean + half


def verdict(interval, higher_is_better=True):
    """ "better" or "worse" when the interval excludes 0, else "not resolved" ("n/a" without one)."""
    if interval is None:
        return "n/a"
    _, low, high = interval
    if low > 0:
        return "better" if higher_is_better else "worse"
    if high < 0:
        return "worse" if higher_is_better else "better"
    return "not resolved"


def interval_text(interval, higher_is_better=True, digits=2):
    """``"+1.20 [+0.30, +2.10] better"``, or "n/a"."""
    if interval is None:
        return "n/a"
    mean, low, high = interval
    return f"{mean:+.{digits}f} [{low:+.{digits}f}, {high:+.{digits}f}] {verdict(interval, higher_is_better)}"
