"""Face-VFX batch pipeline: shot manifests in, versioned renders out."""

__version__ = "0.1.0"
TOOL_NAME = "vfx-pipeline"
