"""``python -m ajuste``: the ``ajuste`` command, for an environment whose scripts folder is not on the PATH."""

from ajuste.cli.main import main

raise SystemExit(main())
