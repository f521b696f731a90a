"""Errors a user can act on: each prints as one line that names the file, frame or field."""


class PipelineError(Exception):
    """Bad input or an environment problem; the CLI prints it as one line and exits with status 2."""

    exit_code = 2

    def one_line(self) -> str:
        """The message as the one line the CLI prints: a message wrapped around a library's error can
        carry that error's line breaks, and a second line on stderr reads as a second error."""
        return "; ".join(part.strip() for part in str(self).splitlines() if part.strip())


class ManifestError(PipelineError):
    """A manifest that cannot be read or does not fit the schema or its plate."""


class MediaError(PipelineError):
    """A plate or output file that cannot be read, decoded or written."""


class WorkspaceError(PipelineError):
    """A render folder that cannot be created, is locked, or would be overwritten."""
