"""pytest plugin of compare.sh: deselects the node ids of deselect.txt ($DOCKERPY_DESELECT).

An entry deselects the test it names, or all the tests under the file or class it names. Unlike
pytest's --deselect, which matches any node id starting with the string (so `...::test_pull` would
also drop `...::test_pull_streaming`), an entry only matches whole `::` components. Entries that
matched no collected test are listed at the end of the run. (-k entries are passed as -k.)
"""

import os

from compare import parse_deselect


def _node_ids(config):
    path = os.environ.get("DOCKERPY_DESELECT")
    if not path:
        return []
    entries, _ = parse_deselect(path)  # compare.py args has already refused a bad file
    return [value for kind, value, _, _ in entries if kind == "node"]


def pytest_collection_modifyitems(config, items):
    ids = _node_ids(config)
    keep, drop, used = [], [], set()
    for item in items:
        hits = [e for e in ids if item.nodeid == e or item.nodeid.startswith(e + "::")]
        used.update(hits)
        (drop if hits else keep).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep
    config._dockerpy_unused = [e for e in ids if e not in used]


def pytest_terminal_summary(terminalreporter, config):
    unused = getattr(config, "_dockerpy_unused", [])
    if unused:
        terminalreporter.write_line(f"deselect.txt: {len(unused)} entries matched no collected test:")
        for e in unused:
            terminalreporter.write_line(f"  {e}")
