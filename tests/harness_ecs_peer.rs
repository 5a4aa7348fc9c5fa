//! Pins the ECS-faithful peer (`tests/support/aws/ecs_peer.rs`): each way it differs from
//! moto, as its module doc cites from the ECS API reference. The scale tests count calls
//! and throttling through it, so if the peer drifts from ECS, it fails here first.
//! Run as root after `scripts/test-deps.sh` (moto comes from its venv).

use diskguard_testkit as support;

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::Moto;
use support::aws::ecs_world::{EcsWorld, signed_post};
use support::processes::peer::HttpResponse;

const TARGET: &str = "AmazonEC2ContainerServiceV20141113.";

/// One ECS call through the peer.
fn call(moto: &Moto, op: &str, body: &Value) -> HttpResponse {
    let addr = moto.endpoint().trim_start_matches("http://").to_owned();
    signed_post(
        &addr,
        "ecs",
        "application/x-amz-json-1.1",
        Some(&format!("{TARGET}{op}")),
        &body.to_string(),
    )
}

fn ok(moto: &Moto, op: &str, body: &Value) -> Value {
    let r = call(moto, op, body);
    assert_eq!(r.status, 200, "peer {op} {body}: {}", r.text());
    serde_json::from_slice(&r.body).unwrap_or_else(|e| panic!("peer {op}: not JSON ({e})"))
}

/// `(status, __type)` of an error answer.
fn error(r: &HttpResponse) -> (u16, String) {
    let v: Value = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
    (
        r.status,
        v["__type"].as_str().unwrap_or_default().to_owned(),
    )
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn the_peer_pages_filters_and_lists_attributes_by_name_as_ecs_documents() {
    let moto = Moto::start();
    let world = EcsWorld::seed(&moto, "prod", 130);
    let members = world.members();

    // ListContainerInstances: pages of 100 by default, an opaque token while more remain.
    let first = ok(&moto, "ListContainerInstances", &json!({"cluster": "prod"}));
    assert_eq!(strings(&first["containerInstanceArns"]).len(), 100);
    let token = first["nextToken"].as_str().expect("a nextToken after 100");
    let rest = ok(
        &moto,
        "ListContainerInstances",
        &json!({"cluster": "prod", "nextToken": token}),
    );
    assert_eq!(strings(&rest["containerInstanceArns"]).len(), 30);
    assert!(rest.get("nextToken").is_none_or(Value::is_null));
    let small = ok(
        &moto,
        "ListContainerInstances",
        &json!({"cluster": "prod", "maxResults": 7}),
    );
    assert_eq!(strings(&small["containerInstanceArns"]).len(), 7);
    for bad in [0, 101] {
        let r = call(
            &moto,
            "ListContainerInstances",
            &json!({"cluster": "prod", "maxResults": bad}),
        );
        assert_eq!(
            error(&r),
            (400, "InvalidParameterException".into()),
            "maxResults {bad}"
        );
    }

    // The status filter, and `ec2InstanceId ==` (the only filter diskguard sends).
    world.set_status(&[&members[5].arn], "DRAINING");
    let draining = ok(
        &moto,
        "ListContainerInstances",
        &json!({"cluster": "prod", "status": "DRAINING"}),
    );
    assert_eq!(
        strings(&draining["containerInstanceArns"]),
        [members[5].arn.clone()]
    );
    let by_id = ok(
        &moto,
        "ListContainerInstances",
        &json!({"cluster": "prod", "filter": format!("ec2InstanceId == {}", members[9].ec2_instance_id)}),
    );
    assert_eq!(
        strings(&by_id["containerInstanceArns"]),
        [members[9].arn.clone()]
    );
    let r = call(
        &moto,
        "ListContainerInstances",
        &json!({"cluster": "prod", "filter": "attribute:ecs.os-type == linux"}),
    );
    assert_eq!(error(&r), (400, "InvalidParameterException".into()));

    // DescribeClusters counts ACTIVE + DRAINING, whatever moto says.
    let clusters = ok(&moto, "DescribeClusters", &json!({"clusters": ["prod"]}));
    assert_eq!(
        clusters["clusters"][0]["registeredContainerInstancesCount"],
        130
    );

    // ListAttributes by name alone, paged; DeleteAttributes without a value.
    let name = "diskguard.drained-at";
    for m in &members[..3] {
        world.put_attribute(&m.arn, name, "2026-12-05T10:00:00.000Z");
    }
    let listed = ok(
        &moto,
        "ListAttributes",
        &json!({"cluster": "prod", "targetType": "container-instance", "attributeName": name, "maxResults": 2}),
    );
    assert_eq!(listed["attributes"].as_array().map(Vec::len), Some(2));
    let token = listed["nextToken"]
        .as_str()
        .expect("a nextToken after 2 of 3");
    let more = ok(
        &moto,
        "ListAttributes",
        &json!({"cluster": "prod", "targetType": "container-instance", "attributeName": name, "nextToken": token}),
    );
    let targets: Vec<String> = listed["attributes"]
        .as_array()
        .into_iter()
        .chain(more["attributes"].as_array())
        .flatten()
        .filter_map(|a| a["targetId"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(targets.len(), 3, "{targets:?}");
    assert!(members[..3].iter().all(|m| {
        targets
            .iter()
            .any(|t| m.arn.ends_with(t.rsplit('/').next().unwrap_or(t)))
    }));
    ok(
        &moto,
        "DeleteAttributes",
        &json!({"cluster": "prod", "attributes": [{"name": name, "targetId": members[0].arn}]}),
    );
    assert_eq!(world.attribute(&members[0].arn, name), None);
    assert!(
        world.attribute(&members[1].arn, name).is_some(),
        "only the target's"
    );
}

#[test]
fn the_peer_throttles_by_ecs_buckets_counts_callers_and_lags_writes() {
    let moto = Moto::start();
    let world = EcsWorld::seed(&moto, "prod", 2);
    let arn = world.members()[0].arn.clone();
    let describe = json!({"cluster": "prod", "containerInstances": [arn]});

    // Reads share one bucket: an empty one answers ThrottlingException, writes go on.
    moto.ecs().reset_counts();
    moto.ecs().set_read_quota(2, 0.0);
    let answers: Vec<u16> = (0..4)
        .map(|_| call(&moto, "DescribeContainerInstances", &describe).status)
        .collect();
    assert_eq!(answers, [200, 200, 400, 400]);
    let r = call(
        &moto,
        "ListAttributes",
        &json!({"cluster": "prod", "targetType": "container-instance", "attributeName": "x"}),
    );
    assert_eq!(error(&r), (400, "ThrottlingException".into()));
    let put = json!({"cluster": "prod", "attributes": [{"name": "diskguard.culprit", "value": "f", "targetId": arn}]});
    assert_eq!(
        call(&moto, "PutAttributes", &put).status,
        200,
        "writes have their own bucket"
    );
    let c = moto.ecs().count("DescribeContainerInstances");
    assert_eq!((c.calls, c.throttled), (4, 2));
    assert_eq!(
        moto.ecs().caller("testing").calls,
        6,
        "counted by access key"
    );
    moto.ecs().unthrottled();
    assert_eq!(
        call(&moto, "DescribeContainerInstances", &describe).status,
        200
    );

    // Eventual consistency: acknowledged at once, seen `lag` later.
    moto.ecs().set_lag(Duration::from_secs(2));
    let put = json!({"cluster": "prod", "attributes": [{"name": "diskguard.drained-at", "value": "v", "targetId": arn}]});
    let acked = Instant::now();
    assert_eq!(call(&moto, "PutAttributes", &put).status, 200);
    assert_eq!(
        world.attribute(&arn, "diskguard.drained-at"),
        None,
        "seen at once"
    );
    let deadline = acked + Duration::from_secs(10);
    while world.attribute(&arn, "diskguard.drained-at").is_none() {
        assert!(Instant::now() < deadline, "the write never landed");
        std::thread::sleep(Duration::from_millis(100));
    }
    let seen = acked.elapsed();
    assert!(seen >= Duration::from_millis(1900), "seen after {seen:?}");
}
