"""The query API (按需调用): a department looks up current state within its approval."""
