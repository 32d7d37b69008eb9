//! The names and labels of what ptest makes on a cluster. Every object carries
//! `ptest.env=<id>` and `ptest.home=<hash of PTEST_HOME>`, so that `gc` finds this home's own
//! with a label selector and never touches anything else; values are made to fit Kubernetes'
//! syntax (63 characters, alphanumerics at both ends, `-_.` inside).

use std::collections::BTreeMap;

use ptest_core::{Environment, RUN_LABEL};

/// Label naming the environment id an object belongs to.
pub const LABEL_ENV: &str = ptest_core::ENV_LABEL;
/// Label naming (by hash) the `PTEST_HOME` that made an object.
pub const LABEL_HOME: &str = ptest_core::HOME_LABEL;
/// Label with the environment's name, for people reading `kubectl get pods` and for
/// `--allow <env name>` rules of its neighbours.
pub const LABEL_NAME: &str = "ptest.name";
/// Label with the `ptest run` the environment belongs to ([`RUN_LABEL`]).
pub const LABEL_RUN: &str = RUN_LABEL;

/// The longest label value and object name ptest makes (a DNS label).
const MAX: usize = 63;

/// `value` in label-value syntax: characters other than alphanumerics and `-_.` become `-`,
/// at most 63 of them, alphanumerics at both ends (empty when nothing of it is left).
pub fn label_value(value: &str) -> String {
    let mapped: String = value
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '-'
            }
        })
        .take(MAX)
        .collect();
    mapped
        .trim_matches(|c: char| !c.is_ascii_alphanumeric())
        .to_owned()
}

/// The name of `env`'s pod and network policy: `ptest-<name>-<id>` as a DNS label (lowercase
/// alphanumerics and `-`), the name shortened so that the id always fits.
pub fn object_name(env: &Environment) -> String {
    let id = env.id.as_str();
    let room = MAX - "ptest-".len() - 1 - id.len();
    let name: String = env
        .name
        .as_str()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .take(room)
        .collect();
    let name = name.trim_matches('-');
    if name.is_empty() {
        format!("ptest-{id}")
    } else {
        format!("ptest-{name}-{id}")
    }
}

/// The labels of every object made for `env` by the home with hash `home`.
pub fn labels(env: &Environment, home: &str) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::from([
        (LABEL_ENV.to_owned(), env.id.to_string()),
        (LABEL_HOME.to_owned(), home.to_owned()),
        (LABEL_NAME.to_owned(), label_value(env.name.as_str())),
    ]);
    if let Some(run) = env.spec.labels.get(RUN_LABEL).map(|r| label_value(r))
        && !run.is_empty()
    {
        labels.insert(LABEL_RUN.to_owned(), run);
    }
    labels
}

/// The label selector of everything `home` made: what `gc` lists.
pub fn home_selector(home: &str) -> String {
    format!("{LABEL_HOME}={home}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_fit_the_syntax() {
        assert_eq!(label_value("run 2026/12/05"), "run-2026-12-05");
        assert_eq!(label_value("_x_"), "x");
        assert_eq!(label_value(&"a".repeat(80)).len(), 63);
        assert_eq!(label_value("--"), "");
    }
}
