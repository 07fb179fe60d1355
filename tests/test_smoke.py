import pytest

from trustpub.cli import main


def test_cli_version_exits_cleanly() -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
