//! `nightjar check-config`: everything the daemon would use, checked up front.
//! Each problem is one line naming the key.

use crate::config::Config;
use std::path::Path;

pub fn check(cfg: &Config) -> Vec<String> {
    let mut problems = Vec::new();
    for iface in &cfg.capture.interfaces {
        if !Path::new("/sys/class/net").join(iface).exists() {
            problems.push(format!(
                "capture.interfaces: no interface named {iface:?} on this machine"
            ));
        }
    }
    let readable = |key: &str, p: &Path, problems: &mut Vec<String>| {
        if let Err(e) = std::fs::metadata(p) {
            problems.push(format!("{key}: {}: {e}", p.display()));
        }
    };
    if let Some(p) = &cfg.mdm.inventory {
        readable("mdm.inventory", p, &mut problems);
    }
    if let Some(p) = &cfg.mdm.events {
        readable("mdm.events", p, &mut problems);
    }
    if let Some(p) = &cfg.mdm.catalog {
        readable("mdm.catalog", p, &mut problems);
    }
    if let Some(j) = &cfg.mdm.jamf {
        readable(
            "mdm.jamf.client_secret_file",
            &j.client_secret_file,
            &mut problems,
        );
    }
    if let Some(i) = &cfg.mdm.intune {
        readable(
            "mdm.intune.client_secret_file",
            &i.client_secret_file,
            &mut problems,
        );
    }
    if let Some(p) = &cfg.identity_feed {
        readable("identity.feed", p, &mut problems);
    }
    if !cfg.state_dir.is_dir() {
        problems.push(format!(
            "state.dir: {} is not a directory",
            cfg.state_dir.display()
        ));
    }
    if let crate::config::OutputPath::File(p) = &cfg.output.path {
        match p.parent().filter(|d| !d.as_os_str().is_empty()) {
            Some(dir) if !dir.is_dir() => problems.push(format!(
                "output.path: directory {} does not exist",
                dir.display()
            )),
            _ => {}
        }
    }
    if let Err(e) = std::net::TcpListener::bind(cfg.metrics_listen) {
        problems.push(format!(
            "metrics.listen: cannot bind {}: {e}",
            cfg.metrics_listen
        ));
    }
    problems
}
