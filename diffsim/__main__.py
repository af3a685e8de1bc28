"""``python -m diffsim``: the ``diffsim`` command."""

from diffsim.cli import main

raise SystemExit(main())
