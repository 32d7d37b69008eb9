//! Installing and uninstalling packages in a venv, with uv (`uv pip install --python`) or pip
//! (the base interpreter's `pip --python`, so a venv needs no pip of its own), both pointed at
//! one cache directory so a second environment with the same packages links or copies from
//! the cache instead of downloading.

use std::collections::HashMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::error::{Error, Result, tail};
use crate::interpreter::find_on_path;
use crate::metadata::{Distribution, installed};
use crate::pep::requirement::{PackageName, Requirement, VersionOrUrl};
use crate::pep::specifier::Operator;
use crate::probe_cache::ProbeCache;
use crate::venv::Venv;
use crate::venv_link::VenvLink;

/// Which tool installs packages.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum InstallerKind {
    /// uv, with the binary used and its `--version` answer.
    Uv {
        /// The `uv` binary.
        binary: PathBuf,
        /// e.g. `uv 0.13.9`.
        version: String,
    },
    /// pip, run from the venv's base interpreter with `--python` (pip >= 22.3), or from the
    /// venv after bootstrapping it with `ensurepip` when the base pip is older.
    Pip,
}

impl InstallerKind {
    /// `uv` or `pip`.
    pub fn name(&self) -> &'static str {
        match self {
            InstallerKind::Uv { .. } => "uv",
            InstallerKind::Pip => "pip",
        }
    }
}

/// An installer: a tool plus the shared cache directory it uses.
///
/// Cloning is cheap and clones share what was learnt about base interpreters (their pip
/// version), which is asked once per interpreter.
#[derive(Debug, Clone)]
pub struct Installer {
    kind: InstallerKind,
    cache_dir: PathBuf,
    /// Where uv reaches venvs through stable links (see [`Installer::with_venv_links`]).
    venv_links: Option<PathBuf>,
    pip_versions: Arc<Mutex<PipVersions>>,
}

/// `(major, minor)` of each base interpreter's pip (`None`: no pip).
type PipVersions = HashMap<PathBuf, Option<(u64, u64)>>;

/// Two installers are equal when they use the same tool and cache.
impl PartialEq for Installer {
    fn eq(&self, other: &Self) -> bool {
        self.kind == other.kind && self.cache_dir == other.cache_dir
    }
}

impl Eq for Installer {}

/// What to install.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InstallRequest {
    /// PEP 508 requirements, or paths/URLs of wheels, sdists or project directories.
    /// Requirements are parsed before any tool runs, so a typo fails with its position.
    pub requirements: Vec<String>,
    /// Requirements files (`-r`).
    pub requirement_files: Vec<PathBuf>,
    /// Constraints files (`-c`).
    pub constraint_files: Vec<PathBuf>,
    /// Install only what is named, not its dependencies (`--no-deps`).
    pub no_deps: bool,
    /// Upgrade what is already installed (`--upgrade`).
    pub upgrade: bool,
    /// Do not use the package index (`--no-index`).
    pub no_index: bool,
    /// Use nothing from the network: uv's `--offline` (its cache and `find_links`); pip,
    /// which has no such mode, gets `--no-index` (only `find_links`).
    pub offline: bool,
    /// Directories or URLs to find distributions in (`--find-links`).
    pub find_links: Vec<String>,
    /// Replacement index URL (`--index-url`).
    pub index_url: Option<String>,
    /// Additional index URLs (`--extra-index-url`).
    pub extra_index_urls: Vec<String>,
    /// Further arguments passed to the tool as they are.
    pub extra_args: Vec<String>,
}

/// One package whose installed version changed.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PackageChange {
    /// The normalized name.
    pub name: PackageName,
    /// Version before (`None`: was not installed).
    pub before: Option<String>,
    /// Version after (`None`: removed).
    pub after: Option<String>,
}

/// The result of an install or uninstall, computed by reading `site-packages` before and
/// after, so it is the same whichever tool ran.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct InstallOutcome {
    /// `uv` or `pip`.
    pub tool: &'static str,
    /// The command line that ran.
    pub command: String,
    /// Packages added, removed or changed in version, sorted by name.
    pub changes: Vec<PackageChange>,
    /// Wall-clock time of the tool.
    #[serde(with = "duration_ms")]
    pub duration: Duration,
}

mod duration_ms {
    pub fn serialize<S: serde::Serializer>(
        d: &std::time::Duration,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.serialize_u128(d.as_millis())
    }
}

impl InstallOutcome {
    /// Packages now present that were not before, or whose version changed.
    pub fn installed(&self) -> impl Iterator<Item = &PackageChange> {
        self.changes.iter().filter(|c| c.after.is_some())
    }

    /// Packages no longer present.
    pub fn removed(&self) -> impl Iterator<Item = &PackageChange> {
        self.changes.iter().filter(|c| c.after.is_none())
    }
}

impl Installer {
    /// uv when a `uv` binary is on `PATH`, pip otherwise. `cache_dir` is shared by every
    /// environment (`UV_CACHE_DIR` / `PIP_CACHE_DIR`).
    pub fn detect(cache_dir: &Path) -> Installer {
        Installer::detect_cached(cache_dir, &ProbeCache::none())
    }

    /// [`Installer::detect`], with each uv's `--version` answer taken from `probes` while
    /// its binary is unchanged.
    pub fn detect_cached(cache_dir: &Path, probes: &ProbeCache) -> Installer {
        for binary in find_on_path("uv") {
            match Installer::uv_with(&binary, cache_dir, probes) {
                Ok(installer) => return installer,
                Err(err) => tracing::warn!(%err, "ignoring unusable uv"),
            }
        }
        Installer::pip(cache_dir)
    }

    /// uv at `binary` (checked by running `uv --version`).
    pub fn uv(binary: &Path, cache_dir: &Path) -> Result<Installer> {
        Installer::uv_with(binary, cache_dir, &ProbeCache::none())
    }

    fn uv_with(binary: &Path, cache_dir: &Path, probes: &ProbeCache) -> Result<Installer> {
        let ask = || {
            let output = run_tool(
                Command::new(binary).arg("--version"),
                "asking uv for its version",
            )?;
            Ok(String::from_utf8_lossy(&output).trim().to_owned())
        };
        let version = probes.answer("uv", binary, &[], "", ask, |_, _| true)?;
        Ok(Installer {
            kind: InstallerKind::Uv {
                binary: binary.to_owned(),
                version,
            },
            cache_dir: cache_dir.to_owned(),
            venv_links: None,
            pip_versions: Arc::default(),
        })
    }

    /// pip (from each venv's base interpreter).
    pub fn pip(cache_dir: &Path) -> Installer {
        Installer {
            kind: InstallerKind::Pip,
            cache_dir: cache_dir.to_owned(),
            venv_links: None,
            pip_versions: Arc::default(),
        }
    }

    /// This installer, with uv reaching each venv through a symbolic link under `dir` whose
    /// path stays the same from one venv to the next (`venv_link.rs` says how): uv then
    /// knows the interpreter from its cache instead of starting the venv's python, the
    /// larger part of installing a few cached wheels into a new venv. pip, which keeps no
    /// such cache, is not affected.
    pub fn with_venv_links(mut self, dir: &Path) -> Installer {
        self.venv_links = Some(dir.to_owned());
        self
    }

    /// The tool.
    pub fn kind(&self) -> &InstallerKind {
        &self.kind
    }

    /// The shared cache directory.
    pub fn cache_dir(&self) -> &Path {
        &self.cache_dir
    }

    /// Installs into `venv` and reports what changed. This runs the tool, and through it the
    /// venv's own interpreter, as the caller: only for a venv no untrusted command has run in
    /// yet (a new environment's, a template's). A venv a command could change is installed
    /// into from inside its sandbox ([`Installer::fetch`], then [`Installer::offline_command`]).
    pub fn install(&self, venv: &Venv, request: &InstallRequest) -> Result<InstallOutcome> {
        check_requirements(request)?;
        let pip = matches!(self.kind, InstallerKind::Pip);
        let mut args: Vec<OsString> = vec!["install".into()];
        if pip {
            args.push("--no-input".into());
        }
        push_install_options(&mut args, request);
        if request.no_index || (request.offline && pip) {
            args.push("--no-index".into());
        }
        if request.offline && !pip {
            args.push("--offline".into());
        }
        for link in &request.find_links {
            args.push("--find-links".into());
            args.push(link.into());
        }
        if let Some(url) = &request.index_url {
            args.push("--index-url".into());
            args.push(url.into());
        }
        for url in &request.extra_index_urls {
            args.push("--extra-index-url".into());
            args.push(url.into());
        }
        for file in &request.requirement_files {
            args.push("-r".into());
            args.push(file.into());
        }
        for file in &request.constraint_files {
            args.push("-c".into());
            args.push(file.into());
        }
        args.extend(request.extra_args.iter().map(OsString::from));
        args.extend(request.requirements.iter().map(OsString::from));
        if matches!(self.kind, InstallerKind::Uv { .. }) && from_cache_first(request) {
            // Every version is fixed: the index can add nothing uv's cache (or find_links)
            // already holds, and asking it is most of an install from a warm cache (uv
            // revalidates every index page it used, 0.15 s of a 0.2 s install here).
            let mut offline = args.clone();
            offline.insert(1, "--offline".into());
            match self.run_changing(venv, offline, "installing packages from the cache") {
                Ok(outcome) => return Ok(outcome),
                Err(e) => tracing::debug!("not all in uv's cache, asking the index: {e}"),
            }
        }
        self.run_changing(venv, args, "installing packages")
    }

    /// Fetches what `request` needs, as wheels, into the empty directory `into`, with the
    /// trusted interpreter `python` (the one the venv was made from, as ptest recorded it —
    /// never the venv's own, which its command may have replaced): `pip wheel`, which
    /// resolves against that interpreter, downloads (through the shared cache) and builds
    /// sdists and local projects. What it returns is what [`Installer::offline_command`]
    /// installs from inside the sandbox, with no network.
    ///
    /// A request that only names exact pins (`name==1.0`, no files, paths or URLs) gives the
    /// same wheels every time: what it fetched is kept (`<cache>/fetched/`, the wheels in
    /// `<cache>/wheelhouse/`, ptest's own) and handed out again without starting pip.
    pub fn fetch(&self, python: &Path, request: &InstallRequest, into: &Path) -> Result<Fetched> {
        check_requirements(request)?;
        let memo = self.pinned_memo(python, request);
        if let Some(wheels) = memo.as_ref().and_then(|m| m.recall()) {
            return Ok(Fetched {
                wheels,
                top_level: Vec::new(),
            });
        }
        let fetched = self.fetch_with_pip(python, request, into)?;
        if let Some(memo) = memo
            && let Err(e) = memo.keep(&fetched.wheels)
        {
            tracing::warn!("not keeping what was fetched for next time: {e}");
        }
        Ok(fetched)
    }

    /// Where the wheels of `request` are remembered, when it names only exact pins.
    fn pinned_memo(&self, python: &Path, request: &InstallRequest) -> Option<FetchMemo> {
        let pinned = |text: &String| {
            !looks_like_path_or_url(text)
                && Requirement::parse(text).is_ok_and(|r| {
                    r.marker.is_none()
                        && matches!(&r.version_or_url, VersionOrUrl::Specifiers(s)
                            if s.iter().count() == 1
                                && s.iter().all(|v| v.operator() == Operator::Equal))
                })
        };
        let plain = request.requirement_files.is_empty()
            && request.constraint_files.is_empty()
            && request.extra_args.is_empty()
            && !request.upgrade
            && !request.requirements.is_empty();
        if !plain || !request.requirements.iter().all(pinned) {
            return None;
        }
        use sha2::{Digest, Sha256};
        let mut key = Sha256::new();
        key.update(python.as_os_str().as_encoded_bytes());
        let mut reqs = request.requirements.clone();
        reqs.sort();
        let index = (
            &request.index_url,
            &request.extra_index_urls,
            &request.find_links,
        );
        key.update(format!(
            "{reqs:?}{index:?}{}{}{}",
            request.no_deps, request.no_index, request.offline
        ));
        let key: String = key
            .finalize()
            .iter()
            .take(12)
            .map(|b| format!("{b:02x}"))
            .collect();
        Some(FetchMemo {
            list: self.cache_dir.join("fetched").join(key),
            wheelhouse: self.cache_dir.join("wheelhouse"),
        })
    }

    fn fetch_with_pip(
        &self,
        python: &Path,
        request: &InstallRequest,
        into: &Path,
    ) -> Result<Fetched> {
        let pip_tool = |dir: &Path| {
            let mut c = Command::new(python);
            c.args(["-m", "pip", "wheel", "--no-input", "--wheel-dir"])
                .arg(dir)
                .env("PIP_CACHE_DIR", &self.cache_dir)
                .env("PIP_DISABLE_PIP_VERSION_CHECK", "1")
                .env("PIP_ROOT_USER_ACTION", "ignore")
                .env_remove("PIP_REQUIRE_VIRTUALENV")
                .env_remove("VIRTUAL_ENV");
            if request.no_index || request.offline {
                c.arg("--no-index");
            }
            for link in &request.find_links {
                c.arg("--find-links").arg(link);
            }
            if let Some(url) = &request.index_url {
                c.arg("--index-url").arg(url);
            }
            for url in &request.extra_index_urls {
                c.arg("--extra-index-url").arg(url);
            }
            if matches!(self.kind, InstallerKind::Pip) {
                c.args(&request.extra_args);
            }
            c
        };
        let action = format!("fetching packages with {}", python.display());
        // A local project or a URL becomes a wheel of its own first, so that the install
        // names that wheel (its file name says which project it is).
        let (local, named): (Vec<&String>, Vec<&String>) = request
            .requirements
            .iter()
            .partition(|r| looks_like_path_or_url(r));
        let mut top = Vec::new();
        if !local.is_empty() {
            let dir = into.join("local");
            std::fs::create_dir(&dir).map_err(Error::io("creating", &dir))?;
            run_tool(pip_tool(&dir).arg("--no-deps").args(&local), &action)?;
            top = wheels_in(&dir)?;
        }
        let mut command = pip_tool(into);
        for file in &request.requirement_files {
            command.arg("-r").arg(file);
        }
        for file in &request.constraint_files {
            command.arg("-c").arg(file);
        }
        command.args(&named).args(&top);
        if request.no_deps {
            command.arg("--no-deps");
        }
        run_tool(&mut command, &action)?;
        Ok(Fetched {
            wheels: wheels_in(into)?,
            top_level: top
                .iter()
                .filter_map(|p| p.file_name())
                .map(Into::into)
                .collect(),
        })
    }

    /// The command line that installs `request` into the venv whose interpreter is
    /// `venv_python`, offline, from the wheels [`Installer::fetch`] put in `wheelhouse` (paths
    /// as the sandbox sees them; `requirement_files` and `constraint_files` are given again,
    /// as copies there). Run inside the environment's sandbox, it runs the environment's
    /// interpreter with the command's own privileges, never the caller's.
    pub fn offline_command(
        &self,
        venv_python: &Path,
        base_python: &Path,
        request: &InstallRequest,
        wheelhouse: &Path,
        fetched: &Fetched,
        files: &[(&'static str, PathBuf)],
    ) -> Vec<OsString> {
        let pip = matches!(self.kind, InstallerKind::Pip);
        let mut args = self.sandbox_tool(venv_python, base_python, "install");
        if pip {
            args.extend(["--no-input".into(), "--no-cache-dir".into()]);
        } else {
            args.extend(["--offline".into(), "--no-cache".into()]);
        }
        push_install_options(&mut args, request);
        args.push("--no-index".into());
        args.push("--find-links".into());
        args.push(wheelhouse.into());
        for (flag, file) in files {
            args.push((*flag).into());
            args.push(file.into());
        }
        args.extend(request.extra_args.iter().map(OsString::from));
        args.extend(
            request
                .requirements
                .iter()
                .filter(|r| !looks_like_path_or_url(r))
                .map(OsString::from),
        );
        args.extend(
            fetched
                .top_level
                .iter()
                .map(|w| wheelhouse.join("local").join(w).into()),
        );
        args
    }

    /// The command line that uninstalls `names` from the venv whose interpreter is
    /// `venv_python`, to run inside the environment's sandbox.
    pub fn uninstall_command(
        &self,
        venv_python: &Path,
        base_python: &Path,
        names: &[PackageName],
    ) -> Vec<OsString> {
        let mut args = self.sandbox_tool(venv_python, base_python, "uninstall");
        match self.kind {
            InstallerKind::Pip => args.push("--yes".into()),
            InstallerKind::Uv { .. } => args.push("--no-cache".into()),
        }
        args.extend(names.iter().map(|n| OsString::from(n.as_str())));
        args
    }

    /// `uv pip SUB --python VENV` or `BASE -m pip --python VENV SUB`: the tool pointed at the
    /// venv, for a sandbox (no user configuration, no downloads of interpreters).
    fn sandbox_tool(&self, venv_python: &Path, base_python: &Path, sub: &str) -> Vec<OsString> {
        match &self.kind {
            InstallerKind::Uv { binary, .. } => vec![
                binary.into(),
                "pip".into(),
                sub.into(),
                "--no-config".into(),
                "--python".into(),
                venv_python.into(),
            ],
            InstallerKind::Pip => vec![
                base_python.into(),
                "-m".into(),
                "pip".into(),
                "--disable-pip-version-check".into(),
                "--python".into(),
                venv_python.into(),
                sub.into(),
            ],
        }
    }

    /// The binary the tool runs from, which a sandbox must show (uv's; pip runs from the
    /// base interpreter, shown anyway).
    pub fn binary(&self) -> Option<&Path> {
        match &self.kind {
            InstallerKind::Uv { binary, .. } => Some(binary),
            InstallerKind::Pip => None,
        }
    }

    /// Uninstalls `names` from `venv` and reports what was removed.
    pub fn uninstall(&self, venv: &Venv, names: &[PackageName]) -> Result<InstallOutcome> {
        let mut args: Vec<OsString> = vec!["uninstall".into()];
        if matches!(self.kind, InstallerKind::Pip) {
            args.push("--yes".into());
        }
        args.extend(names.iter().map(|n| OsString::from(n.as_str())));
        self.run_changing(venv, args, "uninstalling packages")
    }

    fn run_changing(&self, venv: &Venv, args: Vec<OsString>, what: &str) -> Result<InstallOutcome> {
        let before = installed(venv)?;
        let (subcommand, rest) = args.split_first().expect("a subcommand is always given");
        // A link that cannot be made only costs uv a Python start: the install goes on.
        let link = match (&self.kind, &self.venv_links) {
            (InstallerKind::Uv { .. }, Some(dir)) => VenvLink::acquire(dir, venv)
                .inspect_err(|e| tracing::warn!("installing without a venv link: {e}"))
                .ok(),
            _ => None,
        };
        let python = link
            .as_ref()
            .map_or_else(|| venv.python(), VenvLink::python);
        let mut command = self.command(venv, &python, subcommand)?;
        command.args(rest);
        let shown = show_command(&command);
        let started = Instant::now();
        let ran = run_tool(
            &mut command,
            &format!("{what} in {}", venv.root().display()),
        );
        // Also after a failure: a tool may have written scripts before it failed.
        if let Some(link) = link {
            let rewritten = link.release(venv)?;
            tracing::debug!(?rewritten, "scripts written through the link name the venv");
        }
        ran?;
        let duration = started.elapsed();
        let after = installed(venv)?;
        let changes = changes(&before, &after);
        tracing::debug!(command = %shown, ?duration, changes = changes.len(), "installer finished");
        Ok(InstallOutcome {
            tool: self.kind.name(),
            command: shown,
            changes,
            duration,
        })
    }

    /// The tool's command with its subcommand (`install`, `uninstall`), pointed at `venv`
    /// (uv: through `python`, the venv's python or its link).
    fn command(&self, venv: &Venv, python: &Path, subcommand: &OsString) -> Result<Command> {
        match &self.kind {
            InstallerKind::Uv { binary, .. } => {
                let mut c = Command::new(binary);
                c.arg("pip")
                    .arg(subcommand)
                    .arg("--no-config")
                    .arg("--python")
                    .arg(python)
                    .env("UV_CACHE_DIR", &self.cache_dir)
                    // Copies, not hard links into the cache: a command appending to an
                    // installed module would otherwise change the cache, and every later
                    // environment installed from it.
                    .env("UV_LINK_MODE", "copy")
                    .env("UV_PYTHON_DOWNLOADS", "never")
                    .env_remove("VIRTUAL_ENV");
                Ok(c)
            }
            InstallerKind::Pip => {
                let mut c = self.pip_command(venv)?;
                c.arg(subcommand)
                    .env("PIP_CACHE_DIR", &self.cache_dir)
                    .env("PIP_DISABLE_PIP_VERSION_CHECK", "1")
                    .env("PIP_ROOT_USER_ACTION", "ignore")
                    .env("PIP_NO_WARN_SCRIPT_LOCATION", "1")
                    .env_remove("PIP_REQUIRE_VIRTUALENV")
                    .env_remove("VIRTUAL_ENV");
                Ok(c)
            }
        }
    }

    /// `<base> -m pip --python <venv python>` when the base has pip >= 22.3; otherwise pip is
    /// bootstrapped into the venv with `ensurepip` and the venv's own pip is used.
    fn pip_command(&self, venv: &Venv) -> Result<Command> {
        if venv.bin_dir().join("pip").exists() {
            let mut c = Command::new(venv.python());
            c.arg("-m").arg("pip");
            return Ok(c);
        }
        let base = venv.base_python().ok_or_else(|| Error::PipUnavailable {
            venv: venv.root().to_owned(),
            reason: "pyvenv.cfg names no base interpreter".to_owned(),
        })?;
        let version = {
            let mut known = self.pip_versions.lock().expect("no panics while held");
            *known
                .entry(base.clone())
                .or_insert_with(|| pip_version(&base))
        };
        let supports_python_option = version.is_some_and(|v| v >= (22, 3));
        if supports_python_option {
            let mut c = Command::new(base);
            c.arg("-m").arg("pip").arg("--python").arg(venv.python());
            return Ok(c);
        }
        run_tool(
            Command::new(venv.python()).args(["-m", "ensurepip", "--default-pip"]),
            &format!("bootstrapping pip into {}", venv.root().display()),
        )
        .map_err(|e| Error::PipUnavailable {
            venv: venv.root().to_owned(),
            reason: format!("the base pip is missing or older than 22.3 and ensurepip failed: {e}"),
        })?;
        let mut c = Command::new(venv.python());
        c.arg("-m").arg("pip");
        Ok(c)
    }
}

/// What [`Installer::fetch`] got: every wheel, and which of them stand for the local
/// projects and URLs that were asked for (under `local/`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Fetched {
    /// Every wheel fetched, paths on the host.
    pub wheels: Vec<PathBuf>,
    /// File names, under `local/`, of the wheels built from local paths and URLs.
    pub top_level: Vec<OsString>,
}

/// What an exactly pinned request fetched: its wheels' names in `list`, the wheels in
/// `wheelhouse` (both ptest's own, under the installer's cache).
struct FetchMemo {
    list: PathBuf,
    wheelhouse: PathBuf,
}

impl FetchMemo {
    /// The wheels fetched for this request before, if every one is still there.
    fn recall(&self) -> Option<Vec<PathBuf>> {
        let text = std::fs::read_to_string(&self.list).ok()?;
        let wheels: Vec<PathBuf> = text
            .lines()
            .filter(|l| !l.is_empty())
            .map(|name| self.wheelhouse.join(name))
            .collect();
        (!wheels.is_empty() && wheels.iter().all(|w| w.is_file())).then_some(wheels)
    }

    /// Keeps `wheels` (linked, or copied, into the wheelhouse) and their names.
    fn keep(&self, wheels: &[PathBuf]) -> std::io::Result<()> {
        std::fs::create_dir_all(&self.wheelhouse)?;
        let mut names = String::new();
        for wheel in wheels {
            let Some(name) = wheel.file_name() else {
                continue;
            };
            let kept = self.wheelhouse.join(name);
            if !kept.exists() && std::fs::hard_link(wheel, &kept).is_err() {
                std::fs::copy(wheel, &kept)?;
            }
            names.push_str(&name.to_string_lossy());
            names.push('\n');
        }
        let dir = self.list.parent().expect("the list lives in fetched/");
        std::fs::create_dir_all(dir)?;
        // Written aside and renamed: a concurrent reader sees the old list or the whole new one.
        let aside = self.list.with_extension(format!("{}", std::process::id()));
        std::fs::write(&aside, names)?;
        std::fs::rename(aside, &self.list)
    }
}

/// Requirements are parsed before any tool runs, so a typo fails with its position.
fn check_requirements(request: &InstallRequest) -> Result<()> {
    for text in &request.requirements {
        if !looks_like_path_or_url(text) {
            Requirement::parse(text)?;
        }
    }
    Ok(())
}

/// Whether `request` can be tried from uv's cache alone before the index is asked: it asks
/// the index (not `--offline`, `--no-index`), passes nothing through, and pins every
/// requirement, its own and its files' lines, to one version (`name==1.2`, markers allowed),
/// so that the cache's answer is the index's.
fn from_cache_first(request: &InstallRequest) -> bool {
    if request.offline || request.no_index || request.upgrade || !request.extra_args.is_empty() {
        return false;
    }
    let pinned = |text: &str| {
        Requirement::parse(text).is_ok_and(|r| {
            let specifiers = r.specifiers();
            let mut all = specifiers.iter();
            matches!(&r.version_or_url, VersionOrUrl::Specifiers(_))
                && all.next().is_some_and(|s| s.operator() == Operator::Equal)
                && all.next().is_none()
        })
    };
    let lines = request
        .requirement_files
        .iter()
        .map(std::fs::read_to_string);
    let mut files = Vec::new();
    for text in lines {
        match text {
            Ok(text) => files.push(text),
            Err(_) => return false,
        }
    }
    let file_lines = files.iter().flat_map(|t| t.lines()).filter_map(|l| {
        let l = l.split(" #").next().unwrap_or("").trim();
        (!l.is_empty() && !l.starts_with('#')).then_some(l)
    });
    let mut all = request
        .requirements
        .iter()
        .map(String::as_str)
        .chain(file_lines);
    let mut any = false;
    let pinned_all = all.all(|r| {
        any = true;
        pinned(r)
    });
    any && pinned_all
}

/// The options every install passes the same way, wherever it runs.
fn push_install_options(args: &mut Vec<OsString>, request: &InstallRequest) {
    if request.no_deps {
        args.push("--no-deps".into());
    }
    if request.upgrade {
        args.push("--upgrade".into());
    }
}

/// The `*.whl` files directly in `dir`, sorted.
fn wheels_in(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(Error::io("listing", dir))? {
        let path = entry.map_err(Error::io("listing", dir))?.path();
        if path.extension().is_some_and(|e| e == "whl") {
            out.push(path);
        }
    }
    out.sort();
    Ok(out)
}

/// `(major, minor)` of `python -m pip --version`, or `None` when pip is not there.
fn pip_version(python: &Path) -> Option<(u64, u64)> {
    let output = Command::new(python)
        .args(["-m", "pip", "--version"])
        .env("PIP_DISABLE_PIP_VERSION_CHECK", "1")
        .output()
        .ok()?;
    if !output.status.success() {
        return None;
    }
    let text = String::from_utf8_lossy(&output.stdout);
    let version = text.split_whitespace().nth(1)?;
    let mut parts = version.split('.').map(|p| p.parse::<u64>().ok());
    Some((parts.next()??, parts.next().flatten().unwrap_or(0)))
}

fn looks_like_path_or_url(text: &str) -> bool {
    let t = text.trim();
    if t.starts_with(['.', '/', '-', '~']) {
        return true;
    }
    // `name @ url` is a PEP 508 requirement; `git+https://host/x@ref` is a URL.
    if let Some((before, _)) = t.split_once('@')
        && !before.contains('/')
    {
        return false;
    }
    t.contains('/') || t.ends_with(".whl") || t.ends_with(".tar.gz") || t.ends_with(".zip")
}

/// What changed between two listings of a venv's distributions, sorted by name.
pub fn changes(before: &[Distribution], after: &[Distribution]) -> Vec<PackageChange> {
    use std::collections::BTreeMap;
    let index = |dists: &[Distribution]| -> BTreeMap<PackageName, String> {
        dists
            .iter()
            .map(|d| (d.name.clone(), d.version.clone()))
            .collect()
    };
    let (before, after) = (index(before), index(after));
    let mut names: Vec<&PackageName> = before.keys().chain(after.keys()).collect();
    names.sort();
    names.dedup();
    names
        .into_iter()
        .filter_map(|name| {
            let (b, a) = (before.get(name), after.get(name));
            (b != a).then(|| PackageChange {
                name: name.clone(),
                before: b.cloned(),
                after: a.cloned(),
            })
        })
        .collect()
}

pub(crate) fn show_command(command: &Command) -> String {
    std::iter::once(command.get_program())
        .chain(command.get_args())
        .map(|a| a.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Runs a tool to completion; on failure the error carries its stderr tail. Returns stdout.
pub(crate) fn run_tool(command: &mut Command, action: &str) -> Result<Vec<u8>> {
    let shown = show_command(command);
    tracing::debug!(command = %shown, "running");
    let output = command.output().map_err(|source| Error::Spawn {
        program: command.get_program().to_string_lossy().into_owned(),
        action: action.to_owned(),
        source,
    })?;
    if !output.status.success() {
        let mut stderr_tail = tail(&output.stderr, 20);
        if stderr_tail.is_empty() {
            stderr_tail = tail(&output.stdout, 20);
        }
        return Err(Error::ToolFailed {
            action: action.to_owned(),
            command: shown,
            status: output.status.code(),
            stderr_tail,
        });
    }
    Ok(output.stdout)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tells_paths_from_requirements() {
        assert!(looks_like_path_or_url("./dist/pkg-1.0-py3-none-any.whl"));
        assert!(looks_like_path_or_url("/tmp/project"));
        assert!(looks_like_path_or_url("https://example.invalid/pkg.tar.gz"));
        assert!(!looks_like_path_or_url("requests>=2"));
        assert!(!looks_like_path_or_url("pkg @ file:///tmp/pkg.whl"));
    }
}
