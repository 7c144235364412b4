"""Labeling rules: each looks at one customer (a dict of columns) and says churned (1), stayed (0), or None."""


def cancelled(row):
    """A customer who asked to cancel churned."""
    return 1 if row["cancel_requested"] == 1 else None


def engaged(row):
    """A customer who logged in this week and rarely calls support stayed."""
    return 0 if row["days_since_login"] <= 7 and row["support_calls"] <= 1 else None
