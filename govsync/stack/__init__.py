"""The embedded stack: PostgreSQL, Kafka, Connect and Apicurio as plain local processes."""
