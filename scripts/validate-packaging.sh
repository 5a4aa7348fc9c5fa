#!/usr/bin/env bash
# Validates what packaging/ ships for operators, with the linters from the test venv
# (scripts/test-deps.sh installs them):
#   1. cfn-lint on each template in packaging/cloudformation/ (diskguard.yaml: policy, dashboard,
#      alarms; diskguard-node.yaml: Flatcar nodes with a drain surge): no finding at all (errors,
#      warnings, informational);
#   2. parliament on packaging/iam/diskguard-policy.json, placeholders filled with sample values:
#      no finding at any severity, community auditors included;
#   3. each template's own checks: its IAM policy is the JSON policy (so they cannot drift), an
#      Auto Scaling group it creates carries the tag that policy requires for SetInstanceHealth, its
#      dashboard body is valid JSON once !Sub is resolved, every metric it graphs or alarms on
#      is a contract metric of diskguard's namespace (so a typo cannot pass), and a launch
#      template's user data (each branch of an Fn::If), !Sub resolved with sample values, fits
#      EC2's 16 KB and passes its validator: Flatcar's (a `coreos:` key) the cloud-config
#      checker (tests/support/systemd/cloud_config_check.py), Amazon Linux's `cloud-init schema`;
#   4. promtool (Debian's prometheus package) on packaging/prometheus/diskguard-rules.yml:
#      `check rules` clean, and `test rules` on diskguard-rules.test.yml passing.
# Prints one line per check; exits non-zero if any fails.
# Run: scripts/validate-packaging.sh   (DISKGUARD_TEST_VENV overrides /opt/diskguard-test-venv)
set -euo pipefail

cd "$(dirname "$0")/.."
VENV="${DISKGUARD_TEST_VENV:-/opt/diskguard-test-venv}"
TEMPLATES=(packaging/cloudformation/diskguard.yaml packaging/cloudformation/diskguard-node.yaml
    packaging/cloudformation/diskguard-daemon.yaml)
POLICY=packaging/iam/diskguard-policy.json
CLOUD_CONFIG_CHECK=tests/support/systemd/cloud_config_check.py
RULES=packaging/prometheus/diskguard-rules.yml
RULES_TEST=packaging/prometheus/diskguard-rules.test.yml

for tool in cfn-lint parliament python; do
    if [[ ! -x $VENV/bin/$tool ]]; then
        echo "validate-packaging: $VENV/bin/$tool is missing; run scripts/test-deps.sh" >&2
        exit 1
    fi
done

if ! command -v cloud-init >/dev/null 2>&1; then
    echo "validate-packaging: cloud-init is missing; run scripts/test-deps.sh" >&2
    exit 1
fi

if ! command -v promtool >/dev/null 2>&1; then
    echo "validate-packaging: promtool is missing; run scripts/test-deps.sh" >&2
    exit 1
fi

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
for TEMPLATE in "${TEMPLATES[@]}"; do
    status=0
    output=$("$VENV/bin/cfn-lint" --include-checks I --non-zero-exit-code informational -- "$TEMPLATE" 2>&1) || status=$?
    report "cfn-lint $TEMPLATE: no errors, warnings or informational findings" "$status" "$output"
done

# parliament reads the policy from stdin (it refuses --file when stdin is not a terminal) and
# exits 1 when it prints findings. REGION/ACCOUNT_ID are not valid ARN parts, so fill them in.
status=0
output=$(sed -e 's/REGION/eu-west-1/g' -e 's/ACCOUNT_ID/123456789012/g' -e 's/CLUSTER_NAME/prod/g' "$POLICY" |
    "$VENV/bin/parliament" --minimum_severity INFO --include-community-auditors 2>&1) || status=$?
report "parliament $POLICY: no findings at any severity" "$status" "$output"

for TEMPLATE in "${TEMPLATES[@]}"; do
status=0
output=$("$VENV/bin/python" - "$TEMPLATE" "$POLICY" "$CLOUD_CONFIG_CHECK" <<'PY' 2>&1
import json, re, subprocess, sys, tempfile
from cfnlint.decode import decode

template_path, policy_path, cloud_config_check = sys.argv[1:]
# The metric names of the contract (design notes, "Contract: CloudWatch metrics").
CONTRACT = {"DiskUsedPercent", "InodesUsedPercent", "DiskFreeBytes", "TimeToFullSeconds",
            "ReclaimedBytes", "ReclaimErrors", "Draining", "DrainSuppressed",
            "EtcdQuotaUsedPercent", "EtcdNoSpaceAlarm", "Evictions"}
# Metrics of other namespaces the template may read, and why.
FOREIGN = {("ECS/ContainerInsights", "ContainerInstanceCount")}  # expected count, silence alarm
SAMPLE = {"AWS::Partition": "aws", "AWS::Region": "eu-west-1", "AWS::AccountId": "123456789012",
          "ClusterName": "prod", "Namespace": "DiskGuard", "ExpectedInstanceCount": "0",
          "ReleaseUrl": "https://releases.example.com/diskguard/diskguard-0.1.0-1a2b3c4d5e6f-x86_64-linux.tar.gz",
          "ReleaseSha256": "9f2c4e1b7a3d5f60817263544536271809a0b1c2d3e4f5a6b7c8d9e0f1a2b3c4"}
USER_DATA_LIMIT = 16 * 1024  # EC2's limit on user data, before base64
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
        if key == "Fn::Base64":
            return resolve(arg)
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
    elif resource["Type"] == "AWS::EC2::LaunchTemplate":
        user_data = props["LaunchTemplateData"].get("UserData")
        if user_data is None:
            continue
        if isinstance(user_data, dict) and "Fn::If" in user_data:
            branches = user_data["Fn::If"][1:]
        else:
            branches = [user_data]
        for text in map(resolve, branches):
            if not isinstance(text, str):
                errors.append(f"{name}: UserData does not resolve to text with sample parameters")
                continue
            if len(text.encode()) > USER_DATA_LIMIT:
                errors.append(f"{name}: UserData is {len(text.encode())} bytes; EC2 takes {USER_DATA_LIMIT}")
            flatcar = re.search(r"^coreos:", text, re.MULTILINE) is not None
            with tempfile.NamedTemporaryFile("w", suffix=".yaml") as handle:
                handle.write(text)
                handle.flush()
                if flatcar:
                    checked = subprocess.run([sys.executable, cloud_config_check, handle.name],
                                             capture_output=True, text=True)
                else:
                    checked = subprocess.run(["cloud-init", "schema", "--config-file", handle.name],
                                             capture_output=True, text=True)
            if checked.returncode != 0:
                which = "Flatcar cloud-config" if flatcar else "cloud-init user data"
                said = (checked.stdout + checked.stderr).strip()
                errors.append(f"{name}: UserData is not valid {which}: {said}")
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

# 3. An alarm that drives Auto Scaling is the drain surge: the roll-up Draining (ClusterName
# alone), its one-minute Sum >= 1 scaling out by one, its OK state back to the group's size.
for name, resource in resources.items():
    props = resource.get("Properties", {})
    if resource["Type"] != "AWS::CloudWatch::Alarm":
        continue
    actions = [a.get("Ref") for a in props.get("AlarmActions", []) + props.get("OKActions", [])
               if isinstance(a, dict)]
    if not any(resources.get(a, {}).get("Type") == "AWS::AutoScaling::ScalingPolicy" for a in actions):
        continue
    want = {"Namespace": NS, "MetricName": "Draining", "Statistic": "Sum", "Period": 60,
            "ComparisonOperator": "GreaterThanOrEqualToThreshold", "Threshold": 1}
    got = {key: resolve(props.get(key)) for key in want}
    if got != want:
        errors.append(f"{name}: drives Auto Scaling but is not Sum(Draining) >= 1 over 60 s: {got}")
    if [d["Name"] for d in props.get("Dimensions", [])] != ["ClusterName"]:
        errors.append(f"{name}: must watch the roll-up (dimension ClusterName alone)")
    out = [resources[a.get("Ref")]["Properties"] for a in props.get("AlarmActions", [])]
    back = [resources[a.get("Ref")]["Properties"] for a in props.get("OKActions", [])]
    if [(p.get("AdjustmentType"), p.get("ScalingAdjustment")) for p in out] != [("ChangeInCapacity", 1)]:
        errors.append(f"{name}: its ALARM action must add exactly one instance")
    if [p.get("AdjustmentType") for p in back] != ["ExactCapacity"]:
        errors.append(f"{name}: its OK action must set the group back to an exact size")

# 4. A group the template creates opts in to escalation with the tag the policy conditions
# SetInstanceHealth on (autoscaling:ResourceTag/<key>), on the group only: PropagateAtLaunch
# false, since the condition key reads the group's tags.
escalate = [(key.split("/", 1)[1], value)
            for statement in plain["Statement"] if statement["Action"] == "autoscaling:SetInstanceHealth"
            for key, value in statement["Condition"]["StringEquals"].items()
            if key.startswith("autoscaling:ResourceTag/")]
for name, resource in resources.items():
    if resource["Type"] != "AWS::AutoScaling::AutoScalingGroup":
        continue
    tags = {(t["Key"], resolve(t["Value"]), t["PropagateAtLaunch"])
            for t in resource["Properties"].get("Tags", [])}
    for key, value in escalate:
        if (key, value, False) not in tags:
            errors.append(f"{name}: no tag {key}={value} with PropagateAtLaunch false, which the "
                          "policy requires for autoscaling:SetInstanceHealth")

for ns, metric, where in used:
    if ns == NS and metric not in CONTRACT:
        errors.append(f"{where}: {metric} is not a contract metric")
    elif ns != NS and (ns, metric) not in FOREIGN:
        errors.append(f"{where}: unexpected metric {ns}/{metric}")
watches = {"AWS::CloudWatch::Dashboard", "AWS::CloudWatch::Alarm"}
if not used and any(r["Type"] in watches for r in resources.values()):
    errors.append("no metric found in the template")

# 5. A task definition is the one in packaging/ecs/ (the daemon service): the same mounts,
# namespaces, labels and log limits, so the JSON an operator registers by hand and the stack
# cannot drift apart.
with open("packaging/ecs/diskguard-task-definition.json") as handle:
    task = json.load(handle)
def lower(value):
    """CloudFormation's PascalCase keys as the ECS API's camelCase."""
    if isinstance(value, dict):
        return {k[0].lower() + k[1:]: lower(v) for k, v in value.items()}
    if isinstance(value, list):
        return [lower(v) for v in value]
    return value
for name, resource in resources.items():
    if resource["Type"] != "AWS::ECS::TaskDefinition":
        continue
    props = lower(resource["Properties"])
    for key in ("networkMode", "pidMode", "requiresCompatibilities", "volumes"):
        if props.get(key) != task[key]:
            errors.append(f"{name}: {key} differs from packaging/ecs/: {props.get(key)} != {task[key]}")
    mine, theirs = props["containerDefinitions"][0], task["containerDefinitions"][0]
    for key in ("mountPoints", "cpu", "memory", "memoryReservation", "stopTimeout"):
        if mine.get(key) != theirs[key]:
            errors.append(f"{name}: {key} differs from packaging/ecs/")
    # Labels and log options are maps whose keys CloudFormation keeps as they are.
    container = resource["Properties"]["ContainerDefinitions"][0]
    if container.get("DockerLabels") != theirs["dockerLabels"]:
        errors.append(f"{name}: dockerLabels differ from packaging/ecs/")
    log = container.get("LogConfiguration", {})
    if (log.get("LogDriver"), log.get("Options")) != (theirs["logConfiguration"]["logDriver"],
                                                       theirs["logConfiguration"]["options"]):
        errors.append(f"{name}: logConfiguration differs from packaging/ecs/")

for error in errors:
    print(error)
if not errors:
    names = sorted({metric for ns, metric, _ in used if ns == NS})
    print(f"OK {len(names)} contract metrics used: {', '.join(names)}")
sys.exit(1 if errors else 0)
PY
) || status=$?
if [[ $status -eq 0 ]]; then
    report "$TEMPLATE: policy matches the JSON policy, dashboard and user data valid, ${output#OK }" 0 ""
else
    report "$TEMPLATE: policy matches the JSON policy, dashboard and user data valid, metric names are the contract's" "$status" "$output"
fi
done

# promtool prints SUCCESS lines when all is well, so only its status counts here.
status=0
output=$(promtool check rules "$RULES" 2>&1) || status=$?
report "promtool check rules $RULES" "$status" "$([[ $status -eq 0 ]] || echo "$output")"
status=0
output=$(promtool test rules "$RULES_TEST" 2>&1) || status=$?
report "promtool test rules $RULES_TEST: every alert fires when it should, and only then" "$status" "$([[ $status -eq 0 ]] || echo "$output")"

exit "$failed"
