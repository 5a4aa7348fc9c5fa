//! diskguard's own Docker client, built from a config file, for tests that drive the
//! library (plan, then act) rather than the binary.

use std::path::Path;

use diskguard::config::Settings;
use diskguard::docker::DockerSource;

/// A runtime to block on, the settings, and a connected source.
pub fn docker_source(config: &Path) -> (tokio::runtime::Runtime, Settings, DockerSource) {
    let settings = diskguard::config::load(config, false).expect("test config is valid");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let source = rt
        .block_on(DockerSource::connect(&settings.docker))
        .expect("connect to the private dockerd");
    (rt, settings, source)
}
