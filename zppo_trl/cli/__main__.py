"""`python -m zppo_trl.cli` is `zppo-trl`."""

from . import main

raise SystemExit(main())
