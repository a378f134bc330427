"""Every environment variable the code reads is a row of README.md's configuration table, so a
setting cannot be added undocumented: found by reading the sources (os.environ, os.getenv and the
launcher's `env`), and by recording what app.config.load() and the launcher look up whatever
helper they read it through."""
import re

from helpers import ROOT

from app import config, launcher

SOURCES = [*sorted((ROOT / "app").rglob("*.py")), ROOT / "worker.py", *sorted((ROOT / "test_merchant").rglob("*.py"))]
# os.environ.get("X") / os.environ["X"] / os.getenv("X") anywhere; env.get("X") / env["X"] where
# `env` is the environment (app/config.py, app/launcher.py). A WSGI `environ` is not matched.
READ = re.compile(r"""(?:\bos\.environ|\benv)\s*(?:\.get\(|\.pop\(|\[)\s*["']([A-Z][A-Z0-9_]*)["']"""
                  r"""|\bos\.getenv\(\s*["']([A-Z][A-Z0-9_]*)["']""")


def documented():
    """The variable names in the first column of README.md's configuration table."""
    readme = (ROOT / "README.md").read_text()
    section = re.search(r"^## Configuration\n(.*?)^## ", readme, re.S | re.M).group(1)
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    assert rows, "README.md's configuration table is gone"
    return {name for row in rows for name in re.findall(r"`([A-Z][A-Z0-9_]*)`", row.split("|")[1])}


class Recording(dict):
    """An empty environment that remembers every name looked up in it."""

    def __init__(self):
        super().__init__()
        self.names = set()

    def get(self, key, default=None):
        self.names.add(key)
        return super().get(key, default)

    def __getitem__(self, key):
        self.names.add(key)
        return super().__getitem__(key)

    def __contains__(self, key):
        self.names.add(key)
        return super().__contains__(key)


def test_the_sources_read_only_documented_variables():
    read = {}
    for path in SOURCES:
        for match in READ.finditer(path.read_text()):
            read.setdefault(match.group(1) or match.group(2), path.relative_to(ROOT).as_posix())
    assert {"DATABASE_URL", "WEB_CONCURRENCY", "GATEWAY_DATA_DIR", "GATEWAY_URL"} <= read.keys()  # the scan works
    missing = {name: where for name, where in read.items() if name not in documented()}
    assert not missing, f"read by the code but not in README.md's configuration table: {missing}"


def test_settings_and_commands_read_only_documented_variables():
    env = Recording()
    config.load(env)
    launcher.gunicorn_cmd(env)
    launcher.test_merchant_cmd(env)
    assert {"DATABASE_URL", "PUBLIC_URL", "WEB_CONCURRENCY"} <= env.names
    missing = sorted(env.names - documented())
    assert not missing, f"looked up by app/config.py or app/launcher.py but not in README.md's table: {missing}"
