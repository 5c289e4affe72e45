"""The read side: the fold from a run's events to the WorkflowRun view, and what reads it."""
