#!/usr/bin/env python3
"""Drive a lab through pglab's API with nothing but the standard library.

Creates (or replaces) a lab from a folder (lab.yaml and the files it
names), adds participants from a CSV file, waits for the apply, hands in a
pg_dump file as the first participant (with the initial password from the
credentials list), waits for its restore and the next scoring round, and
prints the scores.

    PGLAB_URL=http://127.0.0.1:8080 PGLAB_TOKEN=pglab_... \\
        python3 pglab_example.py LAB_FOLDER PARTICIPANTS.csv DUMP_FILE

The token needs scope `admin` (it creates a lab): make one with
`pglab token create example --owner YOU --scope admin`.
The last line printed is `SCORES {"username": points, ...}`.
"""

import base64
import datetime
import json
import os
import re
import sys
import time
import urllib.error
import urllib.request

URL = os.environ.get("PGLAB_URL", "http://127.0.0.1:8080").rstrip("/")
TOKEN = os.environ["PGLAB_TOKEN"]


class ApiError(Exception):
    """An answer of status 400 or more, with pglab's problem document."""

    def __init__(self, status, problem):
        super().__init__(f"{status} {problem.get('code')}: {problem.get('message')}")
        self.status = status
        self.problem = problem


def call(method, path, body=None, auth=None, raw=None):
    """One request; the answer's JSON (or None), and its Location header."""
    url = path if path.startswith("http") else URL + path
    headers = {"Authorization": auth or f"Bearer {TOKEN}", "Accept": "application/json"}
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    elif raw is not None:
        data = raw
        headers["Content-Type"] = "application/octet-stream"
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    for _ in range(10):
        try:
            with urllib.request.urlopen(request, timeout=60) as r:
                text = r.read()
                return (json.loads(text) if text else None), r.headers.get("Location")
        except urllib.error.HTTPError as e:
            text = e.read()
            if e.code == 429:  # rate limited: wait as told, then again
                time.sleep(int(e.headers.get("Retry-After", "1")))
                continue
            try:
                problem = json.loads(text)
            except ValueError:
                problem = {"message": text.decode(errors="replace")}
            raise ApiError(e.code, problem) from None
    raise RuntimeError(f"{method} {path}: still rate limited")


def wait(path, done, what, auth=None, timeout=300):
    """Polls `path` until `done(answer)`; the last answer."""
    deadline = time.time() + timeout
    while True:
        answer, _ = call("GET", path, auth=auth)
        if done(answer):
            return answer
        if time.time() > deadline:
            raise RuntimeError(f"{what} did not end within {timeout} s: {answer}")
        time.sleep(0.5)


def when(text):
    """A time of the API (RFC 3339)."""
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))


def main(folder, participants_csv, dump_file):
    with open(os.path.join(folder, "lab.yaml"), encoding="utf-8") as f:
        yaml = f.read()
    lab = re.search(r"^id:\s*['\"]?([A-Za-z0-9_-]+)", yaml, re.M).group(1)
    files = {}
    for name in sorted(os.listdir(folder)):
        if name != "lab.yaml" and os.path.isfile(os.path.join(folder, name)):
            with open(os.path.join(folder, name), encoding="utf-8") as f:
                files[name] = f.read()

    # 1. The lab: checked, then stored.
    checked, _ = call("POST", "/api/v1/labs/check", {"yaml": yaml, "files": files})
    print(f"lab {checked['id']}: {checked['tasks']} tasks, {checked['max_points']} points")
    stored, location = call("PUT", f"/api/v1/labs/{lab}", {"yaml": yaml, "files": files})
    print(f"stored at {location}")

    # 2. Participants: planned, applied as a job, followed to its end.
    with open(participants_csv, encoding="utf-8") as f:
        csv = f.read()
    plan, _ = call("POST", f"/api/v1/labs/{lab}/participants/plan", {"csv": csv})
    for change in plan["changes"]:
        print("plan:", change)
    job, location = call("POST", f"/api/v1/labs/{lab}/participants/apply", {"csv": csv})
    job = wait(location, lambda j: j["status"] in ("succeeded", "failed"), "the apply")
    if job["status"] != "succeeded":
        raise RuntimeError(f"the apply failed: {job['error']}")
    print(f"apply: {job['status']} ({job['done']}/{job['total']})")

    # 3. The first participant's initial password.
    credentials, _ = call("GET", f"/api/v1/labs/{lab}/credentials?limit=1")
    student = credentials["items"][0]
    basic = "Basic " + base64.b64encode(
        f"{student['username']}:{student['password']}".encode()
    ).decode()

    # 4. A hand-in as that participant, followed until restored.
    with open(dump_file, "rb") as f:
        dump = f.read()
    handin, location = call("POST", f"/api/v1/labs/{lab}/submissions", raw=dump, auth=basic)
    print(f"hand-in {handin['id']}: {handin['format']}, {handin['size']} bytes")
    sub = wait(location, lambda s: s["status"] in ("succeeded", "failed"), "the restore", auth=basic)
    if sub["status"] != "succeeded":
        raise RuntimeError(f"the restore failed: {sub['errors']}")

    # 5. Scores from a round that began after the restore.
    restored = when(sub["finished_at"])
    scores = wait(
        f"/api/v1/labs/{lab}/scores?limit=1000",
        lambda s: s["checked_at"] is not None and when(s["checked_at"]) > restored,
        "a scoring round",
    )
    points = {p["username"]: p["points"] for p in scores["items"]}
    for p in scores["items"]:
        passed = [t["task"] for t in p["tasks"] or [] if t["passed"]]
        print(f"{p['username']}: {p['points']}/{scores['max_points']} {passed}")
    print("SCORES " + json.dumps(points, sort_keys=True))


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    try:
        main(*sys.argv[1:])
    except ApiError as e:
        sys.exit(f"pglab refused: {e}")
