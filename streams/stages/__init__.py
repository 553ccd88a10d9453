"""The worker's stages, each a Stage for the engine: normalize, route, ledger."""
