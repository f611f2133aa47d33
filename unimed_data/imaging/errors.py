"""The one exception the imaging package raises for an input it cannot turn into a JPEG."""


class ImageError(Exception):
    """An input image could not be converted; the message is a reason a person can act on.

    The caller adds the file path, so a reason never repeats it, and a reason never quotes a DICOM
    header value. (The errors table does hold the source path, which is the user's own.)
    """


class UnrecognisedFormatError(ImageError):
    """No decoder recognises the file's content; lets the dispatcher try the next decoder."""

    def __init__(self, reason: str = "not a recognised image format") -> None:
        super().__init__(reason)


class TooSmallError(ImageError):
    """The image decodes but is smaller than the minimum side: filtered out, not failed."""


def describe(exc: BaseException, limit: int = 600) -> str:
    """An exception as one line, "Type: message": decoder messages can run to many lines.

    An OSError's strerror is used where it has one, as it leaves out the file name. A message
    longer than `limit` is cut with a visible `…`, so a reader knows there was more.
    """
    detail = getattr(exc, "strerror", None) or " ".join(str(exc).split())
    text = f"{type(exc).__name__}: {detail}"
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"
