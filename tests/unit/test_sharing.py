from __future__ import annotations

from webhook.core.sharing import remember, shared


def test_a_remembered_value_is_returned_and_a_full_table_starts_again() -> None:
    table: dict[str, int] = {}
    assert remember(table, "a", 1, limit=2) == 1
    assert remember(table, "b", 2, limit=2) == 2
    assert table == {"a": 1, "b": 2}
    assert remember(table, "c", 3, limit=2) == 3
    assert table == {"c": 3}  # emptied at the limit, never grown past it


def test_shared_returns_the_equal_value_already_held() -> None:
    table: dict[str, str] = {}
    first = "".join(["registry.example.com/", "go-runner"])
    second = "".join(["registry.example.com/", "go-runner"])
    assert first is not second
    assert shared(table, first, limit=4) is first
    assert shared(table, second, limit=4) is first
