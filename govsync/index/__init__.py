"""The operations indexes: lineage, audit entries and awaited receipts in PostgreSQL, kept
from the trail topics exactly once, so questions about one change or one entity are
answered by an index lookup instead of a read of the whole history."""
