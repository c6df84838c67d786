#!/usr/bin/env python3
"""logscan: fail when any log line the suite produced carries personal data.

  logscan.py [--values-from DIR...] LOGDIR...

Every *.log file under each LOGDIR is read line by line. A line fails when it
holds an NHS or CHI number (ten digits, or 3-3-4 groups split by spaces or
dashes, whose check digit passes; a CHI's first six digits a date), or a
name or birth date found in the suite's own test data under --values-from:
PID-5 and PID-7 of every HL7 message there, and FHIR `family`, `given`,
`birthDate` and carebridge `contact.name` values. Each finding is printed as
FILE:LINE: what it is (never the value itself); exit 1 if any, else 0, with a
count of the lines read."""

import argparse
import os
import re
import sys

DIGITS = re.compile(r"(?<![\dA-Za-z])(\d{3}[ -]?\d{3}[ -]?\d{4})(?![\dA-Za-z])")
# Numbers the broker makes itself, which may pass a check digit by chance: a
# pseudonym's hex digits (p-...) and a flag's id. Sender text (event ids,
# client names) is never passed over.
OURS = re.compile(r"(?:\bp-|\bflag (?:raised|resolved) id=)$")
PID = re.compile(r"PID\|[^\r\n\"\\]*")
FAMILY = re.compile(r'"family"\s*:\s*"([^"]+)"')
GIVEN = re.compile(r'"given"\s*:\s*\[([^\]]*)\]')
BIRTH = re.compile(r'"birthDate"\s*:\s*"(\d{4}-\d{2}-\d{2})"')
CONTACT = re.compile(r'"contact"\s*:\s*\{[^}]*?"name"\s*:\s*"([^"]+)"')
DATA_FILES = (".hl7", ".json", ".py", ".c", ".txt", ".csv", ".ndjson")
# Words test data puts where a name goes that are no one's name.
NOT_NAMES = {"Doctor", "Scenario", "PATIENT", "Patient", "TEST", "Test", "NOBODY", "Nobody"}


def mod11(d):
    total = sum(int(c) * w for c, w in zip(d[:9], range(10, 1, -1)))
    check = 11 - total % 11
    return (0 if check == 11 else check) == int(d[9]) if check != 10 else False


def chi_date(d):
    day, month = int(d[0:2]), int(d[2:4])
    return 1 <= day <= 31 and 1 <= month <= 12


def identifier(text):
    """'an NHS number', 'a CHI number' or None for one run of digits."""
    d = re.sub(r"[ -]", "", text)
    if len(d) != 10 or len(set(d)) == 1:
        return None
    if mod11(d):
        return "a CHI number" if chi_date(d) else "an NHS number"
    return None


def add_name(values, name, where):
    for part in re.split(r"[\s,]+", name):
        part = part.strip("\"' ")
        if len(part) >= 4 and part.isalpha() and part[0].isupper() and part not in NOT_NAMES and len(set(part)) > 1:
            values.setdefault(part, f"a name from {where}")


def add_birth_date(values, date, where):
    if re.fullmatch(r"(19|20)\d\d-[01]\d-[0-3]\d", date):
        values.setdefault(date, f"a birth date from {where}")
        values.setdefault(date.replace("-", ""), f"a birth date from {where}")


def collect_values(roots):
    """{value: what it is} from the test data under roots."""
    values = {}
    for root in roots:
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = [d for d in dirnames if d not in ("corpus", "__pycache__")]
            for name in filenames:
                if not name.endswith(DATA_FILES):
                    continue
                path = os.path.join(dirpath, name)
                where = os.path.relpath(path, root)
                with open(path, errors="replace") as f:
                    text = f.read()
                for seg in PID.findall(text.replace("\\r", "\r")):
                    fields = seg.split("|")
                    if len(fields) > 5:
                        for rep in fields[5].split("~"):
                            comps = rep.split("^")
                            for c in comps[:2]:
                                add_name(values, c, where)
                    if len(fields) > 7 and re.match(r"\d{8}", fields[7]):
                        d = fields[7][:8]
                        add_birth_date(values, f"{d[:4]}-{d[4:6]}-{d[6:8]}", where)
                for m in FAMILY.findall(text):
                    add_name(values, m, where)
                for m in GIVEN.findall(text):
                    add_name(values, m, where)
                for m in CONTACT.findall(text):
                    add_name(values, m, where)
                for m in BIRTH.findall(text):
                    add_birth_date(values, m, where)
    return values


def scan(log_dirs, values):
    """(lines read, [(path, line number, what)])."""
    words = {v: re.compile(r"(?<![A-Za-z0-9])" + re.escape(v) + r"(?![A-Za-z0-9])") for v in values}
    findings, lines = [], 0
    for root in log_dirs:
        for dirpath, _, filenames in os.walk(root):
            for name in sorted(filenames):
                if not name.endswith(".log"):
                    continue
                path = os.path.join(dirpath, name)
                with open(path, errors="replace") as f:
                    for n, line in enumerate(f, 1):
                        lines += 1
                        for m in DIGITS.finditer(line):
                            what = identifier(m.group(1))
                            if what and not OURS.search(line[max(0, m.start() - 24):m.start()]):
                                findings.append((path, n, what))
                        for v, rx in words.items():
                            if v in line and rx.search(line):
                                findings.append((path, n, values[v]))
    return lines, findings


def main(argv):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--values-from", action="append", default=[], metavar="DIR")
    p.add_argument("logs", nargs="+", metavar="LOGDIR")
    a = p.parse_args(argv)
    values = collect_values(a.values_from)
    lines, findings = scan(a.logs, values)
    for path, n, what in findings:
        print(f"{path}:{n}: {what}")
    files = sum(1 for d in a.logs for _, _, fs in os.walk(d) for f in fs if f.endswith(".log"))
    print(f"logscan: {lines} lines in {files} log files, {len(values)} names and dates from the test data: "
          f"{len(findings)} findings")
    return 1 if findings else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
