"""No usable JWT secret lives in the repository.

Every JWT secret literal ever committed is in amana_common.settings.COMMITTED_JWT_SECRETS and
refused by every service in every environment (as is any secret under 32 bytes); a new
literal long enough to be accepted fails here, so it cannot become the secret of some
deployment without also being on that list.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from amana_common.settings import COMMITTED_JWT_SECRETS, MIN_JWT_SECRET_BYTES

REPO = Path(__file__).resolve().parents[2]
# A value given to anything named like a JWT secret: `JWT_SECRET=...` (env files, shell),
# `jwt_secret="..."` / `JWT_SECRET = "..."` (Python), `jwtSecret: ...` (YAML), `--set
# secrets.jwtSecret=...` (helm).
ASSIGNED = re.compile(
    r"""jwt[_-]?secret\w*["']?\s*(?::\s*str\s*)?[:=]\s*"""
    r"""(?:"(?P<double>[^"\n]*)"|'(?P<single>[^'\n]*)'|(?P<bare>[\w\-!+/=.${}:?]+))""",
    re.IGNORECASE,
)
# Bare values that are references, not literals: dotted.names and ${VARS}; in Python also
# plain names (variables).
REFERENCE = re.compile(r"^\w+(\.\w+)+$|\$")
PYTHON_NAME = re.compile(r"^[A-Za-z_]\w*$")


def assigned_secrets(text: str, python: bool = False) -> set[str]:
    """The literal values assigned to JWT secrets in `text` (not references or expressions)."""
    found = set()
    for match in ASSIGNED.finditer(text):
        double, single = match.group("double"), match.group("single")
        quoted = double if double is not None else single
        value = quoted if quoted is not None else match.group("bare")
        if quoted is None and (REFERENCE.search(value) or (python and PYTHON_NAME.match(value))):
            continue
        if len(value.encode()) >= MIN_JWT_SECRET_BYTES:  # shorter ones are refused anyway
            found.add(value)
    return found


def repository_files() -> list[Path]:
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    this_test = Path(__file__).resolve()  # its samples are not secrets
    return [
        REPO / name
        for name in listed
        if not name.endswith((".lock", ".png", ".ico")) and REPO / name != this_test
    ]


def test_the_scan_finds_secrets_in_every_form_they_are_written() -> None:
    long = "-0123456789abcdef0123456789abcdef"
    text = f"""
AMANA_JWT_SECRET=one{long}
REGISTRY_JWT_SECRET=${{AMANA_JWT_SECRET}}
JWT_SECRET = "two{long}"
settings = Settings(jwt_secret="three{long}", other=1)
  jwtSecret: four{long}
helm --set secrets.jwtSecret=five{long}
AMANA_JWT_SECRET=plainidentifier{long.replace("-", "_")}
jwt_secret: str = ""
jwtSecret: too-short-to-be-accepted
"""
    code = """
settings = Settings(jwt_secret=secret_of_the_test_run_made_at_random)
JWT_SECRET = secrets.token_urlsafe(32)
jwt_secret=settings.jwt_secret
"""

    assert assigned_secrets(text) == {
        *(f"{n}{long}" for n in ("one", "two", "three", "four", "five")),
        f"plainidentifier{long.replace('-', '_')}",
    }
    assert assigned_secrets(code, python=True) == set()


def test_every_secret_in_the_repository_is_refused_by_the_services() -> None:
    found: dict[str, set[str]] = {}
    for path in repository_files():
        try:
            text = path.read_text()
        except (UnicodeDecodeError, IsADirectoryError, FileNotFoundError):
            continue
        for secret in assigned_secrets(text, python=path.suffix == ".py") - COMMITTED_JWT_SECRETS:
            found.setdefault(secret, set()).add(str(path.relative_to(REPO)))

    assert found == {}, (
        "JWT secrets committed to the repository: generate them at run time instead (or, if one "
        "was committed already, add it to COMMITTED_JWT_SECRETS so no service accepts it)"
    )
