"""Decodes every response the fake of the Google APIs sent with gcloud's own generated message
classes (apitools), strictly: an unknown field anywhere, a value of the wrong type, or a field
that holds its default value (proto3 JSON leaves those out) is reported.

Run with gcloud's bundled Python, the SDK's `lib` folder first on sys.path:
    python3 google_decode.py SDK_ROOT < requests.json
`requests.json` is the fake's request log (`GET /__fake/requests`). Prints one line per
problem and exits 1 when there is any; prints how many responses it decoded.
"""

import json
import re
import sys

SDK = sys.argv[1]
sys.path[:0] = [SDK + "/lib", SDK + "/lib/third_party"]

from apitools.base.protorpclite import messages  # noqa: E402
from apitools.base.py import encoding  # noqa: E402
from googlecloudsdk.generated_clients.apis.monitoring.v3 import (  # noqa: E402
    monitoring_v3_messages as mon,
)
from googlecloudsdk.generated_clients.apis.run.v1 import run_v1_messages as run  # noqa: E402
from googlecloudsdk.generated_clients.apis.secretmanager.v1 import (  # noqa: E402
    secretmanager_v1_messages as sm,
)
from googlecloudsdk.generated_clients.apis.sqladmin.v1beta4 import (  # noqa: E402
    sqladmin_v1beta4_messages as sql,
)

SQL = r"^/sql/v1beta4/projects/[^/]+"
SM = r"^/v1/projects/[^/]+/secrets/[^/]+"
RUN = r"^/apis/serving\.knative\.dev/v1/namespaces/[^/]+"

# (method, path pattern, response message) for every call the fake answers.
ROUTES = [
    ("GET", SQL + r"/instances/[^/]+$", sql.DatabaseInstance),
    ("GET", SQL + r"/instances$", sql.InstancesListResponse),
    ("POST", SQL + r"/instances/[^/]+/(clone|restoreBackup)$", sql.Operation),
    ("DELETE", SQL + r"/instances/[^/]+$", sql.Operation),
    ("GET", SQL + r"/operations/[^/]+$", sql.Operation),
    ("GET", SQL + r"/instances/[^/]+/backupRuns$", sql.BackupRunsListResponse),
    ("GET", SQL + r"/instances/[^/]+/backupRuns/[^/]+$", sql.BackupRun),
    ("GET", SM + r"/versions/[^/]+:access$", sm.AccessSecretVersionResponse),
    ("GET", SM + r"/versions/[^/:]+$", sm.SecretVersion),
    ("GET", SM + r"/versions$", sm.ListSecretVersionsResponse),
    ("POST", SM + r":addVersion$", sm.SecretVersion),
    ("POST", SM + r"/versions/[^/]+:(disable|enable|destroy)$", sm.SecretVersion),
    ("GET", SM + r"$", sm.Secret),
    ("GET", RUN + r"/services/[^/]+$", run.Service),
    ("PUT", RUN + r"/services/[^/]+$", run.Service),
    ("GET", RUN + r"/services$", run.ListServicesResponse),
    ("GET", RUN + r"/revisions$", run.ListRevisionsResponse),
    ("GET", RUN + r"/revisions/[^/]+$", run.Revision),
    ("GET", r"^/v3/projects/[^/]+/timeSeries$", mon.ListTimeSeriesResponse),
]

# Map fields (`map<string, string>`): their entries are kept whatever their value.
MAPS = {"labels", "annotations", "userLabels", "limits", "requests", "nodeSelector"}


def unrecognized(message, where):
    """Every field the class does not know, at any depth."""
    found = ["%s.%s" % (where, name) for name in message.all_unrecognized_fields()]
    for field in message.all_fields():
        value = message.get_assigned_value(field.name)
        if value is None or not isinstance(field, messages.MessageField):
            continue
        for i, item in enumerate(value if field.repeated else [value]):
            if isinstance(item, messages.Message):
                found += unrecognized(item, "%s.%s[%d]" % (where, field.name, i) if field.repeated else where + "." + field.name)
    return found


def defaults(value, where):
    """Fields that hold their default value: proto3 JSON leaves them out."""
    found = []
    if isinstance(value, dict):
        for name, item in value.items():
            path = where + "." + name
            if item is None or item is False or item == "" or item == [] or (
                isinstance(item, (int, float)) and not isinstance(item, bool) and item == 0
            ):
                found.append("%s = %s" % (path, json.dumps(item)))
            elif name in MAPS:
                if item == {}:
                    found.append(path + " = {}")
            else:
                found += defaults(item, path)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            found += defaults(item, "%s[%d]" % (where, i))
    return found


def main():
    records = json.load(sys.stdin)
    problems, decoded = [], 0
    for record in records:
        path, method, status = record["path"], record["method"], record["status"]
        if path == "/app" or path.startswith("/app/") or status != 200:
            continue
        call = "%s %s" % (method, path)
        routes = [cls for m, pattern, cls in ROUTES if m == method and re.search(pattern, path)]
        if not routes:
            problems.append("%s: no message class known for this call" % call)
            continue
        body = record.get("response")
        try:
            message = encoding.JsonToMessage(routes[0], json.dumps(body))
        except Exception as err:  # noqa: BLE001 - every decoding failure is a finding
            problems.append("%s: %s does not decode it: %s" % (call, routes[0].__name__, err))
            continue
        decoded += 1
        problems += ["%s: unknown field %s" % (call, f) for f in unrecognized(message, routes[0].__name__)]
        problems += ["%s: default value sent: %s" % (call, f) for f in defaults(body, routes[0].__name__)]
    for problem in problems:
        print(problem)
    print("decoded %d response(s) with gcloud's message classes" % decoded)
    sys.exit(1 if problems else 0)


main()
