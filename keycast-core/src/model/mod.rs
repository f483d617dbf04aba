//! Domain types. Constructors validate; a value that exists is valid.

pub mod account;
pub mod audit;
pub mod authorization;
pub mod change;
pub mod key;
pub mod names;
pub mod policy;
pub mod request;
pub mod team;
pub mod token;
