"""Save coverage data before a measured process kills itself with a signal.

twistd stops its reactor on SIGTERM, then restores the default handler and sends the signal to
itself again (``twisted.application.app._exitWithSignal``), so the process ends without running
``atexit`` and coverage's data would be lost. scripts/run-tests.sh installs this code as a .pth
file in the environment (after coverage's own, which starts measuring): in a process that coverage
measures it saves the data when the process sends itself a terminating signal; anywhere else it
does nothing.
"""

import os
import signal
import sys


def _install() -> None:
    try:
        import coverage
    except ImportError:
        return
    measuring = coverage.Coverage.current()
    if measuring is None:
        return
    fatal = {signal.SIGTERM, signal.SIGINT, signal.SIGHUP}

    def save_before_self_kill(event: str, args: tuple[object, ...]) -> None:
        if event == "os.kill" and args[0] == os.getpid() and args[1] in fatal:
            measuring.save()

    sys.addaudithook(save_before_self_kill)


if os.environ.get("COVERAGE_PROCESS_CONFIG") or os.environ.get("COVERAGE_PROCESS_START"):
    _install()
