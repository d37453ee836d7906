//! af's commands, one file per group as af itself groups them: `misc` (target, info, aliases…),
//! `user` (login, logout, passwd and the admin commands), `apps` (everything on an existing
//! app, and the start polling), `push` (push, update and the upload), `services` (services and
//! `af manifest`), `tunnel` (`af tunnel` and its forwarder). Each is a method of [`Session`](crate::session::Session).

mod apps;
mod misc;
mod push;
mod services;
mod tunnel;
mod user;

pub(crate) use apps::ruby_split;
