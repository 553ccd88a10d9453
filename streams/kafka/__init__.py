"""Kafka and schema-registry clients: logins, admin, serde, topic reading, and the applied
topology kept on Kafka."""
