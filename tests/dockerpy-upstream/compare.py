#!/usr/bin/env python3
"""Helper of compare.sh (docker-py's upstream integration suite, Skiff against dockerd).

  compare.py args DESELECT_TXT
      Checks deselect.txt (every entry has a reason, every node id names a file, class and test
      of the vendored suite) and prints the -k arguments of its -k entries, one a line (its node
      ids are deselected by deselect_plugin.py).
  compare.py report SKIFF_XML DOCKERD_XML OUT_TSV
      Reads both engines' junit XML, prints engine | passed | failed | errors | skipped, the tests
      that pass on one engine but not the other (grouped by the other's first error line), writes
      every test's outcomes to OUT_TSV; exits 0 when Skiff passes at least as many tests as
      dockerd, 1 when it passes fewer, 2 when a report is missing.

One outcome a test: a junit testcase with <error> (a setup or teardown error, also after a passing
call) counts as an error, else <failure> as failed, else <skipped> (skips and xfails) as skipped,
else passed (xpasses included).
"""

import ast
import re
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

HERE = Path(__file__).resolve().parent
RANK = {"passed": 0, "skipped": 1, "failed": 2, "error": 3}


def parse_deselect(path):
    """[(kind, value, reason, lineno)] with kind 'node' or 'k'."""
    entries, problems = [], []
    for n, raw in enumerate(Path(path).read_text().splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        entry, sep, reason = line.partition(" # ")
        entry, reason = entry.strip(), reason.strip()
        if not sep or not reason:
            problems.append(f"{path}:{n}: no `  # reason`: {raw}")
            continue
        if entry.startswith("-k "):
            entries.append(("k", entry[3:].strip(), reason, n))
        else:
            problem = check_node_id(entry, f"{path}:{n}")
            if problem:
                problems.append(problem)
            entries.append(("node", entry, reason, n))
    return entries, problems


def check_node_id(node_id, where):
    """None when FILE[::Class][::test] exists in the vendored suite, else the problem."""
    file, *names = node_id.split("::")
    source = HERE / file
    if not source.is_file():
        return f"{where}: no file {file}"
    scope = ast.parse(source.read_text()).body
    for name in names:
        found = [n for n in scope if isinstance(n, (ast.ClassDef, ast.FunctionDef)) and n.name == name]
        if not found:
            return f"{where}: {name} not found in {node_id}"
        scope = found[0].body if isinstance(found[0], ast.ClassDef) else []
    return None


def cmd_args(deselect):
    entries, problems = parse_deselect(deselect)
    if problems:
        sys.exit("deselect.txt:\n  " + "\n  ".join(problems))
    keywords = [f"not ({value})" for kind, value, _, _ in entries if kind == "k"]
    if keywords:
        print("-k")
        print(" and ".join(keywords))


def node_id(classname, name):
    """junit classname 'tests.integration.x_test.Cls' + name -> 'tests/integration/x_test.py::Cls::name'."""
    parts = classname.split(".") if classname else []
    for i in range(len(parts), 0, -1):
        file = "/".join(parts[:i]) + ".py"
        if (HERE / file).is_file():
            return "::".join([file, *parts[i:], name])
    return "::".join([classname, name]) if classname else name


def first_line(text):
    for line in (text or "").splitlines():
        if line.strip():
            return line.strip()
    return ""


def cause(msg):
    """A message with its ids, names, temp paths and query strings elided, to group tests by."""
    def url(m):
        path = re.sub(r"/(containers|images|networks|volumes|exec|services|nodes|secrets|configs|"
                      r"plugins|tasks|distribution)/[^/?: ]+", r"/\1/X", m.group(2))
        return f"{path}{'?..' if m.group(3) else ''}"
    msg = re.sub(r"http\+docker://localhost(/v[0-9.]+)?([^?: ]*)(\?[^: ]*)?", url, msg)
    msg = re.sub(r"\b[0-9a-f]{12,64}\b", "<id>", msg)
    msg = re.sub(r"/tmp/[\w./-]+", "<tmp>", msg)
    msg = re.sub(r"\bdockerpytest_\w+", "<name>", msg)
    return msg[:160]


def read_junit(path):
    """{node id: (outcome, first line of the message)}; None when the file is missing or broken."""
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError) as e:
        print(f"cannot read {path}: {e}", file=sys.stderr)
        return None
    results = {}
    for case in root.iter("testcase"):
        nid = node_id(case.get("classname", ""), case.get("name", ""))
        outcome, msg = "passed", ""
        for tag, kind in (("error", "error"), ("failure", "failed"), ("skipped", "skipped")):
            el = case.find(tag)
            if el is not None:
                outcome = kind
                msg = first_line(el.get("message")) or first_line(el.text)
                break
        old = results.get(nid)
        if old is None or RANK[outcome] > RANK[old[0]]:
            results[nid] = (outcome, msg)
    return results


def counts(results):
    c = dict.fromkeys(RANK, 0)
    for outcome, _ in results.values():
        c[outcome] += 1
    return c


def cmd_report(skiff_xml, dockerd_xml, out_tsv):
    skiff, dockerd = read_junit(skiff_xml), read_junit(dockerd_xml)
    if skiff is None or dockerd is None:
        print("FAIL: a junit report is missing (see the pytest output above)")
        return 2
    cs, cd = counts(skiff), counts(dockerd)
    print(f"{'engine':<14}|{'passed':>8} |{'failed':>8} |{'errors':>8} |{'skipped':>8} |{'total':>7}")
    for name, c in (("skiff", cs), ("dockerd 20.10", cd)):
        print(f"{name:<14}|{c['passed']:>8} |{c['failed']:>8} |{c['error']:>8} |{c['skipped']:>8} |{sum(c.values()):>7}")

    ids = sorted(set(skiff) | set(dockerd))
    missing = ("missing", "")
    with open(out_tsv, "w") as f:
        f.write("test\tskiff\tdockerd\tskiff_message\tdockerd_message\n")
        for t in ids:
            s, d = skiff.get(t, missing), dockerd.get(t, missing)
            f.write(f"{t}\t{s[0]}\t{d[0]}\t{s[1][:300]}\t{d[1][:300]}\n")

    def differ(a, b, a_name, b_name):
        """The tests passing on a but not on b, grouped by b's (normalized) first error line."""
        groups = {}
        for t in ids:
            if a.get(t, missing)[0] == "passed" and b.get(t, missing)[0] != "passed":
                outcome, msg = b.get(t, missing)
                groups.setdefault(f"{outcome}: {cause(msg)}", []).append(t)
        print(f"\npass on {a_name}, not on {b_name} ({sum(map(len, groups.values()))}), "
              f"by {b_name}'s first error line:")
        for key, tests in sorted(groups.items(), key=lambda kv: (-len(kv[1]), kv[0])):
            print(f"  [{len(tests)}] {key}")
            for t in tests:
                print(f"      {t}")

    differ(dockerd, skiff, "dockerd", "skiff")
    differ(skiff, dockerd, "skiff", "dockerd")
    print(f"\nevery test's outcome on both engines: {out_tsv}")

    if cs["passed"] >= cd["passed"]:
        print(f"\nOK: Skiff passes {cs['passed']} tests, dockerd 20.10 {cd['passed']}")
        return 0
    print(f"\nFAIL: Skiff passes {cs['passed']} tests, fewer than dockerd 20.10's {cd['passed']} "
          f"({cd['passed'] - cs['passed']} short)")
    return 1


def main(argv):
    if len(argv) == 3 and argv[1] == "args":
        cmd_args(argv[2])
        return 0
    if len(argv) == 5 and argv[1] == "report":
        return cmd_report(*argv[2:])
    sys.exit(__doc__)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
