"""The edges of the backbone: source connectors (Debezium configs), the subscriber SDK
departments import, and the reference department sinks built on it."""
