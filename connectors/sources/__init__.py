"""Source connectors: Debezium configs from the topology, applied through Connect's REST API."""
