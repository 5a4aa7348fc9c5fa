//! Changing the world. Each outside system gets an actor (see `crate::actors`): Docker
//! reclaims and evicts, ECS drains and gives back, journald (opt-in) vacuums its journal. Each actor's bookkeeping is a pure state
//! machine beside it (`machine.rs`); the actor only performs the effects it asks for.

pub mod docker;
pub mod ecs;
pub mod etcd;
pub mod journald;
pub mod reclaim;
