"""The exactly-once consume-process-produce loop, the state that is pending until its
transaction commits, and the worker's metrics."""
