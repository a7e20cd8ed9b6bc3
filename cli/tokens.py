"""``jumpsync tokens create | list | revoke``: the API tokens the HTTP API accepts (auth.tokens).

A token's text is printed once, by ``create``, and stored nowhere; ``list`` and ``revoke`` never show it nor its
hash. Tokens are an operator's business: whoever runs these has the config file and the database. ``created_by``
records the OS login (``cli:<login>``).
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape

from cli import output
from cli.common import ConfigOption, print_json, usage_error, use_config
from cli.output import Col, JsonOption, Output, OutputOption, WideOption

tokens_app = typer.Typer(help="API tokens for the HTTP API: create (shown once), list, revoke.", no_args_is_help=True)
console = output.stdout()
err = output.stderr()

#: Without --expires a token lasts this long: a forgotten token should not stay valid for ever.
DEFAULT_EXPIRY = "90d"
NEVER = "never"
SHOWN_ONCE = ("This is the only time the token is shown: store it now. It cannot be shown again, only revoked "
              "(jumpsync tokens revoke NAME) and replaced.")

TOKEN_COLUMNS = (Col("id"), Col("name"), Col("state", style=output.status_style),
                 Col("scopes", wrap=True), Col("last used", time=True, drop=1), Col("expires", time=True, drop=2),
                 Col("revoked", time=True, drop=3), Col("created", time=True, drop=4), Col("created by", drop=5))


def _expiry(text: str) -> timedelta | None:
    from config.values import parse_duration

    if text.strip().lower() == NEVER:
        return None
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise usage_error(f"--expires: {exc}; or {NEVER}") from None


def _engine():
    from worker import runtime

    return runtime.engine()


@tokens_app.command("create")
def create(name: str = typer.Argument(..., help="A name for the token, e.g. the system that will use it."),
           scope: list[str] = typer.Option(..., "--scope", metavar="SCOPE",
                                           help="provision:<connector|*>[:<action|*>], read:<connector|*> or "
                                                "approve:<connector|*>; repeatable."),
           expires: str = typer.Option(DEFAULT_EXPIRY, "--expires",
                                       help=f"Lifetime, e.g. 30d, 12h, 1d12h; or {NEVER}."),
           as_json: bool = JsonOption,
           config: Optional[Path] = ConfigOption) -> None:
    """Create an API token and print it, once; only its SHA-256 digest is stored."""
    use_config(config)
    from auth.local import cli_requester
    from auth.scopes import InvalidScope
    from auth.tokens import TokenError, create_token

    expires_in = _expiry(expires)
    try:
        text, info = create_token(_engine(), name, scope, expires_in, cli_requester())
    except (InvalidScope, TokenError) as exc:
        raise usage_error(str(exc)) from None
    if as_json:
        print_json({"token": text, **info.to_json()})
    else:
        console.print(text, markup=False, highlight=False, soft_wrap=True)
        until = f"expires {info.expires_at:%Y-%m-%d %H:%M} UTC" if info.expires_at else "never expires"
        err.print(f"created token {escape(info.name)} (id {info.id}, {until}) with scopes "
                  f"{escape(' '.join(info.scopes))}")
    err.print(f"[yellow]{escape(SHOWN_ONCE)}[/yellow]")


@tokens_app.command("list")
def list_(as_json: bool = JsonOption, wide: bool = WideOption, output_: Optional[Output] = OutputOption,
          config: Optional[Path] = ConfigOption) -> None:
    """Every token, revoked and expired ones too: scopes, state, last use, expiry. Never a token's secret."""
    use_config(config)
    from auth.tokens import list_tokens

    tokens = [info.to_json() for info in list_tokens(_engine())]
    shown = output.choose(output_, wide=wide, as_json=as_json)
    if shown is Output.json:
        print_json(tokens)
        return
    if not tokens:
        output.note("no tokens; create one with jumpsync tokens create NAME --scope SCOPE", shown)
        return
    output.print_rows(TOKEN_COLUMNS, ((t["id"], t["name"], t["state"], " ".join(t["scopes"]), t["last_used_at"],
                                       t["expires_at"], t["revoked_at"], t["created_at"], t["created_by"])
                                      for t in tokens), shown)


@tokens_app.command("revoke")
def revoke(token: str = typer.Argument(..., metavar="NAME|ID", help="The token's name or id."),
           as_json: bool = JsonOption, config: Optional[Path] = ConfigOption) -> None:
    """Revoke a token, at once and for good (its name is not given to another token)."""
    use_config(config)
    from auth.tokens import TokenError
    from auth.tokens import revoke as revoke_token

    try:
        info = revoke_token(_engine(), token)
    except TokenError as exc:
        raise usage_error(str(exc)) from None
    if as_json:
        print_json(info.to_json())
    else:
        console.print(f"revoked token {escape(info.name)} (id {info.id})", highlight=False)
