"""The domain model: the topology (departments, entities, sources, subscriptions) and the
national standards (GB 32100, GB 11643). No I/O."""
