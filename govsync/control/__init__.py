"""Plan, then apply: topics, principals, ACLs, schemas and connectors from the topology."""
