//! Pins the moto behaviour the ECS tests (and diskguard's ECS client) rely
//! on, including where moto differs from AWS: if a moto upgrade changes one
//! of these, it fails here first. The ECS mocks are pinned in `harness_aws_mocks.rs`.
//! Run as root after `scripts/test-deps.sh` (moto comes from its venv).

use diskguard_testkit as support;

use std::time::Instant;

use serde_json::{Value, json};
use support::Moto;
use support::aws::ecs_world::EcsWorld;
use support::processes::peer::HttpResponse;

fn json_of(r: &HttpResponse) -> Value {
    serde_json::from_slice(&r.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", r.text()))
}

#[test]
fn moto_registers_ten_container_instances_and_drains_one() {
    let moto = Moto::start();
    let started = Instant::now();
    let world = EcsWorld::seed(&moto, "prod", 10);
    eprintln!(
        "moto: started in {:?}, seeded 10 instances in {:?}",
        moto.startup_time(),
        started.elapsed()
    );
    let members = world.members();
    assert_eq!(members.len(), 10);
    // Long ARN format, cluster name included (moto's default, as on AWS today).
    assert!(
        members[0]
            .arn
            .starts_with("arn:aws:ecs:us-east-1:123456789012:container-instance/prod/")
    );
    assert!(members.iter().all(|m| m.ec2_instance_id.starts_with("i-")));
    assert_eq!(world.count_by_status(), [("ACTIVE".to_owned(), 10)].into());
    let view = world.describe(&members[0].arn);
    assert_eq!(
        (view.status.as_str(), view.ec2_instance_id.as_str()),
        ("ACTIVE", members[0].ec2_instance_id.as_str())
    );
    assert_eq!(view.attribute("ecs.os-type"), Some("linux"));

    world.set_status(&[&members[3].arn], "DRAINING");
    assert_eq!(world.describe(&members[3].arn).status, "DRAINING");
    assert_eq!(
        world.count_by_status(),
        [("ACTIVE".to_owned(), 9), ("DRAINING".to_owned(), 1)].into()
    );
    assert_eq!(world.list(Some("DRAINING")), vec![members[3].arn.clone()]);
    assert_eq!(world.list(Some("ACTIVE")).len(), 9);

    // moto quirk: no pagination — maxResults ignored, never a nextToken.
    let page = world.ecs_ok(
        "ListContainerInstances",
        &json!({"cluster": "prod", "maxResults": 3}),
    );
    assert_eq!(
        page["containerInstanceArns"].as_array().map(Vec::len),
        Some(10)
    );
    assert!(page.get("nextToken").is_none());
    // moto quirk: UpdateContainerInstancesState echoes attributes as `{}`.
    let updated = world.ecs_ok(
        "UpdateContainerInstancesState",
        &json!({"cluster": "prod", "containerInstances": [members[3].arn], "status": "ACTIVE"}),
    );
    assert_eq!(updated["containerInstances"][0]["status"], "ACTIVE");
    assert_eq!(updated["containerInstances"][0]["attributes"][0], json!({}));
    // Unknown instances come back as failures, not errors.
    let bogus = "arn:aws:ecs:us-east-1:123456789012:container-instance/prod/nope";
    let r = world.ecs_ok(
        "DescribeContainerInstances",
        &json!({"cluster": "prod", "containerInstances": [bogus]}),
    );
    assert_eq!(r["failures"][0]["reason"], "MISSING");
    // moto needs the EC2 instance to exist.
    let doc = json!({"instanceId": "i-00000000000000000"}).to_string();
    let r = world.ecs(
        "RegisterContainerInstance",
        &json!({"cluster": "prod", "instanceIdentityDocument": doc}),
    );
    assert_eq!(
        (r.status, json_of(&r)["__type"].as_str()),
        (400, Some("InvalidInstanceID.NotFound"))
    );
    assert_eq!(world.count_by_status(), [("ACTIVE".to_owned(), 10)].into());
}

#[test]
fn moto_attributes_round_trip_by_full_arn() {
    let moto = Moto::start();
    let world = EcsWorld::seed(&moto, "prod", 2);
    let arn = world.members()[0].arn.clone();
    let other = world.members()[1].arn.clone();
    let name = "diskguard.drained-at";
    world.put_attribute(&arn, name, "2026-01-01T00:00:00Z");
    assert_eq!(
        world.attribute(&arn, name).as_deref(),
        Some("2026-01-01T00:00:00Z")
    );
    assert_eq!(
        world.attribute(&other, name),
        None,
        "only the target gets it"
    );

    // ListAttributes: name + value works; moto quirk: name alone finds nothing.
    let list = |extra: Value| {
        let mut req =
            json!({"cluster": "prod", "targetType": "container-instance", "attributeName": name});
        req.as_object_mut()
            .expect("object")
            .extend(extra.as_object().cloned().unwrap_or_default());
        world.ecs_ok("ListAttributes", &req)["attributes"].clone()
    };
    assert_eq!(
        list(json!({"attributeValue": "2026-01-01T00:00:00Z"}))[0]["targetId"],
        json!(arn)
    );
    assert_eq!(list(json!({})), json!([]));

    // moto quirk: a full ARN *with* targetType is not found; a bare id with it is.
    let attr = |id: &str, t: bool| {
        let mut a = json!({"name": "x.typed", "value": "v", "targetId": id});
        if t {
            a["targetType"] = json!("container-instance");
        }
        json!({"cluster": "prod", "attributes": [a]})
    };
    let r = world.ecs("PutAttributes", &attr(&arn, true));
    assert_eq!(
        (r.status, json_of(&r)["__type"].as_str()),
        (400, Some("TargetNotFoundException"))
    );
    let bare = arn.rsplit('/').next().expect("ARN has an id");
    assert_eq!(world.ecs("PutAttributes", &attr(bare, true)).status, 200);
    assert_eq!(world.attribute(&arn, "x.typed").as_deref(), Some("v"));
    // moto quirk: PutAttributes without `cluster` is a 500 (AWS: default cluster).
    let mut no_cluster = attr(&arn, false);
    no_cluster
        .as_object_mut()
        .expect("object")
        .remove("cluster");
    assert_eq!(world.ecs("PutAttributes", &no_cluster).status, 500);

    // moto quirk: DeleteAttributes without the stored value is a silent no-op.
    let del = |value: Option<&str>| {
        let mut a = json!({"name": name, "targetId": arn});
        if let Some(v) = value {
            a["value"] = json!(v);
        }
        world.ecs(
            "DeleteAttributes",
            &json!({"cluster": "prod", "attributes": [a]}),
        )
    };
    assert_eq!(del(None).status, 200);
    assert!(
        world.attribute(&arn, name).is_some(),
        "deleted without a value after all"
    );
    assert_eq!(del(Some("2026-01-01T00:00:00Z")).status, 200);
    assert_eq!(world.attribute(&arn, name), None);
    // The helper reads the value first, so it always deletes.
    world.put_attribute(&arn, name, "2026-02-02T00:00:00Z");
    world.delete_attribute(&arn, name);
    assert_eq!(world.attribute(&arn, name), None);
    world.delete_attribute(&arn, name);
}
