"""Reading bulk files: every request line becomes an item or an error with its line number."""

import json

import pytest

from provisioning.bulk import (
    BulkError,
    BulkItem,
    RequesterInFile,
    format_for,
    normalize_key,
    parse,
    parse_csv,
    parse_jsonl,
)


def line(obj) -> str:
    return json.dumps(obj)


# --- JSON lines -------------------------------------------------------------------------------------------------

def test_jsonl_good_lines():
    text = "\n".join([
        line({"connector": "acme", "action": "group.add-member",
              "params": {"group": "Engineering", "user": "alice@example.com"}}),
        line({"connector": "acme", "action": "user.suspend", "params": {"user": "bob"},
              "idempotency_key": "HR-1029", "on_behalf_of": "hr"}),
    ])
    assert parse_jsonl(text) == [
        (1, BulkItem("acme", "group.add-member", {"group": "Engineering", "user": "alice@example.com"})),
        (2, BulkItem("acme", "user.suspend", {"user": "bob"}, idempotency_key="HR-1029", on_behalf_of="hr")),
    ]


def test_jsonl_params_are_passed_as_given():
    """The parser does not judge the parameters: the core validates them and records a rejection."""
    text = line({"connector": "acme", "action": "user.create", "params": {"email": 3, "nonsense": [1]}})
    assert parse_jsonl(text) == [(1, BulkItem("acme", "user.create", {"email": 3, "nonsense": [1]}))]


def test_jsonl_blank_lines_are_skipped_but_counted():
    good = line({"connector": "acme", "action": "user.suspend", "params": {"user": "bob"}})
    parsed = parse_jsonl(f"\n{good}\n   \n\t\n{good}\n\n")
    assert [n for n, _ in parsed] == [2, 5]
    assert all(isinstance(item, BulkItem) for _, item in parsed)


def test_jsonl_only_newline_ends_a_line():
    """A JSON string may hold U+2028 or a form feed unescaped; that does not start a new line."""
    text = json.dumps({"connector": "acme", "action": "user.create",
                       "params": {"email": "a@b.c", "username": "a", "displayname": "A\u2028B\x0cC"}},
                      ensure_ascii=False)
    assert "\u2028" in text
    [(n, item)] = parse_jsonl(text + "\n")
    assert n == 1 and item.params["displayname"] == "A\u2028B\x0cC"


def test_jsonl_bad_json_is_reported_and_does_not_stop_the_rest():
    good = line({"connector": "acme", "action": "user.suspend", "params": {"user": "bob"}})
    parsed = parse_jsonl("\n".join([good, '{"connector": "acme", "action":', good, "not json", good]))
    assert [n for n, _ in parsed] == [1, 2, 3, 4, 5]
    kinds = [type(item) for _, item in parsed]
    assert kinds == [BulkItem, BulkError, BulkItem, BulkError, BulkItem]
    error = parsed[1][1]
    assert error.message.startswith("not valid JSON")
    assert not error.recordable  # nothing could be read of it


@pytest.mark.parametrize("value, kind", [([1, 2], "an array"), ("text", "a string"), (3, "a number"),
                                          (None, "null"), (True, "a boolean")])
def test_jsonl_line_must_be_an_object(value, kind):
    [(n, error)] = parse_jsonl(json.dumps(value))
    assert n == 1 and isinstance(error, BulkError)
    assert error.message == f"a line must be a JSON object, not {kind}"


def test_jsonl_missing_connector_and_action():
    [(_, error)] = parse_jsonl(line({"params": {"user": "bob"}}))
    assert isinstance(error, BulkError)
    assert "connector is required" in error.message and "action is required" in error.message
    assert not error.recordable


def test_jsonl_missing_params_is_recordable():
    [(_, error)] = parse_jsonl(line({"connector": "acme", "action": "user.suspend"}))
    assert isinstance(error, BulkError)
    assert "params is required" in error.message
    assert error.recordable and (error.connector, error.action) == ("acme", "user.suspend")
    assert error.body == {"connector": "acme", "action": "user.suspend"}


def test_jsonl_params_not_an_object():
    [(_, error)] = parse_jsonl(line({"connector": "acme", "action": "user.suspend", "params": ["bob"]}))
    assert error.message == "params must be an object, not an array"
    assert error.recordable


def test_jsonl_unknown_key():
    [(_, error)] = parse_jsonl(line({"connector": "acme", "action": "user.suspend", "params": {"user": "b"},
                                     "priority": "high"}))
    assert isinstance(error, BulkError)
    assert "unknown key 'priority'" in error.message and "known: connector, action, params" in error.message


@pytest.mark.parametrize("field", ["connector", "action"])
@pytest.mark.parametrize("value", ["", "   ", 7, None])
def test_jsonl_connector_and_action_must_be_non_empty_strings(field, value):
    body = {"connector": "acme", "action": "user.suspend", "params": {"user": "bob"}, field: value}
    [(_, error)] = parse_jsonl(line(body))
    assert isinstance(error, BulkError)
    assert f"{field} must be a non-empty string" in error.message
    assert not error.recordable


@pytest.mark.parametrize("field", ["idempotency_key", "on_behalf_of"])
def test_jsonl_optional_text_fields(field):
    base = {"connector": "acme", "action": "user.suspend", "params": {"user": "bob"}}
    [(_, ok)] = parse_jsonl(line({**base, field: None}))
    assert isinstance(ok, BulkItem) and getattr(ok, field) is None
    for bad in ("", 5):
        [(_, error)] = parse_jsonl(line({**base, field: bad}))
        assert isinstance(error, BulkError) and f"{field} must be a non-empty string or null" in error.message
    [(_, error)] = parse_jsonl(line({**base, field: "k" * 257}))
    assert isinstance(error, BulkError) and "longer than 256" in error.message


def test_jsonl_byte_order_mark_and_crlf():
    good = line({"connector": "acme", "action": "user.suspend", "params": {"user": "bob"}})
    parsed = parse_jsonl("\ufeff" + good + "\r\n" + good + "\r\n")
    assert [(n, type(item)) for n, item in parsed] == [(1, BulkItem), (2, BulkItem)]


def test_jsonl_empty_file():
    assert parse_jsonl("") == [] and parse_jsonl("\n\n  \n") == []


# --- CSV --------------------------------------------------------------------------------------------------------

def test_csv_good_rows_and_empty_cells_ignored():
    text = ("connector,action,group,user,app,idempotency_key,on_behalf_of\n"
            "acme,group.add-member,Engineering,alice@example.com,,T-1,\n"
            "acme,app.grant,,alice@example.com,Slack,,helpdesk\n"
            "beta,app.grant,Sales,,Slack,,\n")
    assert parse_csv(text) == [
        (2, BulkItem("acme", "group.add-member", {"group": "Engineering", "user": "alice@example.com"},
                     idempotency_key="T-1")),
        (3, BulkItem("acme", "app.grant", {"user": "alice@example.com", "app": "Slack"}, on_behalf_of="helpdesk")),
        (4, BulkItem("beta", "app.grant", {"group": "Sales", "app": "Slack"})),
    ]


def test_csv_header_names_are_normalised_and_cells_stripped():
    text = (" Connector , ACTION ,Email,Username,Job-Title,Idempotency-Key\n"
            " acme , user.create , a@example.com ,  al , CTO ,  k1 \n")
    assert parse_csv(text) == [
        (2, BulkItem("acme", "user.create", {"email": "a@example.com", "username": "al", "job_title": "CTO"},
                     idempotency_key="k1")),
    ]


def test_csv_missing_columns_is_one_error_on_the_header():
    assert parse_csv("connector,group,user\nacme,Eng,alice\n") == [
        (1, BulkError("the header has no action column (it must name connector, action and the parameters; "
                      "got connector, group, user)"))]
    [(n, error)] = parse_csv("\n\ngroup,user\nEng,alice\n")
    assert n == 3 and "no connector and no action column" in error.message


def test_csv_column_named_twice():
    [(n, error)] = parse_csv("connector,action,user,User\nacme,user.suspend,bob,bob\n")
    assert n == 1 and error.message == "the header names user more than once"


def test_csv_empty_connector_or_action():
    text = "connector,action,user\nacme,,bob\n,user.suspend,bob\n,,bob\n"
    parsed = parse_csv(text)
    assert [n for n, _ in parsed] == [2, 3, 4]
    messages = [item.message for _, item in parsed]
    assert messages == ["action is empty", "connector is empty", "connector and action are empty"]
    assert not any(item.recordable for _, item in parsed)


def test_csv_wrong_number_of_cells_is_reported_per_row():
    text = "connector,action,user\nacme,user.suspend,bob,extra\nacme,user.suspend\nacme,user.suspend,carol\n"
    parsed = parse_csv(text)
    assert [(n, type(item)) for n, item in parsed] == [(2, BulkError), (3, BulkError), (4, BulkItem)]
    too_many, too_few = parsed[0][1], parsed[1][1]
    assert too_many.message == "4 cells, but the header has 3 columns"
    assert too_few.message == "2 cells, but the header has 3 columns"
    assert parse_csv("connector,action,user\nacme\n")[0][1].message == "1 cell, but the header has 3 columns"
    # it named its connector and action, so it can be recorded as a rejected request
    assert too_many.recordable
    assert too_many.body == {"connector": "acme", "action": "user.suspend", "params": {"user": "bob"}}


def test_csv_trailing_comma_column_without_name():
    text = "connector,action,user,\nacme,user.suspend,bob,\nacme,user.suspend,bob,oops\n"
    parsed = parse_csv(text)
    assert parsed[0] == (2, BulkItem("acme", "user.suspend", {"user": "bob"}))
    assert parsed[1][0] == 3 and parsed[1][1].message == "a value in a column that has no name in the header"


def test_csv_line_numbers_follow_the_file_with_blank_lines_and_quoted_newlines():
    text = ('connector,action,user,displayname\n'
            '\n'
            'acme,user.suspend,bob,\n'
            'acme,user.create,x,"two\nlines"\n'
            '  ,  ,  ,  \n'
            'acme,user.suspend,carol,\n')
    parsed = parse_csv(text)
    assert [n for n, _ in parsed] == [3, 4, 7]
    assert parsed[1][1].params == {"user": "x", "displayname": "two\nlines"}


def test_csv_quoting_and_commas_in_values():
    text = 'connector,action,group,user\nacme,group.add-member,"Sales, EMEA","o\'brien"\n'
    assert parse_csv(text) == [(2, BulkItem("acme", "group.add-member", {"group": "Sales, EMEA", "user": "o'brien"}))]


def test_csv_byte_order_mark_and_crlf():
    text = "\ufeffconnector,action,user\r\nacme,user.suspend,bob\r\n"
    assert parse_csv(text) == [(2, BulkItem("acme", "user.suspend", {"user": "bob"}))]


def test_csv_header_only_or_empty():
    assert parse_csv("") == []
    assert parse_csv("connector,action,user\n") == []


def test_csv_too_long_idempotency_key():
    [(_, error)] = parse_csv("connector,action,user,idempotency_key\nacme,user.suspend,bob," + "k" * 300 + "\n")
    assert isinstance(error, BulkError) and "idempotency_key longer than 256" in error.message
    assert error.recordable


# --- helpers ----------------------------------------------------------------------------------------------------

def test_format_for_extension():
    assert format_for("x.CSV") == "csv"
    assert format_for("a/b.jsonl") == "jsonl" and format_for("b.ndjson") == "jsonl" and format_for("b.json") == "jsonl"
    assert format_for("requests.txt") is None and format_for("-") is None


def test_parse_dispatches_and_rejects_unknown_format():
    assert parse("connector,action\n", "csv") == []
    assert parse("", "jsonl") == []
    with pytest.raises(ValueError):
        parse("", "xml")


def test_normalize_key():
    assert normalize_key(" Job-Title ") == "job_title"


# --- who asks is not the file's to say --------------------------------------------------------------------------

def test_a_jsonl_file_naming_requested_by_is_refused_whole_naming_the_lines():
    good = line({"connector": "acme", "action": "user.suspend", "params": {"user": "bob"}})
    naming = line({"connector": "acme", "action": "user.suspend", "params": {"user": "bob"}, "requested_by": "hr"})
    null = line({"connector": "acme", "action": "user.suspend", "params": {"user": "bob"}, "requested_by": None})
    with pytest.raises(RequesterInFile) as caught:
        parse_jsonl("\n".join([good, naming, "{not json", good, null]))
    assert caught.value.lines == [2, 5]
    assert str(caught.value).startswith("lines 2, 5: requested_by cannot be set in a bulk file")
    assert "use on_behalf_of" in str(caught.value)
    with pytest.raises(RequesterInFile, match="^line 1: requested_by"):
        parse("\n".join([naming, good]), "jsonl")


def test_many_lines_naming_requested_by_are_summed_up():
    naming = line({"connector": "acme", "action": "user.suspend", "params": {}, "requested_by": "x"})
    with pytest.raises(RequesterInFile, match="^lines 1, 2, 3, 4, 5, 6, 7, 8, 9, 10 and 2 more: "):
        parse_jsonl("\n".join([naming] * 12))


@pytest.mark.parametrize("header", ["connector,action,user,requested_by", "connector,action,user, Requested-By "])
def test_a_csv_file_with_a_requested_by_column_is_refused(header):
    with pytest.raises(RequesterInFile, match="^line 2: requested_by cannot be set"):
        parse_csv(f"\n{header}\nacme,user.suspend,bob,\n")
