"""``python -m userscope``: the ``userscope`` command."""

from userscope._cli import main

raise SystemExit(main())
