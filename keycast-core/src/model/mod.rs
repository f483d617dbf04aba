//! Domain types. Constructors validate; a value that exists is valid.

pub(crate) mod account;
pub(crate) mod audit;
pub(crate) mod authorization;
pub(crate) mod change;
pub(crate) mod key;
pub(crate) mod names;
pub(crate) mod policy;
pub(crate) mod request;
pub(crate) mod team;
pub(crate) mod token;
