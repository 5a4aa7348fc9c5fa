//! The leftovers report's pure parts: GraphDriver references, counts, order, the line.

use super::*;

const MIB: u64 = 1 << 20;

fn item(kind: LeftoverKind, name: &str, bytes: u64, in_use: Option<u64>) -> Leftover {
    Leftover {
        kind,
        name: name.to_owned(),
        bytes,
        in_use,
        at_least: false,
    }
}

#[test]
fn a_containers_graph_driver_data_references_its_init_layer_and_every_lower_dir() {
    let o = "/var/lib/docker/overlay2";
    let data = HashMap::from([
        (
            "LowerDir".to_owned(),
            format!("{o}/c1-init/diff:{o}/img2/diff:{o}/img1/diff"),
        ),
        ("UpperDir".to_owned(), format!("{o}/c1/diff")),
        ("WorkDir".to_owned(), format!("{o}/c1/work")),
        ("MergedDir".to_owned(), format!("{o}/c1/merged")),
        ("ID".to_owned(), "ignored".to_owned()),
    ]);
    let mut names = layer_dir_names(&data);
    names.sort();
    names.dedup();
    assert_eq!(names, ["c1", "c1-init", "img1", "img2"]);
}

#[test]
fn paths_outside_an_overlay2_layer_are_not_references() {
    let data = HashMap::from([
        (
            "UpperDir".to_owned(),
            "/var/lib/docker/overlay2/l/ABC".to_owned(),
        ),
        ("LowerDir".to_owned(), "/elsewhere/x/diff:".to_owned()),
        (
            "MergedDir".to_owned(),
            "/data/overlay2/docker/overlay2/abc/merged".to_owned(),
        ),
    ]);
    assert_eq!(layer_dir_names(&data), ["abc"]);
}

#[test]
fn volumes_and_images_count_the_containers_that_reference_them() {
    let mount = |name: &str| bollard::models::MountPoint {
        typ: Some("volume".into()),
        name: Some(name.into()),
        ..Default::default()
    };
    let container = |name: &str, image: &str, mounts| ContainerSummary {
        id: Some(format!("{name}-id")),
        names: Some(vec![format!("/{name}")]),
        image_id: Some(image.into()),
        size_rw: Some(5 * MIB as i64),
        mounts: Some(mounts),
        ..Default::default()
    };
    let containers = [
        container("db", "sha256:pg", vec![mount("pgdata"), mount("pgdata")]),
        container("backup", "sha256:pg", vec![mount("pgdata")]),
    ];
    let image = |id: &str, tags: &[&str]| ImageSummary {
        id: id.into(),
        repo_tags: tags.iter().map(|t| (*t).to_owned()).collect(),
        size: 80 * MIB as i64,
        ..Default::default()
    };
    let images = [
        image("sha256:pg", &["postgres:16"]),
        image("sha256:0123456789abcdef0123", &["<none>:<none>"]),
    ];
    let volume = |name: &str, driver: &str| Volume {
        name: name.into(),
        driver: driver.into(),
        mountpoint: format!("/var/lib/docker/volumes/{name}/_data"),
        ..Default::default()
    };
    let volumes = vec![
        volume("pgdata", "local"),
        volume("spare", "local"),
        volume("nfs", "rexray"),
    ];
    let (sized, volumes) = account(&images, &containers, Some(volumes));
    let users: Vec<(&str, u64)> = volumes.iter().map(|(n, _, u)| (n.as_str(), *u)).collect();
    assert_eq!(users, [("pgdata", 2), ("spare", 0)]);
    let images: Vec<(&str, Option<u64>)> = (sized.iter())
        .filter(|i| i.kind == LeftoverKind::Image)
        .map(|i| (i.name.as_str(), i.in_use))
        .collect();
    assert_eq!(
        images,
        [("postgres:16", Some(2)), ("0123456789ab…", Some(0))]
    );
    let layers = sized.iter().filter(|i| i.kind == LeftoverKind::Container);
    assert!(layers.clone().any(|i| i.name == "db" && i.bytes == 5 * MIB));
    assert_eq!(layers.count(), 2);
}

#[test]
fn leftovers_are_largest_first_and_empty_ones_dropped() {
    let l = Leftovers::new(
        vec![
            item(LeftoverKind::BuildCache, "build cache", 40 * MIB, None),
            item(LeftoverKind::Volume, "pgdata", 1536 * MIB, Some(0)),
            item(LeftoverKind::Container, "idle", 0, None),
            item(LeftoverKind::UnreferencedDir, "3f2a", 120 * MIB, None),
        ],
        Vec::new(),
    );
    let names: Vec<&str> = l.items.iter().map(|i| i.name.as_str()).collect();
    assert_eq!(names, ["pgdata", "3f2a", "build cache"]);
    assert_eq!(l.total, 1696 * MIB);
}

#[test]
fn the_summary_names_the_largest_and_says_what_it_left_out() {
    let dir = "3f2a9c01d4e5b6a7c8d9e0f1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b1";
    let mut l = Leftovers::new(
        vec![
            item(LeftoverKind::Volume, "pgdata", 1536 * MIB, Some(0)),
            item(LeftoverKind::UnreferencedDir, dir, 120 * MIB, None),
            item(LeftoverKind::BuildCache, "build cache", 40 * MIB, None),
            item(LeftoverKind::Image, "app:v1", 30 * MIB, Some(2)),
        ],
        Vec::new(),
    );
    assert_eq!(
        l.summary(3),
        "left on the disk: volume pgdata 1.5 GiB (unused), unreferenced overlay2 dir \
         3f2a9c01d4e5… 120.0 MiB, build cache 40.0 MiB, 1 more; total 1.7 GiB"
    );
    l.items[1].at_least = true;
    l.unaccounted_errors.push("/x: permission denied".into());
    let line = l.summary(4);
    assert!(
        line.contains("dir 3f2a9c01d4e5… at least 120.0 MiB"),
        "{line}"
    );
    assert!(
        line.contains("image app:v1 30.0 MiB (used by 2 containers)"),
        "{line}"
    );
    assert!(
        line.ends_with("total at least 1.7 GiB; 1 not measured (/x: permission denied)"),
        "{line}"
    );
    assert_eq!(
        Leftovers::default().summary(3),
        "left on the disk: nothing that Docker or its overlay2 directory holds; total 0 B"
    );
}

#[test]
fn the_layer_store_names_image_layers_and_container_layers() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let db = tmp.path().join("image/overlay2/layerdb");
    for (dir, file, id) in [
        ("sha256/aaa", "cache-id", "img1"),
        ("mounts/c1", "mount-id", "c1"),
        ("mounts/c1", "init-id", "c1-init"),
    ] {
        std::fs::create_dir_all(db.join(dir)).expect("mkdir");
        std::fs::write(db.join(dir).join(file), id).expect("write");
    }
    std::fs::create_dir_all(tmp.path().join("overlay2/l")).expect("mkdir");
    std::fs::create_dir_all(tmp.path().join("overlay2/orphan")).expect("mkdir");
    let mut errors = Vec::new();
    let known = layer_store_dirs(tmp.path(), &mut errors);
    assert_eq!(
        known,
        HashSet::from(["img1", "c1", "c1-init"].map(str::to_owned))
    );
    assert_eq!(
        overlay2_dirs(&tmp.path().join("overlay2"), &mut errors),
        ["orphan"]
    );
    assert!(errors.is_empty(), "{errors:?}");
    assert!(contains(b"\0bucket\0k2xq7\0", b"k2xq7") && !contains(b"abc", b""));
}
