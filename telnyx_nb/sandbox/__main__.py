"""``python -m telnyx_nb.sandbox [--host H] [--port N]``: the sandbox as a server, like ``telnyx-nb
sandbox``; with ``--child``, the process ``Sandbox.start()`` spawns (see ``child``)."""

import sys

from telnyx_nb.sandbox.child import main

sys.exit(main())
