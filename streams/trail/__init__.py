"""The record of what happened: lineage, the hash-chained audit trail, the receipt SLA,
OpenTelemetry spans."""
