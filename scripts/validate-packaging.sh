#!/usr/bin/env bash
# Validates what packaging/ ships for operators, with the linters from the test venv
# (scripts/test-deps.sh installs them):
#   1. cfn-lint on packaging/cloudformation/diskguard.yaml: no finding at all (errors, warnings,
#      informational);
#   2. parliament on packaging/iam/diskguard-policy.json, placeholders filled with sample values:
#      no finding at any severity, community auditors included;
#   3. the template's own checks: its IAM policy is the JSON policy (so the two cannot drift), its
#      dashboard body is valid JSON once !Sub is resolved, and every metric it graphs or alarms on
#      is a contract metric of diskguard's namespace (so a typo cannot pass).
# Prints one line per check; exits non-zero if any fails.
# Run: scripts/validate-packaging.sh   (DISKGUARD_TEST_VENV overrides /opt/diskguard-test-venv)
set -euo pipefail

cd "$(dirname "$0")/.."
VENV="${DISKGUARD_TEST_VENV:-/opt/diskguard-test-venv}"
TEMPLATE=packaging/cloudformation/diskguard.yaml
POLICY=packaging/iam/diskguard-policy.json

for tool in cfn-lint parliament python; do
    if [[ ! -x $VENV/bin/$tool ]]; then
        echo "validate-packaging: $VENV/bin/$tool is missing; run scripts/test-deps.sh" >&2
        exit 1
    fi
done

failed=0
report() { # name, status, output
    if [[ $2 -eq 0 && -z $3 ]]; then
        echo "ok   $1"
    else
        echo "FAIL $1"
        [[ -n $3 ]] && sed 's/^/     /' <<<"$3"
        failed=1
    fi
}

# cfn-lint exits non-zero on any finding at or above the given level; -c I adds the
# informational rules. Any output at all counts as a finding too.
status=0
output=$("$VENV/bin/cfn-lint" --include-checks I --non-zero-exit-code informational -- "$TEMPLATE" 2>&1) || status=$?
report "cfn-lint $TEMPLATE: no errors, warnings or informational findings" "$status" "$output"

# parliament reads the policy from stdin (it refuses --file when stdin is not a terminal) and
# exits 1 when it prints findings. REGION/ACCOUNT_ID are not valid ARN parts, so fill them in.
status=0
output=$(sed -e 's/REGION/eu-west-1/g' -e 's/ACCOUNT_ID/123456789012/g' -e 's/CLUSTER_NAME/prod/g' "$POLICY" |
    "$VENV/bin/parliament" --minimum_severity INFO --include-community-auditors 2>&1) || status=$?
report "parliament $POLICY: no findings at any severity" "$status" "$output"

status=0
output=$("$VENV/bin/python" - "$TEMPLATE" "$POLICY" <<'PY' 2>&1
import json, re, sys
from cfnlint.decode import decode

template_path, policy_path = sys.argv[1:]
# The metric names of the contract (design notes, "Contract: CloudWatch metrics").
CONTRACT = {"DiskUsedPercent", "InodesUsedPercent", "DiskFreeBytes", "TimeToFullSeconds",
            "ReclaimedBytes", "ReclaimErrors", "Draining", "DrainSuppressed",
            "EtcdQuotaUsedPercent", "EtcdNoSpaceAlarm"}
# Metrics of other namespaces the template may read, and why.
FOREIGN = {("ECS/ContainerInsights", "ContainerInstanceCount")}  # expected count, silence alarm
SAMPLE = {"AWS::Partition": "aws", "AWS::Region": "eu-west-1", "AWS::AccountId": "123456789012",
          "ClusterName": "prod", "Namespace": "DiskGuard", "ExpectedInstanceCount": "0"}
NS = SAMPLE["Namespace"]

template, matches = decode(template_path)
if matches:
    sys.exit(f"cannot read {template_path}: {matches}")
resources = template["Resources"]

def sub(text):
    """Resolves ${Param}, ${Resource.Arn} and ${!Literal} as !Sub would, with sample values."""
    def one(match):
        name = match.group(1)
        if name.startswith("!"):
            return "${" + name[1:] + "}"
        if name.endswith(".Arn") and name[:-4] in resources:
            return f"arn:aws:cloudwatch:eu-west-1:123456789012:alarm:{name[:-4]}"
        return SAMPLE[name]
    return re.sub(r"\$\{([^}]+)\}", one, text)

def resolve(value):
    if isinstance(value, dict) and len(value) == 1:
        (key, arg), = value.items()
        if key == "Ref":
            return SAMPLE[arg]
        if key == "Fn::Sub":
            return sub(arg)
    if isinstance(value, dict):
        return {key: resolve(item) for key, item in value.items()}
    if isinstance(value, list):
        return [resolve(item) for item in value]
    return value

errors = []

# 1. The CloudFormation policy and the plain JSON policy grant the same thing.
with open(policy_path) as handle:
    plain = json.loads(handle.read().replace("REGION", "eu-west-1")
                       .replace("ACCOUNT_ID", "123456789012").replace("CLUSTER_NAME", "prod"))
policies = [r for r in resources.values() if r["Type"] == "AWS::IAM::ManagedPolicy"]
if len(policies) != 1 or resolve(policies[0]["Properties"]["PolicyDocument"]) != plain:
    errors.append(f"the template's policy differs from {policy_path}")

# 2. Every metric the dashboard and the alarms name, with its namespace.
used = []  # (namespace, metric, where)
SEARCH = re.compile(r"""SEARCH\('\{"([^"]+)",[^}]*\}\s+MetricName="([^"]+)"[^']*'""")
SELECT = re.compile(r"""SELECT\s+[A-Z]+\((\w+)\)\s+FROM\s+SCHEMA\("([^"]+)"[^)]*\)""")

def expression(text, where):
    found = [(ns, metric) for ns, metric in SEARCH.findall(text)]
    found += [(ns, metric) for metric, ns in SELECT.findall(text)]
    if ("SEARCH" in text or "SELECT" in text) and not found:
        errors.append(f"{where}: cannot read the metric in {text!r}")
    used.extend((ns, metric, where) for ns, metric in found)

for name, resource in resources.items():
    props = resource.get("Properties", {})
    if resource["Type"] == "AWS::CloudWatch::Dashboard":
        try:
            body = json.loads(resolve(props["DashboardBody"]))
        except ValueError as err:
            errors.append(f"{name}: DashboardBody is not JSON after !Sub: {err}")
            continue
        for widget in body["widgets"]:
            for row in widget["properties"].get("metrics", []):
                plain_row = [item for item in row if not isinstance(item, dict)]
                if plain_row:
                    used.append((plain_row[0], plain_row[1], name))
                for item in row:
                    if isinstance(item, dict) and "expression" in item:
                        expression(item["expression"], name)
    elif resource["Type"] == "AWS::CloudWatch::Alarm":
        if "MetricName" in props:
            used.append((resolve(props["Namespace"]), props["MetricName"], name))
        metrics = props.get("Metrics", [])
        branches = metrics["Fn::If"][1:] if isinstance(metrics, dict) else [metrics]
        for query in (query for branch in branches for query in branch):
            if "MetricStat" in query:
                metric = query["MetricStat"]["Metric"]
                used.append((resolve(metric["Namespace"]), metric["MetricName"], name))
            if "Expression" in query:
                expression(resolve(query["Expression"]), name)

for ns, metric, where in used:
    if ns == NS and metric not in CONTRACT:
        errors.append(f"{where}: {metric} is not a contract metric")
    elif ns != NS and (ns, metric) not in FOREIGN:
        errors.append(f"{where}: unexpected metric {ns}/{metric}")
if not used:
    errors.append("no metric found in the template")

for error in errors:
    print(error)
if not errors:
    names = sorted({metric for ns, metric, _ in used if ns == NS})
    print(f"OK {len(names)} contract metrics used: {', '.join(names)}")
sys.exit(1 if errors else 0)
PY
) || status=$?
if [[ $status -eq 0 ]]; then
    report "template: policy matches the JSON policy, dashboard is JSON, ${output#OK }" 0 ""
else
    report "template: policy matches the JSON policy, dashboard is JSON, metric names are the contract's" "$status" "$output"
fi

exit "$failed"
