"""What govsync promises on the wire: topic and group names, headers, Avro schemas, the
records of its own topics. No I/O."""
