#!/usr/bin/env python3
"""Tests the Sigma rules in rules/ against the detector's real alerts.

1. `sigma check` finds no error or issue (the ATT&CK and D3FEND tag validators are left out:
   they download MITRE's data; the ATT&CK tags are checked here against the techniques the
   detector emits instead).
2. Each rule converts with the Splunk, Elasticsearch (Lucene, ES|QL) and Kusto (Microsoft
   Sentinel, through pipelines/sentinel_detector_alerts.yml) backends; the queries are written
   to OUT_DIR.
3. Each rule, converted by pySigma's SQLite backend, runs over the alerts the e2e tests saved
   (DETECTOR_ALERTS_DIR: one <binary>__<test>.jsonl per test) loaded into a SQLite table, one
   column per dotted ECS field: it must match an alert of every attack expectations.yml names
   for it and no live alert (`event.dataset` detector.live) of the benign runs about a process
   the benign test started (its child, or a child of one of those that alerted: the harness's
   first line names the test's pid). On a shared machine the daemon also reports what other
   people's processes do meanwhile; that is not the benign activity.

Usage: test_rules.py ALERTS_DIR OUT_DIR (with the venv's python). Exit 0 when all holds.
"""
import json
import pathlib
import sqlite3
import subprocess
import sys

import yaml
from sigma.backends.elasticsearch import ESQLBackend, LuceneBackend
from sigma.backends.kusto import KustoBackend
from sigma.backends.splunk import SplunkBackend
from sigma.backends.sqlite import sqliteBackend
from sigma.collection import SigmaCollection
from sigma.processing.pipeline import ProcessingPipeline

HERE = pathlib.Path(__file__).resolve().parent
RULES = HERE / "rules"
# The techniques the detector's alerts carry (detector/src/output/alert.rs) and their parents.
TECHNIQUES = {
    "t1574.006", "t1056.004", "t1556.003", "t1055.008", "t1055.009", "t1565.001",
    "t1003.007", "t1574", "t1056", "t1556", "t1055", "t1565", "t1003",
}
TACTICS = {
    "credential-access", "collection", "persistence", "privilege-escalation", "defense-evasion",
}


def flatten(value, prefix=""):
    """Dotted keys to scalar values; arrays are kept as JSON text."""
    if isinstance(value, dict):
        for k, v in value.items():
            yield from flatten(v, f"{prefix}{k}.")
    elif isinstance(value, list):
        yield prefix[:-1], json.dumps(value)
    else:
        yield prefix[:-1], value


def load(alerts_dir):
    """An in-memory SQLite database with table `logs`: a row per JSON line, a column per dotted
    field, and `_test` naming the test that produced it; and the tests that saved a file (an
    empty one when their daemon wrote nothing)."""
    rows = []
    files = sorted(alerts_dir.glob("*.jsonl"))
    for path in files:
        for n, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                sys.exit(f"{path}:{n}: not JSON: {e}")
            row = dict(flatten(obj))
            row["_test"] = path.stem
            rows.append(row)
    columns = sorted({c for r in rows for c in r})
    db = sqlite3.connect(":memory:")
    quoted = ", ".join(f'"{c}"' for c in columns)
    db.execute(f"CREATE TABLE logs ({quoted})")
    marks = ", ".join("?" for _ in columns)
    db.executemany(
        f"INSERT INTO logs ({quoted}) VALUES ({marks})",
        [[r.get(c) for c in columns] for r in rows],
    )
    return db, {p.stem for p in files}, len(rows)


def started_by_test(db, test):
    """The pids of processes `test` started: its children, and their children that alerted,
    as far as the alerts show parents (the test's pid is the harness's first line)."""
    pids = {r[0] for r in db.execute('SELECT "e2e.pid" FROM logs WHERE _test = ? AND "e2e.pid" IS NOT NULL', (test,))}
    if not pids:
        sys.exit(f"{test}: no first line naming the test's pid (the e2e harness writes it first)")
    edges = db.execute(
        'SELECT "process.pid", "process.parent.pid" FROM logs WHERE _test = ? AND "process.pid" IS NOT NULL',
        (test,),
    ).fetchall()
    started, grew = set(pids), True
    while grew:
        new = {pid for pid, parent in edges if parent in started and pid not in started}
        started |= new
        grew = bool(new)
    return started - pids


def check_tags(rule_path, rule):
    problems = []
    for tag in rule.tags:
        if tag.namespace != "attack":
            continue
        if tag.name not in TECHNIQUES and tag.name not in TACTICS:
            problems.append(f"{rule_path.name}: unknown ATT&CK tag attack.{tag.name}")
    return problems


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: test_rules.py ALERTS_DIR OUT_DIR")
    alerts_dir, out_dir = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
    failures = []

    check = subprocess.run(
        [str(pathlib.Path(sys.executable).parent / "sigma"), "check", "--fail-on-issues",
         "-x", "attacktag", "-x", "d3_fendtag", str(RULES)],
        capture_output=True, text=True,
    )
    if check.returncode != 0:
        failures.append(f"sigma check failed:\n{check.stdout}{check.stderr}")
    else:
        print("sigma check: no errors, no issues")

    expectations = yaml.safe_load((HERE / "expectations.yml").read_text())
    rule_files = sorted(RULES.glob("*.yml"))
    named = set(expectations["rules"])
    for p in rule_files:
        if p.name not in named:
            failures.append(f"{p.name}: no attack in expectations.yml")
    for name in named - {p.name for p in rule_files}:
        failures.append(f"expectations.yml names {name}, which is not in rules/")

    sentinel = ProcessingPipeline.from_yaml(
        (HERE / "pipelines" / "sentinel_detector_alerts.yml").read_text()
    )
    backends = {
        "splunk": SplunkBackend(),
        "lucene": LuceneBackend(),
        "esql": ESQLBackend(),
        "kusto": KustoBackend(processing_pipeline=sentinel),
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    db, tests, nrows = load(alerts_dir)
    print(f"alerts: {nrows} records from {len(tests)} e2e tests in {alerts_dir}")
    missing = [t for t in expectations["benign"] + [t for v in expectations["rules"].values() for t in v] if t not in tests]
    if missing:
        failures.append(
            "no saved alerts for: " + ", ".join(sorted(set(missing)))
            + f" (run those e2e tests with DETECTOR_ALERTS_DIR={alerts_dir})"
        )
    sql = sqliteBackend()
    for p in rule_files:
        collection = SigmaCollection.from_yaml(p.read_text())
        rule = collection.rules[0]
        failures += check_tags(p, rule)
        for target, backend in backends.items():
            queries = backend.convert(SigmaCollection.from_yaml(p.read_text()))
            if not queries or not all(str(q).strip() for q in queries):
                failures.append(f"{p.name}: {target} conversion is empty")
                continue
            (out_dir / f"{p.stem}.{target}").write_text("\n".join(map(str, queries)) + "\n")
        query = sql.convert(SigmaCollection.from_yaml(p.read_text()))[0]
        matched = {r[0] for r in db.execute(f"SELECT DISTINCT _test FROM ({query})")}
        attacks = expectations["rules"].get(p.name, [])
        for attack in attacks:
            if attack in tests and attack not in matched:
                failures.append(f"{p.name}: matches no alert of the attack {attack}")
        for benign in expectations["benign"]:
            hits = db.execute(
                f"SELECT \"rule.name\", severity, \"process.command_line\", \"process.pid\""
                f" FROM ({query}) WHERE _test = ? AND \"event.dataset\" = 'detector.live'",
                (benign,),
            ).fetchall()
            started = started_by_test(db, benign)
            hits = [h[:3] for h in hits if h[3] in started]
            if hits:
                failures.append(f"{p.name}: matches the benign run {benign}: {hits}")
        print(f"{p.name}: matches {len(matched)} tests' alerts; attacks {', '.join(attacks)}")
    if failures:
        print("FAILED:", *failures, sep="\n  ")
        return 1
    print(f"sigma: {len(rule_files)} rules pass (queries in {out_dir})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
