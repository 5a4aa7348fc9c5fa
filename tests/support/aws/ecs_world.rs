//! Seeds moto with an ECS cluster of registered container instances (each
//! backed by a moto EC2 instance, which moto requires), and reads or changes
//! their state through moto's own HTTP API — the way the tests arrange "the
//! rest of the cluster" and check what diskguard did.
//!
//! Everything runs in region us-east-1, account 123456789012 (moto's
//! defaults): the SDK under test must use the same region to see this data.
//! [`EcsWorld`] keeps only moto's address, not a borrow of [`Moto`], so a test
//! fixture can own both.
//!
//! moto 5.2 differs from AWS here (pinned by `tests/harness_aws_mocks.rs`):
//! - ListContainerInstances: `status` filter works, `filter`, `maxResults` and
//!   `nextToken` are ignored — one page with everything, never a nextToken.
//! - PutAttributes: full ARN as targetId only *without* targetType (with it:
//!   TargetNotFoundException); bare id only with targetType; no `cluster` → 500.
//! - DeleteAttributes deletes only if `value` equals the stored value; without
//!   it (as AWS documents for custom attributes) it is a silent 200 no-op.
//! - ListAttributes with attributeName but no attributeValue finds nothing.
//! - UpdateContainerInstancesState echoes attributes as `{}` (the SDK reads
//!   them as empty names); DescribeContainerInstances lists them properly.
//! - The ≤ 10 instances per UpdateContainerInstancesState limit is not enforced.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::aws::moto::Moto;
use crate::processes::peer::{HttpResponse, http_tcp};

pub const REGION: &str = "us-east-1";
pub const ECS_TARGET_PREFIX: &str = "AmazonEC2ContainerServiceV20141113.";

/// One registered container instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub ec2_instance_id: String,
    pub arn: String,
}

/// A container instance as DescribeContainerInstances shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceView {
    pub arn: String,
    pub ec2_instance_id: String,
    pub status: String,
    /// All attributes, moto's built-in `ecs.*` ones included; value `None`
    /// when the attribute was put without one.
    pub attributes: Vec<(String, Option<String>)>,
}

impl InstanceView {
    /// `Some(value)` when the attribute is present (`Some("")` if valueless).
    pub fn attribute(&self, name: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_deref().unwrap_or(""))
    }
}

#[derive(Debug, Clone)]
pub struct EcsWorld {
    addr: String,
    cluster: String,
    cluster_arn: String,
    members: Vec<Member>,
}

impl EcsWorld {
    /// Creates cluster `cluster` and registers `n` container instances.
    pub fn seed(moto: &Moto, cluster: &str, n: usize) -> EcsWorld {
        let mut world = EcsWorld::create(moto, cluster);
        world.add_instances(n);
        world
    }

    /// Creates (or re-creates: moto's CreateCluster is idempotent) `cluster`
    /// with no instances.
    pub fn create(moto: &Moto, cluster: &str) -> EcsWorld {
        let mut world = EcsWorld {
            addr: format!("127.0.0.1:{}", moto.port()),
            cluster: cluster.to_owned(),
            cluster_arn: String::new(),
            members: Vec::new(),
        };
        let created = world.ecs_ok("CreateCluster", &json!({ "clusterName": cluster }));
        world.cluster_arn = str_at(&created, "/cluster/clusterArn");
        world
    }

    /// Runs `n` EC2 instances (one RunInstances call) and registers a
    /// container instance for each; returns the new members.
    pub fn add_instances(&mut self, n: usize) -> Vec<Member> {
        if n == 0 {
            return Vec::new();
        }
        let image = self.ecs_ami();
        let count = n.to_string();
        let run = self.ec2_ok(&[
            ("Action", "RunInstances"),
            ("ImageId", &image),
            ("InstanceType", "m5.large"),
            ("MinCount", &count),
            ("MaxCount", &count),
        ]);
        // One <instanceId> per instance in a RunInstances reply.
        let ids: Vec<String> = run
            .split("<instanceId>")
            .skip(1)
            .filter_map(|s| s.split_once("</instanceId>").map(|(id, _)| id.to_owned()))
            .collect();
        assert_eq!(ids.len(), n, "RunInstances for {n} gave ids {ids:?}");
        let added: Vec<Member> = ids
            .into_iter()
            .map(|id| {
                // moto reads only instanceId from the document and checks no
                // signature; the real agent sends the signed IMDS document.
                let doc = json!({ "instanceId": id, "region": REGION }).to_string();
                let reg = self.ecs_ok(
                    "RegisterContainerInstance",
                    &json!({
                        "cluster": self.cluster,
                        "instanceIdentityDocument": doc,
                        "instanceIdentityDocumentSignature": "dummy-signature",
                    }),
                );
                let arn = str_at(&reg, "/containerInstance/containerInstanceArn");
                Member {
                    ec2_instance_id: id,
                    arn,
                }
            })
            .collect();
        self.members.extend(added.iter().cloned());
        added
    }

    /// An Amazon ECS-optimized AMI from moto's catalogue (moto does not
    /// validate ImageId by default, but a real id keeps `ecs.ami-id` and
    /// `ecs.os-type = linux` realistic; Windows AMIs would flip the latter).
    fn ecs_ami(&self) -> String {
        let images = self.ec2_ok(&[
            ("Action", "DescribeImages"),
            ("Owner.1", "amazon"),
            ("Filter.1.Name", "name"),
            ("Filter.1.Value.1", "amzn2-ami-ecs-hvm-*-x86_64-ebs"),
        ]);
        images
            .split("<imageId>")
            .nth(1)
            .and_then(|s| s.split_once("</imageId>"))
            .map(|(id, _)| id.to_owned())
            .unwrap_or_else(|| panic!("moto lists no amzn2-ami-ecs-hvm image: {images:.300}"))
    }

    pub fn cluster(&self) -> &str {
        &self.cluster
    }
    pub fn cluster_arn(&self) -> &str {
        &self.cluster_arn
    }
    /// Registered instances, in registration order.
    pub fn members(&self) -> &[Member] {
        &self.members
    }

    /// One ECS JSON 1.1 call (`op` without the target prefix), raw answer.
    pub fn ecs(&self, op: &str, body: &Value) -> HttpResponse {
        let target = format!("{ECS_TARGET_PREFIX}{op}");
        signed_post(
            &self.addr,
            "ecs",
            "application/x-amz-json-1.1",
            Some(&target),
            &body.to_string(),
        )
    }

    /// [`ecs`](Self::ecs), panicking (with moto's answer) unless it is 200.
    pub fn ecs_ok(&self, op: &str, body: &Value) -> Value {
        let resp = self.ecs(op, body);
        if resp.status != 200 {
            panic!("moto ECS {op} {body} → {}: {}", resp.status, resp.text());
        }
        serde_json::from_slice(&resp.body)
            .unwrap_or_else(|e| panic!("moto ECS {op}: answer is not JSON ({e}): {}", resp.text()))
    }

    /// One EC2 query-protocol call (form post; `Version` is added), raw.
    pub fn ec2(&self, params: &[(&str, &str)]) -> HttpResponse {
        let mut form = String::from("Version=2016-11-15");
        for (k, v) in params {
            form.push_str(&format!("&{}={}", form_encode(k), form_encode(v)));
        }
        let ctype = "application/x-www-form-urlencoded; charset=utf-8";
        signed_post(&self.addr, "ec2", ctype, None, &form)
    }

    fn ec2_ok(&self, params: &[(&str, &str)]) -> String {
        let resp = self.ec2(params);
        if resp.status != 200 {
            panic!("moto EC2 {params:?} → {}: {}", resp.status, resp.text());
        }
        resp.text()
    }

    pub fn describe(&self, arn: &str) -> InstanceView {
        let mut all = self.describe_many(&[arn]);
        assert_eq!(all.len(), 1, "DescribeContainerInstances {arn}: {all:?}");
        all.remove(0)
    }

    /// Every instance of the cluster, whatever its status.
    pub fn describe_all(&self) -> Vec<InstanceView> {
        let arns = self.list(None);
        let arns: Vec<&str> = arns.iter().map(String::as_str).collect();
        // AWS takes at most 100 a call; stay within it.
        arns.chunks(100)
            .flat_map(|c| self.describe_many(c))
            .collect()
    }

    fn describe_many(&self, arns: &[&str]) -> Vec<InstanceView> {
        let out = self.ecs_ok(
            "DescribeContainerInstances",
            &json!({ "cluster": self.cluster, "containerInstances": arns }),
        );
        let failures = &out["failures"];
        assert!(
            failures.as_array().is_none_or(Vec::is_empty),
            "DescribeContainerInstances failures: {failures}"
        );
        let list = out["containerInstances"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        list.iter()
            .map(|ci| InstanceView {
                arn: str_at(ci, "/containerInstanceArn"),
                ec2_instance_id: str_at(ci, "/ec2InstanceId"),
                status: str_at(ci, "/status"),
                attributes: parse_attributes(&ci["attributes"]),
            })
            .collect()
    }

    /// UpdateContainerInstancesState (`"DRAINING"` or `"ACTIVE"`), ≤ 10 ARNs
    /// a call as on AWS (moto itself does not enforce the limit).
    pub fn set_status(&self, arns: &[&str], status: &str) {
        for chunk in arns.chunks(10) {
            let out = self.ecs_ok(
                "UpdateContainerInstancesState",
                &json!({ "cluster": self.cluster, "containerInstances": chunk, "status": status }),
            );
            let failures = &out["failures"];
            assert!(
                failures.as_array().is_none_or(Vec::is_empty),
                "UpdateContainerInstancesState {status} failures: {failures}"
            );
        }
    }

    /// PutAttributes with the full ARN as targetId and no targetType (moto
    /// answers TargetNotFoundException to a full ARN with a targetType).
    pub fn put_attribute(&self, arn: &str, name: &str, value: &str) {
        let attr = json!({ "name": name, "value": value, "targetId": arn });
        self.ecs_ok(
            "PutAttributes",
            &json!({ "cluster": self.cluster, "attributes": [attr] }),
        );
    }

    /// DeleteAttributes by full ARN. moto deletes only when `value` equals the
    /// stored value (otherwise a silent no-op, 200), so the current value is
    /// read first and sent along. No-op when the attribute is absent.
    pub fn delete_attribute(&self, arn: &str, name: &str) {
        let Some(value) = self.attribute(arn, name) else {
            return;
        };
        let attr = json!({ "name": name, "value": value, "targetId": arn });
        self.ecs_ok(
            "DeleteAttributes",
            &json!({ "cluster": self.cluster, "attributes": [attr] }),
        );
    }

    /// The instance's attributes (moto's `ecs.*` built-ins included).
    pub fn attributes(&self, arn: &str) -> Vec<(String, Option<String>)> {
        self.describe(arn).attributes
    }

    /// `Some(value)` when attribute `name` is on the instance.
    pub fn attribute(&self, arn: &str, name: &str) -> Option<String> {
        self.describe(arn).attribute(name).map(str::to_owned)
    }

    /// ListContainerInstances (moto: `status` filter works, but it returns
    /// everything in one page and ignores maxResults/nextToken).
    pub fn list(&self, status: Option<&str>) -> Vec<String> {
        let mut req = json!({ "cluster": self.cluster });
        if let Some(status) = status {
            req["status"] = json!(status);
        }
        let out = self.ecs_ok("ListContainerInstances", &req);
        out["containerInstanceArns"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Instances per status (`{"ACTIVE": 9, "DRAINING": 1}`), from Describe.
    pub fn count_by_status(&self) -> BTreeMap<String, usize> {
        let mut counts = BTreeMap::new();
        for view in self.describe_all() {
            *counts.entry(view.status).or_insert(0) += 1;
        }
        counts
    }
}

fn parse_attributes(v: &Value) -> Vec<(String, Option<String>)> {
    let list = v.as_array().cloned().unwrap_or_default();
    list.iter()
        .filter_map(|a| {
            let name = a["name"].as_str()?.to_owned();
            Some((name, a["value"].as_str().map(str::to_owned)))
        })
        .collect()
}

fn str_at(v: &Value, pointer: &str) -> String {
    v.pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("no string at {pointer} in moto's answer {v}"))
        .to_owned()
}

/// A POST with the fake SigV4 header `Moto::aws_json` uses: moto routes by
/// the credential scope's service and does not verify the signature.
pub fn signed_post(
    addr: &str,
    service: &str,
    content_type: &str,
    target: Option<&str>,
    body: &str,
) -> HttpResponse {
    let mut signed = String::from("content-type;host;x-amz-date");
    if target.is_some() {
        signed.push_str(";x-amz-target");
    }
    let auth = format!(
        "AWS4-HMAC-SHA256 Credential=testing/20260101/{REGION}/{service}/aws4_request, \
         SignedHeaders={signed}, Signature=0000"
    );
    let mut headers = vec![
        ("Content-Type", content_type),
        ("X-Amz-Date", "20260101T000000Z"),
        ("Authorization", auth.as_str()),
    ];
    if let Some(t) = target {
        headers.push(("X-Amz-Target", t));
    }
    http_tcp(addr, "POST", "/", &headers, body.as_bytes())
        .unwrap_or_else(|e| panic!("POST {service} {target:?} to moto at {addr}: {e}"))
}

/// application/x-www-form-urlencoded for one key or value.
fn form_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'*' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
