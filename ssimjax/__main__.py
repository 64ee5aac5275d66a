"""``python -m ssimjax COMMAND``: the ``ssimjax`` command."""

from ssimjax.cli import main

raise SystemExit(main())
