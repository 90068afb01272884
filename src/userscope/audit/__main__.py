"""``python -m userscope.audit audit PATH...``."""

from userscope.audit import main

raise SystemExit(main())
