"""OXnet engine."""
