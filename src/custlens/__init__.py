"""custlens: customer data analytics — integrate, clean, protect, unify, analyze, report."""

from custlens.errors import CustlensError
from custlens.workspace import Workspace, init
from custlens.workspace import open_workspace as open  # noqa: A001

__version__ = "0.1.0"
__all__ = ["CustlensError", "Workspace", "init", "open", "__version__"]
