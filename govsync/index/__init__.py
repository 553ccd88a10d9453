"""The operations indexes: lineage, audit entries, awaited receipts and the dead-letter
accounting in PostgreSQL, kept from the topics exactly once, so questions about one
change, one entity or the queue are answered by an index lookup instead of a read of the
whole history."""
