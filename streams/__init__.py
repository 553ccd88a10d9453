"""The data path: from a captured change to every approved department, exactly once.

Layers, lowest first; a module imports only from layers below its own, and `|` joins
siblings that do not import each other (docs/architecture.md, checked by `make lint`):
config | model < contract < kafka | transform < engine | trail < stages < worker.
"""
