"""Fleet commands (jobs.RUN_COMMAND): run, stream output, enforce the deadline, cancel, report."""
