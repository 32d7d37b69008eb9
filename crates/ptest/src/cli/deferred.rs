//! [`Deferred`]: a command's arguments or subcommands, built only when the command line
//! reaches that command. clap builds every command's argument tree before it parses, so a
//! call of one command paid for all of them (bench/README.md, "Where a CLI call's time
//! goes"); `--help` and errors still see the whole tree, and completions, whose `help`
//! subtree clap copies before it builds deferred parts, ask for it whole ([`build_eagerly`]).

use std::sync::atomic::{AtomicBool, Ordering};

use clap::builder::Resettable;
use clap::{ArgMatches, Args, Command, FromArgMatches, Subcommand};

/// `T`'s arguments (`T: Args`) or subcommands (`T: Subcommand`), added to its command when
/// clap builds that command ([`Command::defer`]).
#[derive(Debug)]
pub struct Deferred<T>(pub T);

impl<T: FromArgMatches> FromArgMatches for Deferred<T> {
    fn from_arg_matches(matches: &ArgMatches) -> Result<Self, clap::Error> {
        T::from_arg_matches(matches).map(Deferred)
    }

    fn update_from_arg_matches(&mut self, matches: &ArgMatches) -> Result<(), clap::Error> {
        self.0.update_from_arg_matches(matches)
    }
}

/// Set by [`build_eagerly`].
static EAGER: AtomicBool = AtomicBool::new(false);

/// Makes commands built from now on add every part at once, as without [`Deferred`].
pub fn build_eagerly() {
    EAGER.store(true, Ordering::Relaxed);
}

/// `augment` on `cmd` when clap builds it, or now under [`build_eagerly`].
fn defer(cmd: Command, augment: fn(Command) -> Command) -> Command {
    if EAGER.load(Ordering::Relaxed) {
        augment(cmd)
    } else {
        cmd.defer(augment)
    }
}

/// Runs `augment` on `cmd` keeping the about texts it had: the derive sets the variant's
/// doc comment before a deferred `augment` runs, which would put the inner type's in its
/// place.
fn keeping_about(cmd: Command, augment: fn(Command) -> Command) -> Command {
    let about = cmd.get_about().cloned();
    let long_about = cmd.get_long_about().cloned();
    let cmd = augment(cmd);
    let cmd = match about {
        Some(text) => cmd.about(text),
        None => cmd.about(Resettable::Reset),
    };
    match long_about {
        Some(text) => cmd.long_about(text),
        None => cmd.long_about(Resettable::Reset),
    }
}

impl<T: Args> Args for Deferred<T> {
    fn augment_args(cmd: Command) -> Command {
        defer(cmd, |cmd| keeping_about(cmd, T::augment_args))
    }

    fn augment_args_for_update(cmd: Command) -> Command {
        defer(cmd, |cmd| keeping_about(cmd, T::augment_args_for_update))
    }

    fn group_id() -> Option<clap::Id> {
        T::group_id()
    }
}

impl<T: Subcommand> Subcommand for Deferred<T> {
    fn augment_subcommands(cmd: Command) -> Command {
        defer(cmd, |cmd| keeping_about(cmd, T::augment_subcommands))
    }

    fn augment_subcommands_for_update(cmd: Command) -> Command {
        defer(cmd, |cmd| {
            keeping_about(cmd, T::augment_subcommands_for_update)
        })
    }

    fn has_subcommand(name: &str) -> bool {
        T::has_subcommand(name)
    }
}
