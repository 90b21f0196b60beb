//! `nightjar check-config`: everything the daemon would use, checked up front.
//! Each problem is one line naming the key: interfaces exist and the BPF
//! filter compiles for each, input files can be opened, the output can be
//! appended to, the state directory exists, the metrics and webhook addresses
//! bind, the identity socket's directory exists and `[daemon] user` exists. (Whether capture may be opened depends on the
//! privileges `nightjar run` gets, which check-config does not assume.)

use crate::capture::live::{check_filter, interface_exists};
use crate::config::Config;
use crate::daemon::privileges::lookup_user;
use std::path::Path;

pub fn check(cfg: &Config) -> Vec<String> {
    let mut problems = Vec::new();
    for iface in &cfg.capture.interfaces {
        if !interface_exists(iface) {
            problems.push(format!(
                "capture.interfaces: no interface named {iface:?} on this machine"
            ));
        } else if let Err(e) = check_filter(iface, &cfg.capture.bpf) {
            problems.push(format!(
                "capture.bpf: {:?} on {iface}: {e}",
                cfg.capture.bpf
            ));
        }
    }
    // Readable as this user: files are opened, directories listed.
    let readable = |key: &str, p: &Path, problems: &mut Vec<String>| {
        let res = if p.is_dir() {
            std::fs::read_dir(p).map(|_| ())
        } else {
            std::fs::File::open(p).map(|_| ())
        };
        if let Err(e) = res {
            problems.push(format!("{key}: {}: {e}", p.display()));
        }
    };
    if let Some(user) = &cfg.daemon_user {
        if let Err(e) = lookup_user(user) {
            problems.push(e.to_string());
        }
    }
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
    if let Some(w) = &cfg.mdm.webhook {
        let secret = crate::mdm::adapter::secret_path(&w.secret_file);
        readable("mdm.webhook.secret_file", &secret, &mut problems);
        if let Err(e) = std::net::TcpListener::bind(w.listen) {
            problems.push(format!("mdm.webhook.listen: cannot bind {}: {e}", w.listen));
        }
    }
    if let Some(p) = &cfg.identity_socket {
        match p.parent().filter(|d| !d.as_os_str().is_empty()) {
            Some(dir) if !dir.is_dir() => problems.push(format!(
                "identity.socket: directory {} does not exist",
                dir.display()
            )),
            _ => {}
        }
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
            // An existing file must take appends (opening it changes nothing).
            _ if p.exists() => {
                if let Err(e) = std::fs::OpenOptions::new().append(true).open(p) {
                    problems.push(format!("output.path: {}: {e}", p.display()));
                }
            }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_problem_naming_the_key() {
        let cfg = Config::parse(
            "[capture]\ninterfaces = [\"lo\", \"nope0\"]\nbpf = \"tcp port\"\n\
             [output]\npath = \"/nonexistent-dir/x.json\"\n[state]\ndir = \"/\"\n\
             [metrics]\nlisten = \"127.0.0.1:0\"\n[daemon]\nuser = \"no-such-user-nightjar\"\n",
            "t",
        )
        .unwrap();
        let p = check(&cfg);
        let has = |prefix: &str| p.iter().any(|l| l.starts_with(prefix));
        assert!(has("capture.bpf: \"tcp port\" on lo:"), "{p:?}");
        assert!(
            has("capture.interfaces: no interface named \"nope0\""),
            "{p:?}"
        );
        assert!(has("daemon.user: no user named"), "{p:?}");
        assert!(has("output.path: directory /nonexistent-dir"), "{p:?}");
        assert_eq!(p.len(), 4, "{p:?}");
        let ok = Config::parse(
            "[capture]\ninterfaces = [\"lo\"]\nbpf = \"tcp port 443\"\n[output]\npath = \"-\"\n\
             [state]\ndir = \"/\"\n[metrics]\nlisten = \"127.0.0.1:0\"\n",
            "t",
        )
        .unwrap();
        assert_eq!(check(&ok), Vec::<String>::new());
    }
}
