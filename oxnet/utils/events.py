"""The training loop's state as detectron2's event storage holds it."""

from detectron2.utils.events import get_event_storage


def current_iteration():
    """The training iteration of the current EventStorage (0 outside a training loop)."""
    try:
        return max(get_event_storage().iter, 0)
    except AssertionError:
        return 0
