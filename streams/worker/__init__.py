"""`govsync worker`: one process per worker instance (``process``), which runs each stage
— normalize, route, ledger — in a child process of its own (``stage``), so the stages use
as many cores as the machine has instead of sharing one interpreter lock."""
