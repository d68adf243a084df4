"""Small CLI types shared by command modules without importing the whole CLI (avoids import cycles)."""

from enum import StrEnum


class Format(StrEnum):
    """Output format of a reporting command: a Rich table, one JSON document, or CSV."""

    table = "table"
    json = "json"
    csv = "csv"


def command_hub(app, *, name: str, help: str, package: str, modules: tuple[str, ...], hook: str):  # noqa: A002
    """A sub-command group whose commands come from optional modules (`package.module.hook(group)`)."""
    import importlib

    import typer

    group = typer.Typer(help=help, no_args_is_help=True)
    for mod_name in modules:
        mod = f"{package}.{mod_name}"
        try:
            m = importlib.import_module(mod)
        except ModuleNotFoundError as e:
            if e.name == mod:
                continue
            raise
        if hasattr(m, hook):
            getattr(m, hook)(group)
    app.add_typer(group, name=name)
    return group
