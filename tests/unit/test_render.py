"""Data from JumpCloud is shown as data: no markup, no terminal control sequences."""

from rich.console import Console

from cli.output import cell


def render(value, **kwargs) -> str:
    console = Console(record=True, width=200, color_system="truecolor", force_terminal=True)
    console.print(cell(value, **kwargs))
    return console.export_text(styles=True)


def test_markup_and_escapes_are_shown_literally():
    out = render("[red]admin[/red] \x1b[2J\x1b]0;pwned\x07 ok\x00")
    assert "[red]admin[/red]" in out
    assert "\x1b[2J" not in out and "\x07" not in out and "\x00" not in out
    assert "\\x1b[2J" in out and "\\x07" in out and "\\x00" in out
    assert render("Zoë 👩‍💻 tab").startswith("Zoë 👩‍💻 tab")  # unicode is shown as it is


def test_limit_and_none():
    assert render("x" * 50, limit=10).strip() == "x" * 9 + "…"
    assert render(None).strip() == ""
