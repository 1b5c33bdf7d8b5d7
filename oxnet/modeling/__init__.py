"""OXnet modeling."""
