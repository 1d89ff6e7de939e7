"""kernel/foster.py's Foster: a reaper's reports read as waitpid's, whatever arrives."""

import os
import signal

from wsgikernel.kernel.foster import Foster


def test_reports_are_read_whole_across_partial_writes_and_junk_is_skipped():
    read, write = os.pipe()
    foster = Foster(123, read)
    try:
        assert foster.read() is True and foster.take() == []  # nothing yet: not the end
        os.write(write, b"41 %d\n42 " % (5 << 8))
        assert foster.read() and foster.take() == [(41, 5 << 8)]
        os.write(write, b"%d\nnot a report\n\n43 x\n" % signal.SIGKILL)
        assert foster.read() and foster.take() == [(42, signal.SIGKILL)]
        os.close(write)
        write = None
        assert foster.read() is False  # its end: it had no child left
    finally:
        foster.close()
        if write is not None:
            os.close(write)
