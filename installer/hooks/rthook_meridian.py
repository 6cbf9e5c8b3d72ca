"""PyInstaller runtime hook: runs inside the packaged app before main.py.

1. MERIDIAN_BUNDLE_CHECK=1 prints what the bundle holds as JSON and exits (support and tests/packaging).
2. Otherwise, on Linux, checks the system libraries and the Qt platform plugin a window needs, and if
   one is missing prints (and, from the desktop menu, shows) a sentence naming the package to install,
   instead of Qt's abort or an ImportError traceback.
"""

import os
import sys
from pathlib import Path


def _meridian_before_main() -> None:
    bundle = Path(getattr(sys, "_MEIPASS", Path(sys.executable).parent))
    if os.environ.get("MERIDIAN_BUNDLE_CHECK"):
        import meridian_bundle_check

        sys.exit(meridian_bundle_check.run(bundle))
    import meridian_launch_check

    code = meridian_launch_check.check_linux(sys.argv, os.environ, bundle)
    if code is not None:
        sys.exit(code)


_meridian_before_main()
