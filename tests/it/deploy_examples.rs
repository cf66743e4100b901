//! The container recipe and the Kubernetes manifests under deploy/, checked without an image
//! registry or a cluster: the recipe lints clean with hadolint and the binary it copies runs on
//! the base image it names (distroless cc-debian12: Debian bookworm's glibc and libgcc); the
//! manifests pass the Kubernetes schemas (kubernetes-validate, strict) and yamllint, and their
//! probes, ports and secret references fit burnlink.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::*;
use serde_json::Value;

fn repo(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

fn output(cmd: &mut Command) -> (bool, String) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// Libraries distroless `cc-debian12` provides (glibc, libgcc, libstdc++, OpenSSL 3).
const BASE_LIBS: &[&str] = &[
    "libc.so.6",
    "libm.so.6",
    "libgcc_s.so.1",
    "ld-linux-x86-64.so.2",
    "libpthread.so.0",
    "libdl.so.2",
    "librt.so.1",
    "libstdc++.so.6",
    "libssl.so.3",
    "libcrypto.so.3",
];
/// Debian bookworm's glibc.
const BASE_GLIBC: (u32, u32) = (2, 36);

#[test]
fn the_container_recipe_lints_clean_and_its_base_runs_the_binary() {
    if !require_tools(&["hadolint", "readelf"]) {
        return;
    }
    let recipe_path = repo("deploy/container/Dockerfile");
    let recipe = std::fs::read_to_string(&recipe_path).unwrap();

    let (ok, text) = output(Command::new(require_tool("hadolint").unwrap()).arg(&recipe_path));
    assert!(ok, "hadolint:\n{text}");

    // Multi-stage; the last stage is the distroless base, as a non-root user, with the data
    // volume and a health check that needs no shell or curl.
    let stages: Vec<&str> = recipe.lines().filter(|l| l.starts_with("FROM ")).collect();
    assert!(stages.len() >= 2, "multi-stage: {stages:?}");
    let runtime = recipe.rsplit_once("\nFROM ").unwrap().1;
    assert!(
        runtime.starts_with("gcr.io/distroless/cc-debian12:nonroot"),
        "{runtime}"
    );
    let user = runtime
        .lines()
        .find_map(|l| l.strip_prefix("USER "))
        .expect("a USER");
    assert!(
        !user.starts_with('0') && !user.starts_with("root"),
        "{user}"
    );
    assert!(runtime.contains("VOLUME [\"/data\"]"));
    assert!(runtime.contains("BURNLINK_ROOT=/data"));
    assert!(runtime.contains("BURNLINK_BIND=0.0.0.0:8000"));
    assert!(
        runtime.contains("CMD [\"/usr/local/bin/burnlink\", \"healthcheck\"]"),
        "exec-form HEALTHCHECK with the built-in probe"
    );
    assert!(runtime.contains("COPY --from=build /out/usr/local/bin/burnlink /usr/local/bin/"));
    // The health check's subcommand exists in this binary.
    let (ok, text) = output(Command::new(bin()).args(["healthcheck", "--help"]));
    assert!(ok, "{text}");

    // The binary links only what the base has, against a glibc no newer than bookworm's.
    let readelf = require_tool("readelf").unwrap();
    let (ok, dynamic) = output(Command::new(&readelf).args(["-d", bin()]));
    assert!(ok, "{dynamic}");
    let needed: Vec<&str> = dynamic
        .lines()
        .filter(|l| l.contains("(NEEDED)"))
        .filter_map(|l| l.split('[').nth(1)?.split(']').next())
        .collect();
    assert!(needed.contains(&"libc.so.6"), "{needed:?}");
    for lib in &needed {
        assert!(BASE_LIBS.contains(lib), "{lib} is not in the base image");
    }
    let (ok, versions) = output(Command::new(&readelf).args(["-V", "--wide", bin()]));
    assert!(ok);
    let newest = versions
        .split("GLIBC_")
        .skip(1)
        .filter_map(|rest| {
            let v: String = rest
                .chars()
                .take_while(|c| c.is_ascii_digit() || *c == '.')
                .collect();
            let mut parts = v.split('.').map(|p| p.parse::<u32>().ok());
            Some((parts.next()??, parts.next().flatten().unwrap_or(0)))
        })
        .max()
        .expect("GLIBC symbol versions");
    assert!(
        newest <= BASE_GLIBC,
        "needs glibc {newest:?}, bookworm has {BASE_GLIBC:?}"
    );
}

/// The manifests as JSON documents (parsed by PyYAML from the tools' venv).
fn manifests(python: &Path, dir: &Path) -> Vec<Value> {
    let script = "import json, sys, yaml, glob, os\n\
                  docs = []\n\
                  for f in sorted(glob.glob(os.path.join(sys.argv[1], '*.yaml'))):\n\
                  \x20   docs += [d for d in yaml.safe_load_all(open(f)) if d]\n\
                  print(json.dumps(docs))\n";
    let out = Command::new(python)
        .args(["-c", script])
        .arg(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice::<Vec<Value>>(&out.stdout).unwrap()
}

#[test]
fn the_kubernetes_manifests_pass_the_schemas_and_fit_burnlink() {
    if !require_tools(&["kubernetes-validate", "yamllint"]) {
        return;
    }
    let dir = repo("deploy/kubernetes");
    let files: Vec<PathBuf> = ["configmap", "secret", "pvc", "deployment", "service"]
        .iter()
        .map(|f| dir.join(format!("{f}.yaml")))
        .collect();
    let validate = require_tool("kubernetes-validate").unwrap();
    let (ok, text) = output(Command::new(&validate).arg("--strict").args(&files));
    assert!(ok, "kubernetes-validate:\n{text}");
    assert_eq!(text.matches(" passed ").count(), files.len(), "{text}");
    let (ok, text) = output(
        Command::new(require_tool("yamllint").unwrap())
            .arg("-s")
            .arg("-c")
            .arg(dir.join(".yamllint"))
            .arg(&dir),
    );
    assert!(ok, "yamllint:\n{text}");

    let python = validate.parent().unwrap().join("python");
    let docs = manifests(&python, &dir);
    let find = |kind: &str| {
        docs.iter()
            .find(|d| d["kind"] == kind)
            .unwrap_or_else(|| panic!("no {kind}"))
    };
    let kustomization = find("Kustomization");
    let listed: Vec<&str> = kustomization["resources"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    for f in &files {
        let name = f.file_name().unwrap().to_str().unwrap();
        assert!(listed.contains(&name), "{name} not in kustomization.yaml");
    }

    let deployment = find("Deployment");
    let pod = &deployment["spec"]["template"]["spec"];
    let c = &pod["containers"][0];
    assert_eq!(c["ports"][0]["containerPort"], 8000);
    assert_eq!(c["ports"][0]["name"], "http");
    assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(c["readinessProbe"]["httpGet"]["port"], "http");
    assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(c["livenessProbe"]["httpGet"]["port"], "http");
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(c["securityContext"]["allowPrivilegeEscalation"], false);
    assert_eq!(c["securityContext"]["readOnlyRootFilesystem"], true);
    // At least the shutdown grace (30 s) plus 5 s.
    assert!(pod["terminationGracePeriodSeconds"].as_u64().unwrap() >= 35);

    // The environment comes from the ConfigMap and the Secret that exist, and names only
    // variables burnlink reads; the keys and tokens are in the Secret, not the ConfigMap.
    let config = find("ConfigMap");
    let secret = find("Secret");
    let refs: Vec<(&str, &str)> = c["envFrom"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            if let Some(n) = e["configMapRef"]["name"].as_str() {
                ("ConfigMap", n)
            } else {
                ("Secret", e["secretRef"]["name"].as_str().unwrap())
            }
        })
        .collect();
    assert!(refs.contains(&("ConfigMap", config["metadata"]["name"].as_str().unwrap())));
    assert!(refs.contains(&("Secret", secret["metadata"]["name"].as_str().unwrap())));
    let config_vars: Vec<&String> = config["data"].as_object().unwrap().keys().collect();
    let secret_vars: Vec<&String> = secret["stringData"].as_object().unwrap().keys().collect();
    for var in config_vars.iter().chain(&secret_vars) {
        let name = var.strip_prefix("BURNLINK_").unwrap_or(var);
        assert!(
            burnlink::config::KNOWN_VARS.contains(&name),
            "{var} is not a burnlink variable"
        );
    }
    for var in ["BURNLINK_KEYS", "BURNLINK_API_TOKENS", "BURNLINK_LEDGER"] {
        assert!(secret_vars.iter().any(|v| *v == var), "{var} in the Secret");
        assert!(
            !config_vars.iter().any(|v| *v == var),
            "{var} not in the ConfigMap"
        );
    }
    assert_eq!(config["data"]["BURNLINK_BIND"], "0.0.0.0:8000");

    // The data volume is the claim that exists, mounted where BURNLINK_ROOT points.
    let claim = find("PersistentVolumeClaim");
    assert_eq!(
        pod["volumes"][0]["persistentVolumeClaim"]["claimName"],
        claim["metadata"]["name"]
    );
    assert_eq!(
        c["volumeMounts"][0]["mountPath"],
        config["data"]["BURNLINK_ROOT"]
    );

    // The Service selects the pods and targets the named port.
    let service = find("Service");
    assert_eq!(
        service["spec"]["selector"],
        deployment["spec"]["template"]["metadata"]["labels"]
    );
    assert_eq!(service["spec"]["ports"][0]["targetPort"], "http");
}

#[test]
fn the_deployment_docs_show_the_nginx_template_that_is_tested() {
    let template = crate::support::nginx::TEMPLATE;
    let body = &template[template.find("upstream burnlink {").unwrap()..];
    let docs = std::fs::read_to_string(repo("docs/deployment.md")).unwrap();
    assert!(
        docs.contains(&format!("```nginx\n{body}```")),
        "docs/deployment.md's nginx example differs from deploy/nginx/burnlink.conf.template"
    );
}
