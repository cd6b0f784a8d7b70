//! `kaito.sh/v1beta1`: the storage version of every KAITO kind.

mod inferenceset;
mod ragengine;
mod workspace;

pub use inferenceset::*;
pub use ragengine::*;
pub use workspace::*;
