"""OXnet evaluation."""
