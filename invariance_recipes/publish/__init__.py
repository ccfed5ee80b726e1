"""Publishing what the comparisons measured: the findings table, README tables, W&B
dashboards and model export. May import every other wing."""
