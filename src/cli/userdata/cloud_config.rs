//! The cloud-config rendering (flatcar/coreos-cloudinit's documented schema): text files in
//! `write_files`, units with their drop-ins in `coreos.units`. coreos-cloudinit runs it on
//! every boot: files are rewritten, units placed, enabled and started in list order.

use std::fmt::Write as _;

use super::node::Node;
use super::yaml::{quoted, text};

pub fn render(node: &Node) -> String {
    let mut out = String::from("#cloud-config\n");
    out.push_str(&format!(
        "# Flatcar ECS node with diskguard, for cluster {}. Rendered by `diskguard userdata\n\
         # --format cloud-config`: change the command's flags rather than this text.\n",
        node.cluster
    ));
    out.push_str("write_files:\n");
    for file in node.files() {
        let _ = write!(
            out,
            "  - path: {}\n    permissions: {}\n    owner: \"root:root\"\n    content: {}",
            quoted(file.path),
            quoted(&format!("{:04o}", file.mode)),
            text(&file.content, 6),
        );
    }
    out.push_str("coreos:\n  units:\n");
    for unit in node.units() {
        let _ = writeln!(out, "    - name: {}", quoted(unit.name));
        if unit.enable {
            out.push_str("      enable: true\n");
        }
        if unit.start {
            out.push_str("      command: \"start\"\n");
        }
        let _ = write!(out, "      content: {}", text(unit.content, 8));
        if !unit.drop_ins.is_empty() {
            out.push_str("      drop-ins:\n");
            for (name, content) in &unit.drop_ins {
                let _ = write!(
                    out,
                    "        - name: {}\n          content: {}",
                    quoted(name),
                    text(content, 12)
                );
            }
        }
    }
    out
}
