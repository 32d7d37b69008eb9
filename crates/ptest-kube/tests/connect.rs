//! Finding the cluster: where ptest looks for a kubeconfig, and what it says when what it
//! finds will not do. No cluster is asked anything.

#![allow(clippy::unwrap_used)]

use ptest_core::ErrorKind;
use ptest_kube::connect::Lookup;

const KUBECONFIG: &str = r#"apiVersion: v1
kind: Config
clusters:
- name: kind-ptest
  cluster:
    server: https://127.0.0.1:6443
    insecure-skip-tls-verify: true
- name: staging
  cluster:
    server: https://10.0.0.1:6443
    insecure-skip-tls-verify: true
contexts:
- name: kind-ptest
  context: {cluster: kind-ptest, user: dev}
- name: staging
  context: {cluster: staging, user: dev, namespace: ci}
current-context: kind-ptest
users:
- name: dev
  user: {token: abc}
"#;

fn lookup_with(home: &std::path::Path) -> Lookup {
    Lookup {
        home: Some(home.to_owned()),
        ..Lookup::default()
    }
}

#[tokio::test]
async fn no_kubeconfig_says_where_it_looked() {
    let home = tempfile::tempdir().unwrap();
    let e = lookup_with(home.path()).config(None).await.unwrap_err();
    let text = e.to_string();
    let expected = home.path().join(".kube/config");
    assert!(text.contains(&expected.display().to_string()), "{text}");
    assert!(text.contains("KUBECONFIG is unset"), "{text}");
    assert!(text.contains("KUBERNETES_SERVICE_HOST is unset"), "{text}");
    assert_eq!(e.kind(), ErrorKind::Usage);
}

#[tokio::test]
async fn kubeconfig_files_that_do_not_exist_are_named() {
    let home = tempfile::tempdir().unwrap();
    let (a, b) = (home.path().join("a.yaml"), home.path().join("b.yaml"));
    let lookup = Lookup {
        kubeconfig: Some(std::env::join_paths([&a, &b]).unwrap()),
        ..lookup_with(home.path())
    };
    let text = lookup.config(None).await.unwrap_err().to_string();
    assert!(text.contains(&a.display().to_string()), "{text}");
    assert!(text.contains(&b.display().to_string()), "{text}");
    assert!(text.contains("the files KUBECONFIG names"), "{text}");
}

#[tokio::test]
async fn a_context_the_kubeconfig_lacks_lists_the_ones_it_has() {
    let home = tempfile::tempdir().unwrap();
    std::fs::create_dir(home.path().join(".kube")).unwrap();
    std::fs::write(home.path().join(".kube/config"), KUBECONFIG).unwrap();
    let e = lookup_with(home.path())
        .config(Some("prod"))
        .await
        .unwrap_err();
    let text = e.to_string();
    assert!(text.contains("no context named \"prod\""), "{text}");
    assert!(text.contains("kind-ptest, staging"), "{text}");
    assert_eq!(e.kind(), ErrorKind::Usage);
}

#[tokio::test]
async fn the_current_context_or_the_one_asked_for_gives_server_and_namespace() {
    let home = tempfile::tempdir().unwrap();
    let file = home.path().join("config.yaml");
    std::fs::write(&file, KUBECONFIG).unwrap();
    let lookup = Lookup {
        kubeconfig: Some(file.into_os_string()),
        ..lookup_with(home.path())
    };
    let (config, context) = lookup.config(None).await.unwrap();
    assert_eq!(context, "kind-ptest");
    assert_eq!(config.cluster_url.to_string(), "https://127.0.0.1:6443/");
    assert_eq!(config.default_namespace, "default");
    let (config, context) = lookup.config(Some("staging")).await.unwrap();
    assert_eq!(context, "staging");
    assert_eq!(config.default_namespace, "ci");
}
