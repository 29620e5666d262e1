"""Migration discovery and CQL statement splitting (no Cassandra needed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from emon_core.migrations.runner import CQL_DIR, MigrationError, discover, split_statements


def test_project_migrations_are_well_formed() -> None:
    migs = discover(CQL_DIR)
    assert migs[0].version == 1 and migs[0].name == "base"
    assert [m.version for m in migs] == sorted({m.version for m in migs})
    for m in migs:
        stmts = m.statements()
        assert stmts, f"{m.path.name} has no statements"
        assert not any(s.upper().startswith("USE ") for s in stmts), f"{m.path.name}: no USE, please"


def test_split_ignores_semicolons_in_comments_and_strings() -> None:
    text = """
    -- a comment; still a comment
    CREATE TABLE a (k text PRIMARY KEY); // trailing; comment
    /* block; comment */ INSERT INTO a (k) VALUES ('x;y''z');
    CREATE FUNCTION f (x int) RETURNS NULL ON NULL INPUT RETURNS int LANGUAGE java AS $$ return x; $$;
    """
    stmts = split_statements(text)
    assert len(stmts) == 3
    assert stmts[1] == "INSERT INTO a (k) VALUES ('x;y''z')"
    assert stmts[2].endswith("$$ return x; $$")


def test_unterminated_string_is_an_error() -> None:
    with pytest.raises(MigrationError, match="unterminated"):
        split_statements("INSERT INTO a (k) VALUES ('oops);")


def test_bad_names_and_duplicate_versions(tmp_path: Path) -> None:
    (tmp_path / "1_bad.cql").write_text("SELECT 1;")
    with pytest.raises(MigrationError, match="NNN_name.cql"):
        discover(tmp_path)
    (tmp_path / "1_bad.cql").unlink()
    (tmp_path / "010_a.cql").write_text("SELECT 1;")
    (tmp_path / "010_b.cql").write_text("SELECT 1;")
    with pytest.raises(MigrationError, match="also used"):
        discover(tmp_path)
