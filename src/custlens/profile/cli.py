"""`custlens profile …` and `custlens tags …`."""

import typer

from custlens.cli_common import Format

profile_app = typer.Typer(help="Customer 360: identity stitching and the customer profile.", no_args_is_help=True)
tags_app = typer.Typer(help="Declarative customer tags (basic, behaviour, value).", no_args_is_help=True)


@profile_app.command("build")
def build_cmd(as_of: str = typer.Option(None, "--as-of", help="As-of date (default: last day in the data)."),
              fmt: Format = typer.Option(Format.table, "--format")) -> None:
    """Stitch identities, build customer_profile, and evaluate the tags."""
    from datetime import date

    from custlens.cli import emit, open_ws
    from custlens.profile.build import build_profile
    from custlens.profile.tags import build_tags

    with open_ws() as ws:
        res = build_profile(ws, as_of=date.fromisoformat(as_of) if as_of else None)
        cov = build_tags(ws)
        d = res.to_dict()
        d["tag_coverage"] = float(cov.set_index(["tag_group", "tag_name"]).loc[("*", "*"), "coverage"]) if len(cov) else 0
        emit(d, fmt)


@profile_app.command("show")
def show_cmd(user_id: str, fmt: Format = typer.Option(Format.table, "--format")) -> None:
    """One customer's profile (masked display forms) and tags."""
    from custlens.cli import emit, open_ws
    from custlens.errors import NotFound
    from custlens.profile.identity import person_of
    from custlens.profile.tags import tags_of

    with open_ws() as ws:
        person = person_of(ws, user_id)
        p = ws.table("customer_profile")
        row = p.filter(p.user_id == person).to_pandas()
        if row.empty:
            raise NotFound(f"customer {user_id!r} has no profile", fix="run `custlens profile build`")
        d = {k: v for k, v in row.iloc[0].to_dict().items()}
        if ws.has_table("customer_tags"):
            d["tags"] = {r.tag_name: r.tag_value for r in tags_of(ws, person).itertuples()}
        emit(d, fmt)


@profile_app.command("explain")
def explain_cmd(user_id: str, fmt: Format = typer.Option(Format.table, "--format")) -> None:
    """Why a record belongs to its person: the shared identifiers (masked) that linked them."""
    from custlens.cli import emit, open_ws
    from custlens.profile.identity import explain

    with open_ws() as ws:
        emit(explain(ws, user_id), fmt)


@profile_app.command("split")
def split_cmd(user_id: str, undo: bool = typer.Option(False, "--undo", help="Undo an earlier split."),
              fmt: Format = typer.Option(Format.table, "--format")) -> None:
    """Detach a record from its merged person (reversible with --undo); re-run `profile build` after."""
    from custlens.cli import emit, open_ws
    from custlens.profile.identity import split, unsplit

    with open_ws() as ws:
        res = (unsplit if undo else split)(ws, user_id)
        emit(res.to_dict(), fmt)


@tags_app.command("build")
def tags_build(fmt: Format = typer.Option(Format.table, "--format")) -> None:
    """Evaluate every tag rule into customer_tags and show coverage."""
    from custlens.cli import emit, open_ws
    from custlens.profile.tags import build_tags

    with open_ws() as ws:
        cov = build_tags(ws)
        emit({"coverage": cov.to_dict("records")}, fmt, frame=cov)


@tags_app.command("coverage")
def tags_coverage(fmt: Format = typer.Option(Format.table, "--format")) -> None:
    """Share of customers with each tag, each group (basic, behaviour, value) and any tag."""
    from custlens.cli import emit, open_ws
    from custlens.profile.tags import coverage

    with open_ws() as ws:
        cov = coverage(ws)
        emit({"coverage": cov.to_dict("records")}, fmt, frame=cov)


@tags_app.command("list")
def tags_list(fmt: Format = typer.Option(Format.table, "--format")) -> None:
    """The tag rules in force (built-in defaults plus custlens.toml)."""
    import pandas as pd

    from custlens.cli import emit, open_ws
    from custlens.profile.tags import rules

    with open_ws() as ws:
        df = pd.DataFrame([r.model_dump() for r in rules(ws)])
        emit({"rules": df.to_dict("records")}, fmt, frame=df)


def register(app: typer.Typer) -> None:
    app.add_typer(profile_app, name="profile")
    app.add_typer(tags_app, name="tags")
