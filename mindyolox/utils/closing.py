"""``with`` support for objects that own a resource released by ``close()``."""
import sys

__all__ = ["Closing"]


class Closing:
    """Mixin: ``with obj:`` calls ``obj.close()`` at the end of the block. When the block ends
    by an error and the close fails too, the close's failure is one note on stderr naming
    :attr:`closing_what` and the error in flight stays the one raised (a full disk, a signal)."""

    closing_what = "the resource"   # as it reads in "note: <resource> was not released either"

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.close()
            return False
        try:
            self.close()
        except Exception as e:  # the error in flight is the one to show
            print(f"note: {self.closing_what} was not released either ({type(e).__name__}: {e})", file=sys.stderr)
        return False
