"""``python -m streams.worker``: a worker instance; ``python -m streams.worker --stage
NAME``: one of its stages (started by the instance, not by hand)."""

from __future__ import annotations

import sys

from streams.worker import process

if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == process.FLAG:
        # Only a stage's process loads the stages (the instance stays small).
        from streams.worker import stage

        stage.main(sys.argv[2])
    else:
        process.main()
